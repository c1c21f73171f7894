import numpy as np
import pytest

from breakeven._core.openmp import NO_OPENMP, OPENMP


def pytest_collection_modifyitems(config, items):
    """Tests marked ``openmp`` need parallel kernels: in a build without
    OpenMP they are skipped (and counted as such); every other test runs."""
    if OPENMP:
        return
    skip = pytest.mark.skip(reason=NO_OPENMP)
    for item in items:
        if "openmp" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def private_profile(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real profile."""
    path = tmp_path_factory.mktemp("profile") / "profile.toml"
    monkeypatch.setenv("BREAKEVEN_PROFILE", str(path))
    return path


@pytest.fixture
def own_budget():
    """The process's own core budget, not the host's: in the host's, a
    parent that has just run parallel calls counts as a process using
    cores, and a forked child's share of the CPUs is lower."""
    import breakeven

    breakeven.use_host_budget(False)
    yield
    breakeven.use_host_budget(True)


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


# Hypothesis profiles (tests/test_fuzz.py): "ci", small and derandomised, is
# what `make test` runs; `make fuzz` selects "fuzz" (--hypothesis-profile=fuzz),
# 1,500 examples for each of the nine fuzzed properties: 13,500 in all.
from hypothesis import HealthCheck, settings  # noqa: E402

_SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
            HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None,
                          database=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("fuzz", max_examples=1500, deadline=None, database=None,
                          print_blob=True, suppress_health_check=_SLOW_OK)
settings.load_profile("ci")
