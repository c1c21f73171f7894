"""A kernel declared as the built-ins are, and nothing else: registered
through the same path, it is calibrated, dispatched, explained and
simulated, with no other file of the package told about it.

The built-ins are declared by their family modules (``breakeven._kernels``);
this throwaway one (``y = 2 x``, with NumPy loops and a drop-in that asks the
dispatch core for its threads through :func:`breakeven.grant`) is declared
here with the same record, :class:`breakeven.Kernel`.
"""

import numpy as np
import pytest

import breakeven as be
from breakeven import testing
from breakeven._kernels import registry
from breakeven._kernels.registry import Kernel, KernelModel, first_length

NAME = "testfamily.double"


def _serial(x, out):
    np.multiply(x, 2.0, out=out)


def _parallel(x, out, n_threads):
    np.multiply(x, 2.0, out=out)


def _sample(work, dtype, rng):
    x = registry.uniform_array(work, dtype, rng)
    return (x, np.empty_like(x))


def _plan(x, out):
    """The drop-in's check: (reason, slot, type number, work)."""
    if not (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)):
        return "not a float32/float64 ndarray", -1, -1, 0
    return "", registry.KERNELS[NAME].slot, x.dtype.num, x.size


def double(x, out):
    """The drop-in: ``out = 2 x``, serially or with the threads granted."""
    reason, _, _, work = _plan(x, out)
    if reason:
        return np.multiply(x, 2.0, out=out)
    with be.grant(NAME, work, x.dtype.name) as g:
        (_serial(x, out) if g.threads <= 1 else _parallel(x, out, g.threads))
    return out


DECLARATION = Kernel(NAME, _serial, _parallel, _serial, first_length, _sample,
                     call=double, dropin=double, plan=_plan,
                     model=KernelModel("memory", 0.1, 16))


@pytest.fixture
def declared():
    kernels, builtins = dict(registry.KERNELS), dict(registry.BUILTINS)
    try:
        yield registry.register_builtin(DECLARATION)
    finally:
        registry.KERNELS.clear()
        registry.KERNELS.update(kernels)
        registry.BUILTINS.clear()
        registry.BUILTINS.update(builtins)
        testing.reset()


def test_registered_as_a_builtin(declared):
    assert declared.slot >= len(testing.KERNEL_MODELS)
    assert be.get_kernel(NAME) is declared
    assert registry.BUILTINS[NAME] is declared
    assert registry.by_call(double) is declared
    assert declared.defaults == registry.BUILTINS["sum"].defaults  # embedded


def test_calibrated_on_a_simulated_host_through_its_model(declared):
    """The simulated host finds the kernel's model in its declaration, and
    calibration (in simulated time) gives it a table from which many
    threads pay on a big array and one thread on a small one."""
    host = list(testing.HOSTS.values())[-1]
    assert NAME in testing.kernel_models()
    profile = testing.Simulation(host, seed=0).calibrate([NAME], dtypes=("float64",),
                                                         budget=8.0)
    assert set(profile.tables) == {NAME}
    with testing.simulated_cpus(host.cpus):
        assert profile.threads_for(NAME, "float64", 2**26) > 1
        assert profile.threads_for(NAME, "float64", 16) == 1


def test_dispatched_and_explained_from_its_table(declared):
    """Given a table, the drop-in's calls are decided by it: explain says
    so in words, and the core counts the calls."""
    small, big = 1 << 10, 1 << 22
    profile = be.Profile(testing.profile().fingerprint)
    table = ((0, 1), (1 << 16, 2))
    profile.set_table(NAME, "float64", table, table)  # hot and cold alike
    testing.reset(profile)
    x, out = np.ones(big), np.empty(big)
    with testing.simulated_cpus(2), be.threads(2):
        d = be.explain(double, x, out)
        assert (d.kernel, d.variant, d.threads, d.source) == (NAME, "parallel", 2,
                                                             "calibrated")
        assert f"work {big} >= {1 << 16}" in d.reason and "table of" in d.reason
        small_d = be.explain(double, np.ones(small), np.empty(small))
        assert small_d.variant == "serial" and f"work {small} <" in small_d.reason
        be.stats(reset=True)
        np.testing.assert_array_equal(double(x, out), 2.0 * x)
        double(np.ones(small), np.empty(small))
        s = be.stats()[(NAME, "float64")]
        assert (s.parallel, s.serial) == (1, 1)
    assert be.explain(double, [1.0], None).variant == "numpy"
