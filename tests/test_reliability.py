"""Reliability: regressions found by fuzzing, config faults through
dispatch, concurrency, fork and other start methods, kill -9 of a
calibration, and resource use.

These are the fast versions run by ``make test``; ``reliability/run.py``
(``make reliability``) runs them at full size by setting the counts below
through the environment, and collects the figures each test logs.
"""

import gc
import json
import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest
from helpers import thread_control, truncated

import breakeven as be
from breakeven import _profile, testing
from breakeven._core import runtimes
from breakeven._kernels.registry import BUILTINS
from breakeven._profile import FORMAT_VERSION, Profile, ProfileWarning, host_fingerprint

CPUS = be.usable_cpus()
needs2 = pytest.mark.skipif(CPUS < 2, reason="Requires at least 2 CPUs")


def scaled(name: str, fast: int) -> int:
    """A count: the fast default, or $BREAKEVEN_REL_<name> (reliability/run.py)."""
    return int(os.environ.get(f"BREAKEVEN_REL_{name}", fast))


def log(item: str, count: int, **extra) -> None:
    """Record a figure for reliability/run.py's report (once it has passed)."""
    path = os.environ.get("BREAKEVEN_RELIABILITY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"item": item, "count": count, **extra}) + "\n")


KERNEL_NAMES = tuple(BUILTINS)


def profile_with(threshold: int, cold: int | None = None,
                 fingerprint=None, nearest: int | None = None) -> Profile:
    """Parallel from ``threshold`` (hot) for every kernel and dtype."""
    t = max(2, CPUS)
    p = Profile(fingerprint or host_fingerprint(), {}, "2026-11-26T12:00:00+00:00",
                10_000.0, "reliability profile")
    for k in KERNEL_NAMES:
        thr = nearest if k == "nearest" and nearest else threshold
        for d in ("float64", "float32"):
            p.set_table(k, d, ((0, 1), (thr, t)), ((0, 1), (cold or 4 * thr, t)))
    return p


def keep_hot() -> None:
    testing.idle(-3600)


@pytest.fixture(autouse=True)
def fresh_dispatch():
    testing.reset()
    yield
    testing.reset()


# ---------------------------------------------------------------------------
# regressions found by tests/test_fuzz.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2**31 - 1, 2**31, 2**40, 10**30])
@pytest.mark.parametrize("exact", [False, True])
def test_huge_thread_counts_work_and_leave_no_cap(n, exact):
    """threads(2**31) raised OverflowError on entry and left its cap on the
    thread's stack: every later call of that thread stayed capped."""
    x = np.ones(5000)
    with be.threads(n, exact=exact):
        assert be.sum(x) == 5000.0
        assert 1 <= be.explain(be.sum, x).threads <= be.usable_cpus()
    assert testing.thread_controls() == (0, 0, 0)


@pytest.mark.parametrize("call", [
    lambda f, x: f(x, 0.0), lambda f, x: f(x, False), lambda f, x: f(x, np.ones(2)),
    lambda f, x: f(x, axis=np.float64(0))], ids=["0.0", "False", "array", "f8"])
def test_cumsum_axis_of_another_type_is_numpys_error(call):
    """cumsum(x, axis=0.0) (or False) on a 1-D float array ran the kernel
    where NumPy raises TypeError, and an array axis raised ValueError (its
    truth value) instead of NumPy's TypeError: the planner compared the axis
    with ``in (0, -1)``."""
    x = np.linspace(0.0, 1.0, 10)
    with pytest.raises(Exception) as ref:
        call(np.cumsum, x)
    with pytest.raises(type(ref.value)):
        call(be.cumsum, x)


@pytest.mark.parametrize("keepdims", [np.ones(4), np.ones(1), "x"])
def test_sum_keepdims_of_another_type_is_numpys_error(keepdims):
    """sum(x, keepdims=array) raised ValueError (the array's truth value, in
    the planner's ``keepdims not in (...)``) where NumPy raises TypeError."""
    x = np.linspace(0.0, 1.0, 10)
    with pytest.raises(Exception) as ref:
        np.sum(x, keepdims=keepdims)
    with pytest.raises(type(ref.value)):
        be.sum(x, keepdims=keepdims)


def test_nearest_row_with_inf_follows_numpys_formula():
    """The kernel ranks centres by |c|^2 - 2 x.c, leaving out the row's own
    |x|^2; for a row holding +-inf NumPy's formula turns -inf into NaN there
    and picks the first NaN.  Such rows now take the full formula."""
    X = np.array([[-np.inf, 0.36, 1.3, 1e-40], [np.inf, 0, 0, 0], [np.nan, 1, 1, 1],
                  [1.0, 2.0, 3.0, 4.0]])
    C = np.array([[4.0, 2, 0, -3], [-2, -5, -5, -5], [-4, 3, 2, 5], [0, 1, 5, 3]])
    with np.errstate(all="ignore"):
        d = (X * X).sum(1)[:, None] - 2 * (X @ C.T) + (C * C).sum(1)[None, :]
    np.testing.assert_array_equal(be.nearest(X, C), np.argmin(d, axis=1))


EMPTY_CALLS = {
    "sum": "be.sum(x)", "dot": "be.dot(x, x)", "axpy": "be.axpy(2.0, x, x.copy())",
    "exp": "be.exp(x)", "exp out": "be.exp(x, out=np.empty_like(x))",
    "cumsum": "be.cumsum(x)", "histogram": "be.histogram(x, 3, (0.0, 1.0))",
    "nearest": "be.nearest(x.reshape(0, 1), np.ones((2, 1), x.dtype))",
}


def test_empty_arrays_on_the_parallel_path_do_not_crash():
    """An empty array sent to the parallel axpy or exp kernel from the C path
    divided by zero (SIGFPE) while splitting it into chunks: exp of a
    (2, 0, 0) array under threads(2, exact=True) killed the process, and so
    did any empty array with a profile whose table goes parallel from 0."""
    setup = textwrap.dedent("""
        import contextlib
        from breakeven import testing
        from breakeven._profile import Profile, host_fingerprint
        p = Profile(host_fingerprint(), {}, "now", None, "test")
        for k in be.KERNELS:
            for d in ("float64", "float32"):
                p.set_table(k, d, ((0, 2),), ((0, 2),))
        ways = [lambda: be.threads(2, exact=True), contextlib.nullcontext]
    """)
    calls = "\n".join(f"            r = {c}" for c in EMPTY_CALLS.values())
    code = (f"import numpy as np, breakeven as be\n{setup}\n"
            f"for i, ctx in enumerate(ways):\n"
            f"    if i == 1:\n        testing.reset(p)  # parallel from work 0\n"
            f"    for dt in (np.float64, np.float32):\n"
            f"        x = np.zeros(0, dt)\n        with ctx():\n{calls}\n"
            f"            assert be.exp(np.zeros((2, 0, 0), dt)).shape == (2, 0, 0)\n"
            f"print('done')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr[-2000:]


@pytest.mark.xfail(strict=True, reason="breakeven.exp(x, out) cannot tell a "
                   "positional out from out=: a positional tuple, which NumPy "
                   "refuses, is taken as out=(array,)")
def test_exp_positional_out_tuple():
    x = np.linspace(0.0, 1.0, 10)
    with pytest.raises(TypeError):
        np.exp(x, (np.empty_like(x),))
    with pytest.raises(TypeError):
        be.exp(x, (np.empty_like(x),))


# ---------------------------------------------------------------------------
# calls of every kernel, with their serial results
# ---------------------------------------------------------------------------

THR = 4096  # the test profiles' hot threshold: sizes straddle it
SIZES = (THR // 2, THR - 1, THR, THR + 1, THR + 32, 2 * THR, 16 * THR)


def make_call(kernel: str, dtype, n: int, rng: np.random.Generator):
    """A drop-in call of about ``n`` work, as a function of no arguments."""
    x = rng.standard_normal(n).astype(dtype)
    if kernel == "sum":
        return lambda: be.sum(x)
    if kernel == "dot":
        y = rng.standard_normal(n).astype(dtype)
        return lambda: be.dot(x, y)
    if kernel == "axpy":
        y = rng.standard_normal(n).astype(dtype)
        return lambda: be.axpy(0.75, x, y.copy())
    if kernel == "exp":
        return lambda: be.exp(x)
    if kernel == "cumsum":
        return lambda: be.cumsum(x)
    if kernel == "histogram":
        return lambda: be.histogram(x, 16, (-2.0, 2.0))
    X = x[: (n // 32) * 4].reshape(-1, 4)  # work: rows * 8 centres * 4
    C = rng.standard_normal((8, 4)).astype(dtype)
    return lambda: be.nearest(X, C)


def serial_result(call):
    with be.threads(1):
        return call()


def identical(got, ref) -> bool:
    """Every kernel gives the same bits for every thread count."""
    if isinstance(ref, tuple):
        return all(identical(g, r) for g, r in zip(got, ref, strict=True))
    return type(got) is type(ref) and np.array_equal(got, ref, equal_nan=True) \
        and np.asarray(got).dtype == np.asarray(ref).dtype


def call_table(seed: int, sizes=SIZES):
    """[(kernel, dtype, size, call, expected)] over every kernel and size."""
    rng = np.random.default_rng(seed)
    table = []
    for k in KERNEL_NAMES:
        for dtype in (np.float64, np.float32):
            for n in sizes:
                call = make_call(k, dtype, n, rng)
                table.append((k, np.dtype(dtype).name, n, call, serial_result(call)))
    return table


# ---------------------------------------------------------------------------
# 2. config faults, through dispatch
# ---------------------------------------------------------------------------


def good_profile_text() -> str:
    return _profile.dumps([profile_with(THR)])


def replace(old: str, new: str, count: int = 1):
    def spoil(path: Path) -> None:
        text = good_profile_text()
        assert old in text, old
        path.write_text(text.replace(old, new, count))
    return spoil


def other_host(path: Path) -> None:
    fp = host_fingerprint()
    other = _profile.Fingerprint("Another CPU", fp.usable_cpus + 62, fp.openmp,
                                 "passive", fp.blas, fp.breakeven)
    path.write_text(_profile.dumps([profile_with(THR, fingerprint=other)]))


KEY = host_fingerprint().key
# Each class: how to spoil the file, and what the warning must say.
CONFIG_FAULTS = {
    "empty": (lambda p: p.write_text(""), "format"),
    "truncated": (lambda p: p.write_text(truncated(good_profile_text())), ""),
    "binary garbage": (lambda p: p.write_bytes(bytes(range(256)) * 3), "not a text"),
    "not TOML": (lambda p: p.write_text("format = = 1 ]]"), "TOML"),
    "wrong type": (replace("usable_cpus = ", 'usable_cpus = "many" #'),
                   "usable_cpus"),
    "negative work_min": (replace(f"[{THR}, ", "[-1, "), "negative"),
    "unsorted steps": (replace(f"[[0, 1], [{THR}, ", "[[0, 1], [0, "), "increasing"),
    "threads < 1": (replace(f"[{THR}, {max(2, CPUS)}]", f"[{THR}, 0]"), "threads"),
    "not a kernel name": (replace('.kernels."sum"', '.kernels."f f t"'),
                          "not a kernel name"),
    "unknown dtype": (replace('"sum".float32', '"sum".float16'), "unknown dtype"),
    "future format version": (replace(f"format = {FORMAT_VERSION}", "format = 7"),
                              "version 7"),
    "another host's fingerprint": (other_host, "no calibration for this host"),
    "key edited by hand": (replace(f'"{KEY}"', '"0123456789abcdef"', -1),
                           "key does not match"),
    "hosts not a table": (lambda p: p.write_text("format = 1\nhosts = 3\n"), "hosts"),
    "negative sleep time": (replace("sleep_after_us = ", "sleep_after_us = -"),
                            "sleep_after_us"),
    "unreadable permissions": (lambda p: (p.write_text(good_profile_text()),
                                          p.chmod(0)), "permission"),
    "a directory in its place": (lambda p: p.mkdir(), "directory"),
}


def dispatch_everything(rng) -> None:
    """Every drop-in, small and large, agrees with NumPy."""
    for n in (10, 5000, 100_000):
        x = rng.standard_normal(n)
        y = rng.standard_normal(n)
        bound = 1e-12 * (np.abs(x).sum() + 1)
        assert abs(be.sum(x) - np.sum(x)) <= bound
        assert abs(be.dot(x, y) - np.dot(x, y)) <= 1e-12 * (np.abs(x * y).sum() + 1)
        ref = y.copy()
        ref += 0.5 * x
        np.testing.assert_array_equal(be.axpy(0.5, x, y.copy()), ref)
        np.testing.assert_allclose(be.exp(x), np.exp(x), rtol=1e-14)
        np.testing.assert_allclose(be.cumsum(x), np.cumsum(x), rtol=0,
                                   atol=1e-12 * (np.abs(x).sum() + 1))
        for g, r in zip(be.histogram(x, 13), np.histogram(x, 13), strict=True):
            np.testing.assert_array_equal(g, r)
    X, C = rng.integers(-3, 4, (2000, 4)).astype(float), np.eye(4)[:3] * 2
    np.testing.assert_array_equal(
        be.nearest(X, C), np.argmin(((X[:, None] - C[None]) ** 2).sum(-1), axis=1))


@pytest.mark.parametrize("fault", ["intact", *CONFIG_FAULTS])
def test_config_fault_through_dispatch(fault, private_profile, monkeypatch):
    """The profile at $BREAKEVEN_PROFILE spoiled one way: dispatch warns
    exactly once, naming the file and the problem, falls back to the embedded
    default, and every drop-in stays right.  ("intact" is the control: the
    unspoiled file is used, silently.)"""
    path = private_profile
    if fault == "intact":
        path.write_text(good_profile_text())
        word = None
    else:
        spoil, word = CONFIG_FAULTS[fault]
        spoil(path)
    if fault == "unreadable permissions" and os.access(path, os.R_OK):
        real = Path.read_text  # root reads any file: refuse all the same

        def refuse(self, *a, **k):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)
        monkeypatch.setattr(Path, "read_text", refuse)
    testing.forget_warnings()
    rng = np.random.default_rng(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # a reload meets the same problem: still one warning
            testing.reset()
            dispatch_everything(rng)
            source = testing.profile().source
    ours = [str(w.message) for w in caught if issubclass(w.category, ProfileWarning)]
    if word is None:
        assert ours == [] and source == str(path)
        assert testing.profile().threshold("sum", "float64") == THR
        return
    assert len(ours) == 1, ours
    assert str(path) in ours[0] and word in ours[0], ours[0]
    assert source.startswith("embedded default")
    log("config fault classes", 1, fault=fault)


# ---------------------------------------------------------------------------
# 3. concurrency
# ---------------------------------------------------------------------------

CONTROLS = [None, None, None, ("threads", 1), ("threads", 2), ("exact", 2),
            ("section", None), ("section", 1)]


def run_threads(targets, timeout: float) -> None:
    """Start daemon threads and require them all to finish in time."""
    ts = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in ts if t.is_alive()]
    assert not stuck, f"{len(stuck)} thread(s) still running after {timeout} s"


@pytest.mark.openmp
@needs2
def test_concurrent_mixed_calls_are_right_and_within_the_cores():
    """8 Python threads x N mixed calls over every kernel, dtype and size
    around the threshold, under every thread control: every result has the
    serial bits, nothing deadlocks, and the OpenMP threads in flight (the
    core budget's instrumentation, sampled and peak) never exceed the
    usable CPUs."""
    testing.reset(profile_with(THR, nearest=THR))
    table = call_table(11)
    calls = scaled("CALLS_PER_THREAD", 150)
    errors, seen = [], {"max": 0}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            seen["max"] = max(seen["max"], testing.budget()[2])
            time.sleep(0.0002)

    def worker(seed):
        r = random.Random(seed)
        try:
            for i in range(calls):
                k, d, n, call, ref = table[r.randrange(len(table))]
                if r.random() < 0.7:
                    keep_hot()  # a call in a loop; else a lone (cold) call
                with thread_control(r.choice(CONTROLS)):
                    got = call()
                if not identical(got, ref):
                    errors.append(f"{k} {d} n={n} call {i}: wrong result")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    testing.reset_peak()
    s = threading.Thread(target=sampler, daemon=True)
    s.start()
    try:
        run_threads([lambda i=i: worker(i) for i in range(8)], timeout=600)
    finally:
        stop.set()
        s.join(10)
    usable, free, in_flight, peak = testing.budget()
    assert not errors, errors[:5]
    assert 2 <= peak <= CPUS and seen["max"] <= CPUS
    assert (free, in_flight) == (usable, 0)
    log("concurrent calls checked", 8 * calls, max_in_flight=max(peak, seen["max"]))


@pytest.mark.openmp
@needs2
def test_calibration_while_others_dispatch(private_profile):
    """One thread calibrates and saves (the real measuring path) while
    others dispatch and a reader keeps loading the file: no crash, right
    results, and the file is never seen torn."""
    path = private_profile
    testing.reset(profile_with(THR, nearest=THR))
    profile_with(THR).save(path)  # the previous calibration
    table = call_table(12, sizes=(THR - 1, THR, 4 * THR))
    errors, reads = [], {"n": 0}
    done = threading.Event()
    rounds = scaled("CALIBRATIONS", 1)

    def calibrator():
        try:
            for _ in range(rounds):
                p = be.calibrate(kernels=["sum"], quick=True, budget=1.0,
                                 progress=False, dtypes=("float64",))
                p.save(path)
        except Exception as exc:  # reported below
            errors.append(f"calibration: {exc!r}")
        finally:
            done.set()

    def dispatcher(seed):
        r = random.Random(seed)
        try:
            while not done.is_set():
                k, d, n, call, ref = table[r.randrange(len(table))]
                if not identical(call(), ref):
                    errors.append(f"{k} {d} {n}: wrong result")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    def reader():
        try:
            while not done.is_set():
                hosts = _profile.parse_hosts(path.read_text(), path)
                tables = hosts[KEY]["kernels"]["sum"]["float64"]
                assert tables["hot"] and tables["cold"]
                reads["n"] += 1
        except Exception as exc:  # reported below
            errors.append(f"reader: {exc!r}")

    run_threads([calibrator, reader] + [lambda i=i: dispatcher(i) for i in range(3)],
                timeout=300)
    assert not errors, errors[:5]
    assert reads["n"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = _profile.load_profile(path)
    assert p.source == str(path) and p.steps("sum", "float64")[0] == (0, 1)
    log("calibrations during dispatch", rounds, reads=reads["n"])


# ---------------------------------------------------------------------------
# 4. fork, multiprocessing start methods, joblib/loky
# ---------------------------------------------------------------------------

CHILD_SIZES = (THR + 1, 16 * THR)


def child_checks(table, expect_serial: bool) -> int:
    """Run every call of the table (parallel-sized), also with threads forced
    to 2; 0 if all are right and decided as expected, else a failure code."""
    if expect_serial:  # the forked child of an OpenMP parent
        for k, _, n, _, _ in table:
            d = be.explain(be.sum, np.ones(n)) if k == "sum" else None
            if d is not None and d.variant != "serial":
                return 4
    elif CPUS >= 2 and be.explain(be.sum, np.ones(16 * THR)).variant != "parallel":
        return 5
    for _, _, _, call, ref in table:
        if not identical(call(), ref):
            return 3
        with be.threads(2, exact=True):
            if not identical(call(), ref):
                return 3
    usable, free, in_flight, _ = testing.budget()
    b = be.host_budget()
    if b.joined:  # nothing of the child's left in the host's budget
        mine = {p.pid: p for p in b.processes}[os.getpid()]
        whole = (mine.held, mine.lent) == (0, 0) and b.free + sum(
            p.held + p.lent for p in b.processes) == b.usable
    else:
        whole = free == usable
    return 0 if whole and in_flight == 0 else 6


def wait_exit(pid: int, timeout: float = 10.0) -> int:
    """The exit code of a child, which must finish within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} did not finish within {timeout} s")


def parent_runs_parallel(table) -> None:
    testing.reset_peak()
    for _, _, _, call, ref in table:
        keep_hot()
        assert identical(call(), ref)
    assert testing.budget()[3] >= 2  # the parent's OpenMP team exists


def _mp_child(table, expect_serial: bool) -> None:
    os._exit(child_checks(table, expect_serial))


def _spawned_child(seed, sizes, profile) -> None:
    """A fresh interpreter: parallel calls run parallel (within the usable
    CPUs) and right, within 10 s of the start."""
    start = time.monotonic()
    testing.reset(profile)
    table = call_table(seed, sizes)
    keep_hot()
    testing.reset_peak()
    code = child_checks(table, expect_serial=False)
    if code == 0 and CPUS >= 2 and not 2 <= testing.budget()[3] <= CPUS:
        code = 7
    if code == 0 and time.monotonic() - start > 10:
        code = 8
    sys.exit(code)


@pytest.mark.openmp
@needs2
def test_forked_children_finish_their_calls(own_budget):
    """os.fork and multiprocessing's fork, each after the parent ran parallel
    kernels: every child runs parallel-sized calls (serially where the
    runtime does not survive fork, libgomp; in parallel on LLVM's and
    Intel's), gets the right results and exits 0 within 10 s.  (The
    process's own budget: in the host's, the parent's share would lower
    the child's.)"""
    testing.reset(profile_with(THR, nearest=THR))
    table = call_table(21, sizes=CHILD_SIZES)
    n = scaled("FORKS", 4)
    for _ in range(n):
        parent_runs_parallel(table)
        expect_serial = not runtimes.survives_fork()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child_checks(table, expect_serial)
            finally:
                os._exit(code)
        assert wait_exit(pid) == 0
    ctx = multiprocessing.get_context("fork")
    for _ in range(n):
        parent_runs_parallel(table)
        expect_serial = not runtimes.survives_fork()
        p = ctx.Process(target=_mp_child, args=(table, expect_serial))
        p.start()
        p.join(10)
        if p.is_alive():
            p.kill()
            pytest.fail("multiprocessing fork child did not finish within 10 s")
        assert p.exitcode == 0
    log("fork trials passed", 2 * n, os_fork=n, multiprocessing_fork=n)


@pytest.mark.openmp
@needs2
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_children_run_parallel(method, monkeypatch):
    """Under spawn and forkserver the children are fresh processes: their
    parallel-sized calls run parallel (within the usable CPUs) and right,
    and they exit 0 within 10 s once started."""
    # no limit inherited from the environment (a Dask cluster started earlier
    # in the session leaves OMP_NUM_THREADS=1 in os.environ)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    profile = profile_with(THR, nearest=THR)
    testing.reset(profile)
    sizes = (THR + 1, 4 * THR)
    n = scaled("SPAWNS", 2)
    ctx = multiprocessing.get_context(method)
    parent_runs_parallel(call_table(22, sizes))
    # calls do not pickle: each child rebuilds the table from its seed
    for first in range(0, n, 4):  # a few at a time: each starts Python afresh
        procs = [ctx.Process(target=_spawned_child, args=(22, sizes, profile))
                 for _ in range(first, min(n, first + 4))]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)  # the interpreter's start-up, then at most 10 s of calls
            if p.is_alive():
                p.kill()
                pytest.fail(f"{method} child did not finish")
            assert p.exitcode == 0
    log("fork trials passed", n, **{method: n})


def _loky_task(profile, seed):
    """In a loky worker: what dispatch decides and runs, and the limits."""
    from breakeven._core import openmp

    testing.reset(profile)
    keep_hot()
    testing.reset_peak()
    table = call_table(seed, sizes=(16 * THR,))
    right = all(identical(call(), ref) for _, _, _, call, ref in table)
    return (openmp.max_threads(), be.explain(be.sum, np.ones(16 * THR)).threads,
            testing.budget()[3], right)


@pytest.mark.openmp
@needs2
@pytest.mark.parametrize("n_jobs,inner", [(2, None), (2, 1), (2, 2)])
def test_loky_worker_limits_are_obeyed(n_jobs, inner):
    """Inside joblib.Parallel (loky), dispatch keeps to the worker's OpenMP
    limit: cpu_count // n_jobs by default, or inner_max_num_threads."""
    from joblib import Parallel, delayed, parallel_config
    from joblib.externals.loky import get_reusable_executor

    profile = profile_with(THR, nearest=THR)
    limit = inner or max(1, CPUS // n_jobs)
    try:
        with parallel_config(backend="loky", inner_max_num_threads=inner):
            out = Parallel(n_jobs=n_jobs, timeout=120)(
                delayed(_loky_task)(profile, s) for s in range(4))
    finally:
        get_reusable_executor().shutdown(wait=True)
    for max_threads, decided, peak, right in out:
        assert right
        assert max_threads == limit, out
        assert decided <= limit and peak <= limit, out
        assert (peak >= 2) == (limit >= 2)
    log("loky worker checks", len(out))


# ---------------------------------------------------------------------------
# 5. kill -9 of a calibration; two calibrations at once
# ---------------------------------------------------------------------------


def calibrate_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "breakeven", "calibrate", "--quick", "--kernels",
            "sum", "--budget", "0.5", "--output", str(path), "--no-progress"]


def whole_profile(path: Path) -> dict:
    """The file parses and holds this host's complete table for sum."""
    hosts = _profile.parse_hosts(path.read_text(), path)
    tables = hosts[KEY]["kernels"]["sum"]
    assert set(tables) == {"float64", "float32"}
    for states in tables.values():
        assert states["hot"] and states["cold"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _profile.load_profile(path).source == str(path)
    sidecar = Path(str(path) + ".sweeps.json")
    if sidecar.exists():  # the calibration record beside it is whole too
        assert KEY in json.loads(sidecar.read_text())
    return hosts


@pytest.mark.openmp
def test_kill_9_during_calibration_never_leaves_a_partial_profile(tmp_path):
    """kill -9 at random points of `breakeven calibrate`: the previous profile
    is intact, or the new one is whole."""
    path = tmp_path / "profile.toml"
    t0 = time.monotonic()
    subprocess.run(calibrate_command(path), check=True, timeout=300,
                   capture_output=True)
    duration = time.monotonic() - t0
    whole_profile(path)
    trials = scaled("KILLS", 2)
    r = random.Random(1)
    outcome = {"intact": 0, "replaced": 0}
    for i in range(trials):
        before = path.read_text()
        proc = subprocess.Popen(calibrate_command(path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # anywhere in the run, half of the trials in its last fifth (the save)
        lo = 0.0 if i % 2 == 0 else 0.8 * duration
        time.sleep(r.uniform(lo, 1.05 * duration))
        proc.kill()
        proc.wait(60)
        whole_profile(path)
        outcome["intact" if path.read_text() == before else "replaced"] += 1
    leftovers = len(list(tmp_path.glob(".profile.toml.*.tmp")))
    log("kill trials passed", trials, calibration_s=round(duration, 2),
        leftover_temp_files=leftovers, **outcome)


@pytest.mark.openmp
def test_two_calibrations_at_once_leave_one_whole_profile(tmp_path):
    path = tmp_path / "profile.toml"
    procs = [subprocess.Popen(calibrate_command(path), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    hosts = whole_profile(path)
    assert list(hosts) == [KEY]
    assert not list(tmp_path.glob(".*.tmp"))
    log("simultaneous calibrations", 2)


# ---------------------------------------------------------------------------
# 6. resource use
# ---------------------------------------------------------------------------


def mixed_calls(n: int, rng) -> None:
    """n dispatched calls: C fast path, parallel, NumPy's path, explain,
    thread controls and raised errors."""
    x = rng.standard_normal(2 * THR)
    small = x[:100]
    y = np.empty_like(x)
    ints = np.arange(50)
    X, C = rng.standard_normal((300, 4)), rng.standard_normal((8, 4))
    for i in range(n):
        j = i % 12
        if j == 0:
            be.sum(small)
        elif j == 1:
            be.sum(x)
        elif j == 2:
            be.exp(x, out=y)
        elif j == 3:
            be.axpy(1e-9, small, y[:100])
        elif j == 4:
            be.cumsum(x, out=y)
        elif j == 5:
            be.histogram(x, 32, (-3.0, 3.0))
        elif j == 6:
            be.nearest(X, C)
        elif j == 7:
            be.sum(ints)  # NumPy's path
        elif j == 8:
            be.dot(x, x)
        elif j == 9:
            with be.threads(1):
                be.exp(small)
        elif j == 10:
            with be.section():
                be.dot(small, small)
        else:
            try:
                be.histogram(x, -1)
            except ValueError:
                pass


def test_rss_fds_and_threads_stay_flat_over_many_calls():
    testing.reset(profile_with(THR, nearest=THR))
    keep_hot()
    rng = np.random.default_rng(3)
    n = scaled("RESOURCE_CALLS", 30_000)
    me = psutil.Process()
    mixed_calls(max(2000, n // 10), rng)  # warm up: pools, caches, allocator
    gc.collect()
    rss0, fds0, thr0 = me.memory_info().rss, me.num_fds(), me.num_threads()
    objs0 = len(gc.get_objects())
    mixed_calls(n, rng)
    gc.collect()
    rss1, fds1, thr1 = me.memory_info().rss, me.num_fds(), me.num_threads()
    objs1 = len(gc.get_objects())
    assert rss1 - rss0 < 16 * 2**20, (rss0, rss1)
    assert fds1 == fds0 and thr1 == thr0
    assert objs1 - objs0 < 1000, (objs0, objs1)
    usable, free, in_flight, _ = testing.budget()
    assert (free, in_flight) == (usable, 0)
    log("resource calls", n, rss_growth_kib=(rss1 - rss0) // 1024,
        fd_growth=fds1 - fds0, thread_growth=thr1 - thr0,
        object_growth=objs1 - objs0)


class Abort(BaseException):
    """Not an Exception: unwinds like KeyboardInterrupt."""


def os_threads_settle(expected: int, timeout: float = 10.0) -> int:
    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while me.num_threads() != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return me.num_threads()


def test_no_leaked_threads_or_state_after_section_and_threads():
    """section() and threads() exits, normal or by exceptions (from the body,
    from a kernel, a BaseException), in this thread and in short-lived
    Python threads: no thread, core, cap or BLAS limit is left behind."""
    from threadpoolctl import threadpool_info

    testing.reset(profile_with(THR, nearest=THR))
    keep_hot()
    x = np.random.default_rng(4).standard_normal(4 * THR)
    be.sum(x)  # the OpenMP team exists from here on
    blas0 = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    threads0, os_threads0 = threading.active_count(), psutil.Process().num_threads()
    rounds = scaled("LEAK_ROUNDS", 100)

    def body(i):
        kind = i % 4
        try:
            with be.section(None if i % 2 else 1):
                with be.threads(1 + i % 3, exact=bool(i % 5 == 0)):
                    be.exp(x)
                    be.nearest(x[:400].reshape(100, 4), x[:12].reshape(3, 4))
                    if kind == 0:
                        raise RuntimeError("body")
                    if kind == 1:
                        be.histogram(x, -1)  # NumPy's ValueError
                    if kind == 2:
                        raise Abort
        except (RuntimeError, ValueError, Abort):
            pass

    for i in range(rounds):
        body(i)
    assert testing.thread_controls() == (0, 0, 0)

    def short_lived(i):
        body(i)
        assert testing.thread_controls() == (0, 0, 0)

    errors = []

    def guarded(i):
        try:
            short_lived(i)
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    for i in range(0, rounds, 4):
        run_threads([lambda i=i + k: guarded(i) for k in range(4)], timeout=120)
    assert not errors, errors[:3]
    usable, free, in_flight, _ = testing.budget()
    assert (free, in_flight) == (usable, 0)
    assert threading.active_count() == threads0
    # OpenMP teams of the Python threads that ended are gone too
    assert os_threads_settle(os_threads0) == os_threads0
    assert [i["num_threads"] for i in threadpool_info()
            if i["user_api"] == "blas"] == blas0
    log("section/threads exits checked", 2 * rounds)
