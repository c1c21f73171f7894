"""The OpenMP runtimes: which one breakeven's kernels run on (the build's, or
one preloaded in its place), fork per runtime, and a kernel whose module
links another runtime, whose team wakes and sleeps apart from breakeven's.

The suite runs on each runtime (``make test-runtimes``): gcc with libgomp,
clang with LLVM's libomp, and gcc with Intel's libiomp5 preloaded
(``BREAKEVEN_EXPECT_RUNTIME`` names what the run was built or loaded for).
"""

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import build_extension

import breakeven as be
from breakeven import testing
from breakeven._build import C_COMPILER
from breakeven._core import runtimes
from breakeven._core.openmp import OPENMP, OPENMP_RUNTIME
from breakeven._info import info
from breakeven._profile import Profile, host_fingerprint

CPUS = be.usable_cpus()
needs2 = pytest.mark.skipif(CPUS < 2, reason="Requires at least 2 CPUs")
rng = np.random.default_rng(24)


@pytest.fixture(autouse=True)
def fresh_dispatch():
    testing.reset()
    yield
    testing.reset()


def test_a_runtimes_family_is_told_from_its_file_name():
    assert runtimes.family("/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0") == "libgomp"
    # scikit-learn's wheels vendor a renamed libgomp
    vendored = "/site/scikit_learn.libs/libgomp-a34b3233.so.1.0.0"
    assert runtimes.family(vendored) == "libgomp"
    assert runtimes.family("/usr/lib/llvm-14/lib/libomp.so.5") == "libomp"
    assert runtimes.family("/env/lib/libiomp5.so") == "libiomp"
    assert runtimes.family("C:/Windows/System32/VCOMP140.DLL") == "vcomp"
    assert runtimes.family("/usr/lib/libopenblas.so") == "unknown"


def test_each_runtime_has_its_own_spin_settings():
    env = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "0", "KMP_LIBRARY": "turnaround"}
    assert runtimes.Runtime("libgomp", "").spin(env) == "GOMP_SPINCOUNT=10000"
    assert (runtimes.Runtime("libomp", "").spin(env)
            == "KMP_BLOCKTIME=0;KMP_LIBRARY=turnaround")
    assert runtimes.Runtime("libiomp", "").spin({}) == "default"
    assert not runtimes.Runtime("libgomp", "").fork_safe
    assert runtimes.Runtime("libomp", "").fork_safe
    assert runtimes.Runtime("libiomp", "").fork_safe


@pytest.mark.openmp
def test_the_running_runtime_is_the_one_loaded_for_the_kernels():
    running = runtimes.running()
    loaded = {r.path: r for r in runtimes.loaded()}
    assert running.path in loaded, (running, loaded)
    preloaded = runtimes.global_runtime()
    if preloaded is None:  # the build's own
        assert running.name == OPENMP_RUNTIME
    else:  # one preloaded in its place takes breakeven's calls
        assert running.path == preloaded
    assert info()["openmp"]["runtime"].startswith(running.name)


# ---------------------------------------------------------------------------
# fork, per runtime
# ---------------------------------------------------------------------------

