import numpy as np
import pytest


@pytest.fixture(autouse=True)
def private_profile(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real profile."""
    path = tmp_path_factory.mktemp("profile") / "profile.toml"
    monkeypatch.setenv("BREAKEVEN_PROFILE", str(path))
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)
