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


def test_each_runtime_has_its_own_spin_settings(monkeypatch):
    env = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "0", "KMP_LIBRARY": "turnaround"}
    assert runtimes.Runtime("libgomp", "").spin(env) == "GOMP_SPINCOUNT=10000"
    assert (runtimes.Runtime("libomp", "").spin(env)
            == "KMP_BLOCKTIME=0;KMP_LIBRARY=turnaround")
    assert runtimes.Runtime("libiomp", "").spin({}) == "default"
    monkeypatch.delenv("KMP_INIT_AT_FORK", raising=False)
    assert not runtimes.Runtime("libgomp", "").fork_safe
    assert runtimes.Runtime("libomp", "").fork_safe
    assert runtimes.Runtime("libiomp", "").fork_safe
    # scikit-learn sets it so when imported: LLVM's and Intel's runtimes
    # then register no fork handler, and a child's first region hangs
    for false in ("FALSE", "0", "no", "off", ".false."):
        monkeypatch.setenv("KMP_INIT_AT_FORK", false)
        assert not runtimes.Runtime("libomp", "").fork_safe, false
    for true in ("TRUE", "1", "yes", "on"):
        monkeypatch.setenv("KMP_INIT_AT_FORK", true)
        assert runtimes.Runtime("libiomp", "").fork_safe, true


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
safe = runtimes.survives_fork()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        variant = be.explain(be.sum, x).variant
        ok = be.sum(x) == expected
        # a fork-safe runtime's team runs in the child: a real region
        size = openmp.team_size(2) if safe else 1
        print(variant, size, ok, flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.openmp
@needs2
@pytest.mark.parametrize("init_at_fork", [None, "FALSE"])
def test_a_forked_child_runs_parallel_only_on_a_runtime_that_survives_fork(
        init_at_fork):
    """libgomp's pool does not survive fork (the child's first region hangs):
    its kernels run serially in the child.  LLVM's and Intel's runtimes
    start a new pool there: the child dispatches in parallel, and a region
    really runs on two threads; unless KMP_INIT_AT_FORK was false when the
    runtime started (as scikit-learn sets it): then they are as libgomp."""
    env = {k: v for k, v in os.environ.items() if k != "KMP_INIT_AT_FORK"}
    if init_at_fork is not None:
        env["KMP_INIT_AT_FORK"] = init_at_fork
    r = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    variant, size, ok = r.stdout.split()
    assert ok == "True"
    if runtimes.running().name in ("libomp", "libiomp") and init_at_fork is None:
        assert (variant, size) == ("parallel", "2")
    else:
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
    clang.  With Intel's runtime preloaded, gcc: its module links libgomp,
    which the preloaded runtime shadows (LLVM's libomp and Intel's must not
    be loaded together: threadpoolctl warns of crashes, and they do)."""
    if runtimes.running().name == "libiomp":
        return "gcc" if shutil.which("gcc") else None
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
def test_a_kernel_of_another_runtime_has_a_team_of_its_own(other_runtime_module,
                                                           own_budget):
    """Its module links the other compiler's runtime: unless one runtime is
    preloaded for all, its loops run on a second thread pool.  That team
    sleeps while breakeven's is busy: a call of it after breakeven's own
    parallel calls is a lone call (the cold table: serial), until its own
    calls wake its team; explain and info say so.  (The process's own
    budget: other processes of the suite would lower its share.)"""
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
    d = be.explain(mod.twice, x, out)
    assert d.variant == "parallel", str(d)
    found = info()["openmp"]
    if not shared:
        assert any("thread pool of its own" in v for v in found.values()), found
        assert "othert.twice" in found["teams"], found


TEAMS_CHILD = """
import os, sys
import numpy as np
import othert
import breakeven as be
from breakeven import testing
from breakeven._core import engine
from breakeven._profile import Profile, host_fingerprint

be.use_host_budget(False)  # the parent's own share would lower the child's
p = Profile(host_fingerprint(), {}, "now", 10_000.0, "test profile")
for k in ("sum", "othert.twice"):
    p.set_table(k, "float64", ((0, 1), (1000, 2)), ((0, 1),))
testing.reset(p)
x = np.random.default_rng(0).standard_normal(1 << 18)
out = np.empty_like(x)
for _ in range(3):
    be.sum(x)
    othert.twice(x, out)
pid = os.fork()
if pid == 0:
    code = 1
    try:
        testing.idle(-3600)  # both teams "awake": only fork decides
        print(be.explain(be.sum, x).variant, be.explain(othert.twice, x, out).variant,
              flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@needs2
def test_a_forked_child_runs_each_team_by_its_runtimes_rule(other_runtime_module):
    """In a forked child, a team that ran on libgomp in the parent cannot
    run (its kernels serial); a team on LLVM's libomp can: each team by its
    own runtime's rule (a fresh process, without KMP_INIT_AT_FORK)."""
    if runtimes.global_runtime() is not None:
        pytest.skip("one runtime preloaded for every module: one team")
    env = {k: v for k, v in os.environ.items() if k != "KMP_INIT_AT_FORK"}
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(other_runtime_module.__file__),
         *filter(None, [env.get("PYTHONPATH")])])
    r = subprocess.run([sys.executable, "-c", TEAMS_CHILD], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    own = runtimes.running().name
    other = "libomp" if own == "libgomp" else "libgomp"
    expected = ["parallel" if rt == "libomp" else "serial" for rt in (own, other)]
    assert r.stdout.split() == expected


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


@pytest.mark.openmp
@needs2
def test_scikit_learns_own_runtime_is_reported_as_a_second_pool():
    """scikit-learn's Linux wheels vendor a renamed libgomp: imported beside
    breakeven, its loops run on a pool of their own.  info lists it, and a
    parallel decision's explanation says the two pools share the cores."""
    pytest.importorskip("sklearn")
    code = textwrap.dedent("""
        import numpy as np
        import sklearn.cluster  # loads scikit-learn's OpenMP runtime
        import breakeven as be
        from breakeven._core import runtimes
        from breakeven._info import info
        be.use_host_budget(False)
        x = np.ones(1 << 20)
        with be.threads(2, exact=True):
            be.sum(x)
            print(be.explain(be.sum, x))
        vendored = [r for r in runtimes.loaded() if "scikit_learn" in r.path]
        print("VENDORED", len(vendored))
        for k, v in info()["openmp"].items():
            print(k, v)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    if "VENDORED 0" in r.stdout:
        pytest.skip("this scikit-learn build vendors no OpenMP runtime")
    shared = runtimes.global_runtime() is not None
    assert ("OpenMP runtimes have thread pools in this process" in r.stdout) != shared
    assert ("scikit_learn" in r.stdout and
            ("thread pool of its own" in r.stdout) != shared), r.stdout