FORK_CHILD = """
import os, sys
import numpy as np
import breakeven as be
from breakeven import testing
from breakeven._core import openmp, runtimes
from breakeven._profile import Profile, host_fingerprint

be.use_host_budget(False)  # the parent's own share would lower the child's
p = Profile(host_fingerprint(), {}, "now", 10_000.0, "test profile")
p.set_table("sum", "float64", ((0, 1), (1000, 2)), ((0, 1), (1000, 2)))
testing.reset(p)
x = np.random.default_rng(0).standard_normal(1 << 20)
expected = be.sum(x)
assert be.explain(be.sum, x).variant == "parallel"
pid = os.fork()
if pid == 0:
    code = 1
    try:
        variant = be.explain(be.sum, x).variant
        ok = be.sum(x) == expected
        # a fork-safe runtime's team runs in the child: a real region
        size = openmp.team_size(2) if runtimes.running().fork_safe else 1
        print(variant, size, ok, flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.openmp
@needs2
def test_a_forked_child_runs_parallel_only_on_a_runtime_that_survives_fork():
    """libgomp's pool does not survive fork (the child's first region hangs):
    its kernels run serially in the child.  LLVM's and Intel's runtimes
    start a new pool there: the child dispatches in parallel, and a region
    really runs on two threads."""
    r = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    variant, size, ok = r.stdout.split()
    assert ok == "True"
    if runtimes.running().fork_safe:
        assert (variant, size) == ("parallel", "2")
    else:
        assert runtimes.running().name == "libgomp"
        assert variant == "serial"


# ---------------------------------------------------------------------------
# a kernel whose module links another runtime
# ---------------------------------------------------------------------------

OTHER_PYX = '''
# cython: language_level=3, boundscheck=False, wraparound=False
from cython.parallel cimport prange
import numpy as np
import breakeven
from breakeven cimport dispatch as be

be.import_breakeven()


def twice(const double[::1] x, double[::1] out):
    cdef be.Call call
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt
    with nogil:
        nt = be.begin(&call, TWICE, be.FLOAT64, n)
        if nt > 1:
            for i in prange(n, num_threads=nt):
                out[i] = 2.0 * x[i]
        else:
            for i in range(n):
                out[i] = 2.0 * x[i]
        be.end(&call)
    return nt


def _sample(work, dtype, rng):
    x = rng.standard_normal(int(work)).astype(dtype)
    return x, np.empty_like(x)


cdef int TWICE = breakeven.register(
    "othert.twice", twice, work=lambda x, out: x.shape[0], sample=_sample,
    dtypes=("float64",)).slot
'''


def _other_compiler() -> str | None:
    """The compiler whose OpenMP runtime is not breakeven's build's, if it
    is here with its runtime: clang with libomp beside gcc, gcc beside
    clang."""
    if C_COMPILER == "gcc":
        libomp = list(Path("/usr/lib").glob("llvm-*/lib/libomp.so*"))
        if shutil.which("clang") and libomp:
            return "clang"
        return None
    return "gcc" if shutil.which("gcc") else None


@pytest.fixture(scope="module")
def other_runtime_module(tmp_path_factory):
    other = _other_compiler()
    if other is None or not OPENMP or sys.platform != "linux":
        pytest.skip("Requires the other compiler and its OpenMP runtime "
                    "(apt-get install clang libomp-dev), as .ci/run installs")
    d = tmp_path_factory.mktemp("othert")
    build_extension(d, "othert", OTHER_PYX, compiler=other)
    sys.path.insert(0, str(d))
    try:
        import othert
    finally:
        sys.path.remove(str(d))
    yield othert
    be.KERNELS.pop("othert.twice", None)


def _profile_for_both():
    """sum and othert.twice parallel from 1000 in a loop, never when lone."""
    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "test profile")
    for k in ("sum", "othert.twice"):
        p.set_table(k, "float64", ((0, 1), (1000, 2)), ((0, 1),))
    return p


@needs2
def test_a_kernel_of_another_runtime_has_a_team_of_its_own(other_runtime_module):
    """Its module links the other compiler's runtime: unless one runtime is
    preloaded for all, its loops run on a second thread pool.  That team
    sleeps while breakeven's is busy: a call of it after breakeven's own
    parallel calls is a lone call (the cold table: serial), until its own
    calls wake its team; explain and show_versions say so."""
    mod = other_runtime_module
    shared = runtimes.global_runtime() is not None
    team = be.get_kernel("othert.twice").slot
    teams = runtimes.teams()
    from breakeven._core import engine

    k_team = engine.kernel_team(team)
    assert (k_team == 0) if shared else (k_team >= 1)
    if not shared:
        assert teams[k_team].name != runtimes.running().name
    testing.reset(_profile_for_both())
    x = rng.standard_normal(1 << 18)
    out = np.empty_like(x)
    for _ in range(3):  # breakeven's own team busy
        be.sum(x)
    assert be.explain(be.sum, x).variant == "parallel"
    d = be.explain(mod.twice, x, out)
    assert d.variant == ("parallel" if shared else "serial"), d
    if not shared:
        assert "another OpenMP runtime" in str(d), str(d)
    for _ in range(3):  # its own team now
        mod.twice(x, out)
    np.testing.assert_array_equal(out, 2.0 * x)
    assert be.explain(mod.twice, x, out).variant == "parallel"
    found = info()["openmp"]
    if not shared:
        assert any("thread pool of its own" in v for v in found.values()), found
        assert "othert.twice" in found["teams"], found


@needs2
def test_a_forked_child_runs_each_team_by_its_runtimes_rule(other_runtime_module,
                                                            own_budget):
    """In a forked child, a team that ran on libgomp in the parent cannot
    run (its kernels serial); a team on libomp can: each by its own rule."""
    if runtimes.global_runtime() is not None:
        pytest.skip("one runtime preloaded for every module: one team")
    mod = other_runtime_module
    testing.reset(_profile_for_both())
    x = rng.standard_normal(1 << 18)
    out = np.empty_like(x)
    for _ in range(3):
        be.sum(x)
        mod.twice(x, out)
    from breakeven._core import engine

    k_team = engine.kernel_team(be.get_kernel("othert.twice").slot)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            testing.idle(-3600)  # both teams "awake": only fork decides
            words = " ".join(be.explain(f, x, out).variant
                             for f in (be.sum, mod.twice))
            os.write(write, words.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("forked child hung")
        time.sleep(0.01)
    words = os.read(read, 100).decode().replace("numpy", "serial").split()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    expected = ["parallel" if r.fork_safe else "serial"
                for r in (runtimes.running(), runtimes.teams()[k_team])]
    assert words == expected


def test_two_runtimes_in_one_process_are_reported(tmp_path):
    """A process with two OpenMP runtimes loaded (one through a module that
    links its own): breakeven info names both and says which is shared."""
    other = _other_compiler()
    if other is None or not OPENMP or sys.platform != "linux":
        pytest.skip("Requires the other compiler and its OpenMP runtime "
                    "(apt-get install clang libomp-dev), as .ci/run installs")
    build_extension(tmp_path, "othert2",
                    OTHER_PYX.replace("othert.twice", "othert2.twice"), compiler=other)
    code = textwrap.dedent("""
        import othert2, breakeven
        from breakeven._info import info
        found = info()["openmp"]
        print("\\n".join(f"{k}: {v}" for k, v in found.items()))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    loaded = [ln for ln in r.stdout.splitlines() if ln.startswith("loaded ")]
    assert len(loaded) >= 2, r.stdout
    if runtimes.global_runtime() is None:
        assert "thread pool of its own" in r.stdout, r.stdout
    else:
        assert "unused" in r.stdout, r.stdout
