"""Dispatch: drop-in functions against NumPy, decisions and their reasons,
thread caps, the core budget, contention feedback, fork, user kernels."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from helpers import build_extension
from threadpoolctl import threadpool_limits

import breakeven as be
from breakeven import testing
from breakeven._core import runtimes
from breakeven._profile import Profile, host_fingerprint

CPUS = be.usable_cpus()
needs2 = pytest.mark.skipif(CPUS < 2, reason="Requires at least 2 CPUs")


def eager_profile(threshold=1000, cold=10**6, threads=None):
    """A profile sending every kernel parallel from ``threshold`` (hot)."""
    t = threads or max(2, CPUS)
    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "test profile")
    for k in be.KERNELS:
        for d in ("float64", "float32"):
            p.set_table(k, d, ((0, 1), (threshold, t)), ((0, 1), (cold, t)))
    return p


@pytest.fixture(autouse=True)
def fresh_dispatch():
    testing.reset()
    yield
    testing.reset()


@pytest.fixture
def eager():
    p = eager_profile()
    testing.reset(p)
    testing.idle(-3600)  # keep it hot
    return p


@pytest.fixture(params=["dispatched", "fast path"])
def paths(request):
    """Run a test through dispatch (parallel from 1000 elements) and through
    the C fast path (every call below the threshold)."""
    p = eager_profile(threshold=1000 if request.param == "dispatched" else 10**12,
                      cold=10**12 + 1)
    testing.reset(p)
    testing.idle(-3600)
    return request.param


# ---------------------------------------------------------------------------
# drop-in: NumPy's results, types and errors
# ---------------------------------------------------------------------------

rng = np.random.default_rng(7)
F64 = rng.standard_normal(5000)
F32 = F64.astype(np.float32)
M = rng.standard_normal((30, 40))

SUM_CASES = [
    ((F64,), {}), ((F32,), {}), ((M,), {}), ((M,), {"axis": 0}), ((M,), {"axis": 1}),
    ((M,), {"keepdims": True}), ((F64,), {"dtype": np.float32}), (([1, 2, 3],), {}),
    ((np.arange(10),), {}), ((F64[::3],), {}), ((F64[::-1],), {}),
    ((F64.astype(np.float16),), {}), ((F64 + 1j,), {}), ((np.array(3.5),), {}),
    ((np.empty(0),), {}), ((M.T,), {}), ((F64,), {"initial": 5.0}),
    ((F64,), {"where": F64 > 0}), ((np.ones(3, dtype=">f8"),), {}),
    ((np.ma.array([1.0, 2.0], mask=[0, 1]),), {}),
]


@pytest.mark.parametrize("args,kwargs", SUM_CASES)
def test_sum_matches_numpy(args, kwargs, paths):
    got, ref = be.sum(*args, **kwargs), np.sum(*args, **kwargs)
    assert type(got) is type(ref)
    assert np.shape(got) == np.shape(ref) and np.asarray(got).dtype == \
        np.asarray(ref).dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5 if np.asarray(ref).dtype ==
                               np.float32 else 1e-12, atol=1e-9)


def test_sum_kernel_path_is_the_kernel(paths):
    """On kernel inputs the drop-in gives the kernel's bits, serial or not."""
    from breakeven._kernels.reductions import sum_serial

    assert be.sum(F64) == sum_serial(F64)
    with be.threads(1):
        assert be.sum(F64) == sum_serial(F64)


ERROR_CASES = [
    (be.sum, np.sum, ("abc",), {}),
    (be.sum, np.sum, (F64,), {"axis": 3}),
    (be.dot, np.dot, (F64, F64[:10]), {}),
    (be.dot, np.dot, (M, F64), {}),
    (be.cumsum, np.cumsum, (M,), {"axis": 2}),
    (be.cumsum, np.cumsum, (F64,), {"out": np.empty(3)}),
    (be.exp, np.exp, ("x",), {}),
    (be.exp, np.exp, (F64,), {"out": np.empty(3)}),
    (be.histogram, np.histogram, (F64, 5, (2.0, 1.0)), {}),
    (be.histogram, np.histogram, (np.array([1.0, np.nan]),), {}),
    (be.histogram, np.histogram, (F64, 5, (0.0, np.inf)), {}),
    (be.histogram, np.histogram, (F64, -2), {}),
]


@pytest.mark.parametrize("ours,theirs,args,kwargs", ERROR_CASES)
def test_errors_are_numpys(ours, theirs, args, kwargs, paths):
    with pytest.raises(Exception) as ref:
        theirs(*args, **kwargs)
    with pytest.raises(type(ref.value)):
        ours(*args, **kwargs)


@pytest.mark.parametrize("a,b", [
    (F64, F64[::-1].copy()), (F32, F32), (F64, F32), (M, M.T), (M, F64[:40]),
    ([1.0, 2.0], [3.0, 4.0]), (np.arange(5), np.arange(5)), (F64[::2], F64[::2]),
])
def test_dot_matches_numpy(a, b, paths):
    got, ref = be.dot(a, b), np.dot(a, b)
    assert type(got) is type(ref) and np.asarray(got).dtype == np.asarray(ref).dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("x", [F64, F32, M, np.float32(2.0) * M, F64[::2],
                               np.arange(4), [0.5, 1.5], np.array(1.0),
                               np.array([np.inf, -np.inf, np.nan, 710.0, -746.0])])
def test_exp_matches_numpy(x, paths):
    with np.errstate(over="ignore"):
        ref = np.exp(x)
        got = be.exp(x)
    assert type(got) is type(ref) and np.shape(got) == np.shape(ref)
    assert np.asarray(got).dtype == np.asarray(ref).dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6 if np.asarray(ref).dtype ==
                               np.float32 else 1e-14)


@pytest.mark.parametrize("dtype, big", [(np.float64, 710.0), (np.float32, 89.0)])
@pytest.mark.parametrize("n", [5, 20_000])  # serial / parallel when dispatched
def test_exp_reports_overflow_as_numpy_does(paths, dtype, big, n):
    import warnings

    x = np.zeros(n, dtype)
    x[:4] = [1.0, big, np.inf, np.nan]
    with pytest.warns(RuntimeWarning, match="overflow encountered in exp"):
        got = be.exp(x)
    with np.errstate(over="ignore"):
        want = np.exp(x[:4])
    np.testing.assert_allclose(got[:4], want, rtol=1e-6)  # 4 ulp
    with np.errstate(over="raise"), pytest.raises(FloatingPointError,
                                                 match="overflow encountered in exp"):
        be.exp(x, out=np.empty_like(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # inf, -inf, NaN and huge negative numbers are not overflows
        quiet = np.zeros(n, dtype)
        quiet[:4] = [np.inf, -np.inf, np.nan, -1e30]
        be.exp(quiet)
        with np.errstate(over="ignore"):
            be.exp(x, out=x)  # in place: the check reads x before writing
    assert np.isinf(x[1])
    calls = []
    with np.errstate(over="call"):
        old = np.seterrcall(lambda kind, flag: calls.append((kind, flag)))
        try:
            be.exp(np.full(n, big, dtype))
        finally:
            np.seterrcall(old)
    assert calls == [("overflow", 2)]


def test_exp_out_and_in_place(paths):
    out = np.empty_like(F64)
    r = be.exp(F64, out=out)
    assert r is out
    np.testing.assert_allclose(out, np.exp(F64), rtol=1e-14)
    y = F64.copy()
    assert be.exp(y, y) is y
    np.testing.assert_allclose(y, np.exp(F64), rtol=1e-14)
    o2 = np.empty((2, len(F64)))[0]  # a view: still contiguous
    assert be.exp(F64, out=(o2,)) is o2
    ref = np.empty(len(F64) + 1)
    got = np.empty(len(F64) + 1)
    np.exp(F64, out=ref[1:])
    be.exp(F64, out=got[1:])  # an offset view
    np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-14)
    assert be.exp(F64, where=F64 > 0, out=np.zeros_like(F64))[F64 <= 0].sum() == 0


@pytest.mark.parametrize("a,kw", [
    (F64, {}), (F32, {}), (M, {}), (M, {"axis": 0}), (M, {"axis": 1}),
    (F64, {"axis": 0}), (F64, {"dtype": np.float32}), (np.arange(6), {}),
    ([1.0, 2.0], {}), (F64[::2], {}), (np.array(2.0), {}), (np.empty(0), {}),
])
def test_cumsum_matches_numpy(a, kw, paths):
    got, ref = be.cumsum(a, **kw), np.cumsum(a, **kw)
    assert type(got) is type(ref) and got.shape == ref.shape and got.dtype == ref.dtype
    scale = np.cumsum(np.abs(np.asarray(a, dtype=np.float64)), **{
        k: v for k, v in kw.items() if k != "dtype"}) + 1
    assert np.all(np.abs(got - ref) <= 1e-4 * scale)


def test_cumsum_out(paths):
    out = np.empty(len(F64))
    assert be.cumsum(F64, out=out) is out
    y = F64.copy()
    assert be.cumsum(y, out=y) is y
    np.testing.assert_allclose(y, np.cumsum(F64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bins", [10**30, 2**41])
def test_histogram_with_more_bins_than_memory_raises_numpys_error(bins, paths):
    x = np.linspace(0.0, 1.0, 16)
    with pytest.raises(Exception) as ref:
        np.histogram(x, bins, (0.0, 1.0))
    with pytest.raises(type(ref.value)):
        be.histogram(x, bins, (0.0, 1.0))


@pytest.mark.openmp
@needs2
def test_histogram_too_small_to_split_takes_no_cores(rng):
    """An input one thread counts whatever the thread count (at most the
    kernel's smallest share) is counted without routing: even forced to 2
    threads it takes no cores from the budget; one element more does."""
    from breakeven._kernels.histogram import histogram_parallel

    small = rng.standard_normal(4096)
    with be.threads(2, exact=True):
        testing.reset_peak()
        counts, edges = be.histogram(small, 7, (-2.0, 2.0))
        assert testing.budget().peak == 0
        want = np.histogram(small, 7, (-2.0, 2.0))
        np.testing.assert_array_equal(counts, want[0])
        np.testing.assert_array_equal(edges, want[1])
        # the kernel itself agrees: this size is one chunk
        np.testing.assert_array_equal(
            histogram_parallel(small, 7, -2.0, 2.0, 2)[0], want[0])
        testing.reset_peak()
        be.histogram(rng.standard_normal(4097), 7, (-2.0, 2.0))
        assert testing.budget().peak == 2


@pytest.mark.parametrize("a,args,kw", [
    (F64, (), {}), (F32, (7,), {}), (M, (5, (-1, 1)), {}), (F64, (12, (-1, 1)), {}),
    (F32, (12, (-1.0, 1.0)), {}), (F32, (12, (np.float64(-1), np.float64(1))), {}),
    (F64, ("auto",), {}), (F64, ([-1, 0, 2],), {}), (F64, (5,), {"density": True}),
    (F64, (5,), {"weights": np.abs(F64)}), (np.arange(10), (3,), {}),
    (np.full(5, 2.0), (4,), {}), (np.empty(0), (3,), {}), ([0.5, 0.7], (2,), {}),
    (F64, (np.int64(9), (0, 1)), {}), (F64, (3, (1.0, 1.0)), {}),
])
def test_histogram_matches_numpy(a, args, kw, paths):
    got, ref = be.histogram(a, *args, **kw), np.histogram(a, *args, **kw)
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)


def test_axpy(paths):
    x, y = F64.copy(), F32.astype(np.float64)
    ref = y.copy()
    ref += 0.5 * x
    assert be.axpy(0.5, x, y) is y
    np.testing.assert_array_equal(y, ref)  # bit for bit
    # NumPy's rules elsewhere: promotion, casting errors, broadcasting
    y32 = F32.copy()
    ref32 = F32.copy()
    ref32 += np.float64(0.5) * F32
    np.testing.assert_array_equal(be.axpy(np.float64(0.5), F32, y32), ref32)
    yi = np.zeros(len(F64), dtype=np.int64)
    with pytest.raises(Exception) as ref_err:
        yi += 0.5 * F64
    with pytest.raises(type(ref_err.value)):
        be.axpy(0.5, F64, yi)
    yb = np.zeros((3, 4))
    be.axpy(2.0, np.ones(4), yb)
    np.testing.assert_array_equal(yb, 2.0)
    z = F64.copy()
    ref = F64.copy()
    ref += 2.0 * F64
    np.testing.assert_array_equal(be.axpy(2.0, z, z), ref)  # x is y
    w = F64.copy()
    ref = F64.copy()
    ref[1:] += 2.0 * F64[:-1]
    be.axpy(2.0, w[:-1], w[1:])  # overlapping views: NumPy's answer
    np.testing.assert_array_equal(w, ref)


def test_nearest(paths):
    X = rng.integers(-3, 4, (500, 4)).astype(np.float64)
    C = rng.integers(-3, 4, (9, 4)).astype(np.float64)
    ref = np.argmin(((X[:, None] - C[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(be.nearest(X, C), ref)
    np.testing.assert_array_equal(be.nearest(X.tolist(), C.tolist()), ref)
    np.testing.assert_array_equal(be.nearest(np.asfortranarray(X), C), ref)
    np.testing.assert_array_equal(be.nearest(X.astype(np.float32), C), ref)
    with pytest.raises(ValueError):
        be.nearest(X, C[:, :3])
    with pytest.raises(ValueError):
        be.nearest(X[0], C)
    with pytest.raises(ValueError):
        be.nearest(X, C[:0])


# ---------------------------------------------------------------------------
# decisions and their reasons
# ---------------------------------------------------------------------------


@pytest.mark.openmp
def test_explain_reasons(eager):
    d = be.explain(be.sum, [1.0, 2.0])
    assert d.variant == "numpy" and "not a contiguous" in d.reason
    assert d.kernel == "sum" and str(d).startswith("sum: numpy")
    del eager.tables["exp"]
    testing.reset(eager)  # the core holds the tables of the profile given it
    testing.idle(-3600)
    d = be.explain(be.exp, np.ones(10**6))  # not calibrated here: its default
    assert d.source == "default" and "embedded default" in d.reason
    d = be.explain(be.sum, np.ones(10**6))
    assert d.source == "calibrated" and "test profile" in d.reason
    d = be.explain(be.sum, np.ones(10))
    assert d.variant == "serial" and "work 10 < 1000" in d.reason
    assert "hot table" in d.reason and "test profile" in d.reason
    if CPUS >= 2:
        d = be.explain(be.sum, np.ones(5000))
        assert d.variant == "parallel" and d.threads == CPUS and d.work == 5000
        assert "work 5000 >= 1000" in d.reason and f"of {CPUS} CPUs free" in d.reason
    with be.threads(1):
        assert be.explain(be.sum, np.ones(5000)).variant == "serial"
    assert "sum" in str(be.explain(be.sum, np.ones(5000)))


@pytest.mark.openmp
def test_lone_calls_use_the_cold_table():
    p = eager_profile(threshold=1000, cold=100_000)
    testing.reset(p)
    x = np.ones(5000)
    assert be.explain(be.sum, x).variant == "serial"  # nothing ran: lone
    assert "cold table" in be.explain(be.sum, x).reason
    be.sum(x)  # now a call of that size has just run
    assert "hot table" in be.explain(be.sum, x).reason
    testing.idle(1e9)
    assert be.explain(be.sum, np.ones(200_000)).variant == \
        ("parallel" if CPUS >= 2 else "serial")


@pytest.mark.openmp
def test_lone_calls_are_decided_from_the_cold_table_and_not_contention():
    """A lone call (the team asleep) takes the cold table, and its time,
    which includes waking the team, is not taken for contention."""
    p = eager_profile(threshold=1000, cold=100_000)
    testing.reset(p)
    x, big = np.ones(5000), np.ones(200_000)
    for _ in range(5):  # hot calls: what a parallel call costs here
        testing.idle(-3600)
        be.sum(big)
    with testing.clock_scale(50.0):  # parallel calls would look very slow
        for _ in range(2 * testing.BACKOFF_AFTER):
            testing.idle(1e9)
            assert be.sum(x) == 5000.0  # cold table: serial
            testing.idle(1e9)
            testing.reset_peak()
            assert be.sum(big) == 200_000.0  # cold table: parallel
            assert testing.budget().peak == min(CPUS, 2) or CPUS < 2
        assert not testing.backoff_state("sum")["backed_off"]
    assert be.stats()["sum", "float64"].backoffs == 0


@pytest.mark.openmp
@needs2
def test_the_call_that_wakes_the_team_after_serial_cold_calls_is_not_contention():
    """A loop's first call runs serially from the cold table; the next one,
    from the hot table (a call has just run), goes parallel and pays the
    team's wake-up, since a serial call does not keep the team awake.  Its
    time is not taken for contention: it is the team's wake-up, measured,
    and once measured, such a call runs serially where the wake-up costs
    more than it saves."""
    p = eager_profile(threshold=1000, cold=10**9)  # lone calls: serial
    testing.reset(p)
    x = np.ones(200_000)
    testing.idle(-3600)
    with be.threads(CPUS, exact=True):  # the team started and awake (forced
        for _ in range(20):             # calls teach nothing)
            be.sum(x)
    for _ in range(5):  # hot calls: what a parallel call costs here
        be.sum(x)
    # ... and a serial one, made to look clearly slower: on a host whose
    # second CPU is often busy parallel may gain little here, and the calls
    # would correct the table to serial, which is not what is tested
    with testing.clock_scale(3.0):
        for _ in range(testing.EXPLORE_UNTIL):
            testing.idle(1e9)
            be.sum(x)
    peaks = []
    with testing.clock_scale(50.0):  # calls now look very slow
        for _ in range(2 * testing.BACKOFF_AFTER):
            testing.idle(1e9)  # the team asleep, no call for long
            assert be.sum(x) == 200_000.0  # lone: serial, from the cold table
            assert be.explain(be.sum, x).table == "hot"  # a call just ran
            testing.reset_peak()
            assert be.sum(x) == 200_000.0  # hot table: parallel, waking it
            peaks.append(testing.budget().peak)
        assert not testing.backoff_state("sum")["backed_off"]
    # parallel until the wake-up was measured, then serial
    n = testing.WAKE_EVIDENCE
    assert peaks[:n] == [2] * n and peaks[n:] == [1] * (len(peaks) - n), peaks
    testing.idle(1e9)
    be.sum(x)
    d = be.explain(be.sum, x)
    assert d.variant == "serial" and "measured waking the team" in d.reason, d


@pytest.mark.openmp
@needs2
def test_lone_calls_take_the_table_of_their_idle_time():
    """Waking the team costs little after a short idle time and a lot after
    a long one (an idle virtual CPU descheduled by its host): a lone call is
    judged with the penalty measured for the longest idle time not longer
    than its own, by the call and by explain()."""
    p = eager_profile(threshold=1000, cold=10**9)
    works = [2 ** k for k in range(10, 21)]
    rows = [(w, 1, 1e-9 * w) for w in works] + [(w, 2, 0.5e-9 * w) for w in works]
    p.set_table("sum", "float64", ((0, 1), (1000, 2)), ((0, 1),), rows)
    p.sleep_after_us = 10_000.0
    p.wake = ((10_000.0, 2, 20e-6), (30_000.0, 2, 5e-3))
    testing.reset(p)
    x = np.ones(1 << 18)  # 262 us serial, 131 us parallel in the profile
    for idle, want in ((0.015, 2), (0.05, 1)):
        testing.idle(idle)
        d = be.explain(be.sum, x)
        assert d.threads == want and d.table == "cold", (idle, d)
        assert be.decide("sum", 1 << 18, idle=idle).threads == want
        testing.idle(idle)
        testing.reset_peak()
        assert be.sum(x) == float(1 << 18)
        assert testing.budget().peak == want


@pytest.mark.openmp
@needs2
def test_threads_caps_nest_and_are_thread_local(eager):
    x = np.ones(5000)
    with be.threads(2):
        assert be.explain(be.sum, x).threads == 2
        with be.threads(64):  # cannot raise the outer cap
            assert be.explain(be.sum, x).threads == 2
        with be.threads(1):
            assert be.explain(be.sum, x).variant == "serial"
        seen = []
        t = threading.Thread(target=lambda: seen.append(be.explain(be.sum, x)))
        t.start()
        t.join()
        assert seen[0].threads == CPUS  # another thread: no cap
    with be.threads(2, exact=True):
        d = be.explain(be.sum, np.ones(3))  # below the threshold, forced
        assert d.variant == "parallel" and d.threads == 2
    with be.threads(10**6, exact=True):
        assert be.explain(be.sum, np.ones(3)).threads == CPUS  # clamped


def test_threads_and_section_validate():
    for bad in (0, -1):
        with pytest.raises(ValueError), be.threads(bad):
            pass
        with pytest.raises(ValueError), be.section(bad):
            pass
    with pytest.raises(TypeError), be.threads(2.0):
        pass


def test_state_is_restored_after_exceptions(eager):
    with pytest.raises(RuntimeError), be.threads(1), be.section():
        raise RuntimeError
    assert testing.budget().free == CPUS
    assert testing.thread_controls() == (0, 0, 0)


@pytest.mark.openmp
@needs2
def test_threadpoolctl_openmp_limit_is_obeyed(eager):
    x = np.ones(5000)
    assert be.explain(be.sum, x).variant == "parallel"
    with threadpool_limits(limits=1, user_api="openmp"):
        d = be.explain(be.sum, x)
        assert d.variant == "serial" and "omp_get_max_threads 1" in d.reason


@needs2
def test_omp_num_threads_1_gives_serial_decisions(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, breakeven as be
        from breakeven import testing
        from test_dispatch import eager_profile
        testing.reset(eager_profile())
        d = be.explain(be.sum, np.ones(10**6))
        print(d.variant, d.threads)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.path.dirname(__file__)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["serial", "1"]


# ---------------------------------------------------------------------------
# the core budget
# ---------------------------------------------------------------------------


@needs2
def test_concurrent_callers_share_the_cores(eager):
    """Four Python threads hammering parallel kernels: results right, and
    never more OpenMP threads in flight than usable CPUs."""
    x = rng.standard_normal(200_000)
    expected_sum = be.sum(x)
    ref_exp = np.exp(x)
    errors = []

    def worker():
        try:
            for i in range(60):
                if i % 2:
                    assert be.sum(x) == expected_sum
                else:
                    np.testing.assert_allclose(be.exp(x), ref_exp, rtol=1e-14)
        except Exception as exc:  # reported below
            errors.append(exc)

    testing.reset_peak()
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    assert 2 <= testing.budget().peak <= CPUS
    assert testing.budget().free == CPUS and testing.budget().in_flight == 0


@pytest.mark.openmp
@needs2
def test_section_reserves_cores(eager):
    x = np.ones(5000)
    with be.section():
        assert testing.budget().free == 0
        d = be.explain(be.sum, x)
        assert d.variant == "parallel" and "section" in d.reason
        seen = []
        t = threading.Thread(target=lambda: seen.append(be.sum(x)))
        t.start()
        t.join()
        assert seen == [5000.0]  # ran serially: no free core
        with be.section():  # nested
            assert be.sum(x) == 5000.0
    assert testing.budget().free == CPUS


@needs2
def test_section_caps_blas_once(eager):
    from threadpoolctl import threadpool_info

    with threadpool_limits(limits=2, user_api="blas"):
        with be.section():
            blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
            assert blas and all(i["num_threads"] == 1 for i in blas)
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert all(i["num_threads"] == 2 for i in blas)


@needs2
def test_parallel_sized_serial_calls_hold_a_core(eager):
    """A call above the threshold that runs serially (here capped by
    threads(1)) occupies a core: the budget counts it, so a concurrent
    parallel call gets one thread fewer, and never more than the CPUs run."""
    x, o = np.ones(2 ** 22), np.empty(2 ** 22)
    y, p = np.ones(2 ** 20), np.empty(2 ** 20)
    done = threading.Event()

    def worker():
        with be.threads(1):
            for _ in range(8):
                be.exp(x, out=o)
        done.set()

    testing.reset_peak()
    t = threading.Thread(target=worker)
    t.start()
    seen = []
    while not done.is_set():
        seen.append(testing.budget().in_flight)
        be.exp(y, out=p)
    t.join()
    assert 1 in seen  # the serial call held its core
    assert testing.budget().peak <= CPUS
    assert testing.budget().in_flight == 0 and testing.budget().free == CPUS
    np.testing.assert_array_equal(o, be.exp(x))


@pytest.fixture
def fake_blas():
    """A BLAS seen by the core as functions that record what it does."""
    import ctypes

    state = {"threads": 4, "sets": []}

    @ctypes.CFUNCTYPE(ctypes.c_int)
    def get():
        return state["threads"]

    @ctypes.CFUNCTYPE(None, ctypes.c_int)
    def put(n):
        state["sets"].append(n)
        state["threads"] = n

    addr = [ctypes.cast(f, ctypes.c_void_p).value for f in (get, put)]
    with testing.blas_functions([tuple(addr)]):
        yield state


@pytest.mark.openmp
@needs2
def test_nearest_in_parallel_caps_blas_only_when_needed(eager, fake_blas, rng):
    X, C = rng.standard_normal((3000, 16)), rng.standard_normal((32, 16))
    want = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
    with be.threads(2, exact=True):
        got = be.nearest(X, C)
    assert fake_blas["sets"] == [1, 4]  # capped for the call, restored
    np.testing.assert_array_equal(got, want)
    fake_blas["sets"].clear()
    fake_blas["threads"] = 1
    with be.threads(2, exact=True):
        be.nearest(X, C)
    assert fake_blas["sets"] == []  # at one thread already: left alone
    with be.threads(1):
        be.nearest(X, C)
    fake_blas["threads"] = 3
    assert fake_blas["sets"] == []  # a serial call: BLAS left alone
    with be.section(), be.threads(2, exact=True):
        assert fake_blas["sets"] == [1]  # the section capped it, once
        np.testing.assert_array_equal(be.nearest(X, C), want)
        assert fake_blas["sets"] == [1]  # ... so the call did not
    assert fake_blas["sets"] == [1, 3]  # and the section restored it
    assert testing.budget().in_flight == 0 and testing.budget().free == CPUS


def test_a_blas_that_cannot_be_capped_is_left_alone(eager, rng):
    X, C = rng.standard_normal((3000, 16)), rng.standard_normal((32, 16))
    with testing.blas_functions([]):
        with be.threads(2, exact=True):
            got = be.nearest(X, C)
        with be.section():
            np.testing.assert_array_equal(be.nearest(X, C), got)
    assert testing.budget().in_flight == 0
    np.testing.assert_array_equal(got, be.nearest(X, C))


# ---------------------------------------------------------------------------
# contention feedback
# ---------------------------------------------------------------------------


@pytest.mark.openmp
@needs2
def test_feedback_backs_off_under_contention_and_recovers(eager):
    """Calls made to look slow back the kernel off; probes find out when
    they are fast again."""
    x = np.ones(100_000)
    with testing.clock_scale(1.0) as slowdown:
        for _ in range(20):  # learn the uncontended speed
            be.sum(x)
        assert be.explain(be.sum, x).threads == CPUS
        testing.clock_scale(20.0)  # now every parallel call looks 20x slower
        for _ in range(testing.BACKOFF_AFTER):
            be.sum(x)
        d = be.explain(be.sum, x)
        assert d.threads < CPUS and "backed off" in d.reason
        assert be.stats()["sum", "float64"].backoffs == 1
        # backed-off calls accumulate time until a probe is due: it fails
        # while the contention lasts, and the back-off stays
        testing.make_probe_due("sum")
        assert be.explain(be.sum, x).threads == CPUS  # the probe
        be.sum(x)
        # (a probe a millisecond or more after the last parallel call may
        # have had to wake the team: not judged, the next call probes again)
        if be.explain(be.sum, x).threads == CPUS:
            be.sum(x)
        assert be.explain(be.sum, x).threads < CPUS
        assert 1 <= be.stats()["sum", "float64"].probes <= 2
        testing.clock_scale(1.0)  # contention gone: the next probe finds out
        for _ in range(3):  # (a probe that hits machine noise is retried later)
            testing.make_probe_due("sum")
            be.sum(x)
            if be.explain(be.sum, x).threads == CPUS:
                break
        assert be.explain(be.sum, x).threads == CPUS
        assert be.stats()["sum", "float64"].recoveries == 1
        # two extreme calls in a row are enough to back off
        assert testing.backoff_state("sum")["spacing"] == testing.PROBE_RATIO
        testing.clock_scale(50.0)
        be.sum(x)
        assert be.explain(be.sum, x).threads == CPUS
        be.sum(x)
        assert be.explain(be.sum, x).threads < CPUS
        # ... and backing off again so soon after a probe lifted the back-off
        # (contention that comes and goes) spaces the probes twice as far
        assert testing.backoff_state("sum")["spacing"] == 2 * testing.PROBE_RATIO
        state = testing.backoff_state("sum")
        assert state["backed_off"] and state["cap"] == max(1, CPUS // 2)
    assert slowdown is not None


@pytest.mark.openmp
@needs2
def test_contention_is_judged_against_the_calibrated_times():
    """With the calibration's times in the profile, the very first calls,
    if contended, are recognised as slow: no uncontended call is needed to
    learn what normal is."""
    x = np.ones(100_000)
    p = eager_profile()
    k = be.KERNELS["sum"]
    k.parallel(x, CPUS)  # the team awake
    per_call = []
    for _ in range(20):  # the fastest call: what a calibration would record
        t0 = time.perf_counter()
        k.parallel(x, CPUS)
        per_call.append(time.perf_counter() - t0)
    for d in ("float64", "float32"):
        p.set_table("sum", d, p.steps("sum", d), p.steps("sum", d, "cold"),
                    ((100_000, CPUS, min(per_call)),))
    testing.reset(p)
    testing.idle(-3600)
    with testing.clock_scale(50.0):  # every call looks 50x slower
        be.sum(x)
        be.sum(x)
        d = be.explain(be.sum, x)
    assert d.threads < CPUS and "backed off" in d.reason


@needs2
def test_rates_are_kept_per_thread_count(eager):
    """A kernel's calls at another thread count (a cap, a section) do not
    erase what it learnt of its full count: contention at full count is
    still recognised after capped calls."""
    x = np.ones(100_000)
    with testing.simulated_cpus(4):
        testing.reset(eager_profile(threads=4))
        testing.idle(-3600)
        for _ in range(10):
            be.sum(x)  # learns the 4-thread speed (4 threads on 2 CPUs)
        with be.threads(2):
            for _ in range(10):
                be.sum(x)  # 2 threads: another table of rates
        with testing.clock_scale(50.0):
            be.sum(x)  # may wake the 2 threads the capped calls let sleep
            be.sum(x)
            be.sum(x)
        # backed off to half (the next call may already be a probe, if a
        # backed-off call ran very slowly on a loaded host: not asserted)
        state = testing.backoff_state("sum")
        assert state["backed_off"] and state["cap"] == 2, state


# ---------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------


@pytest.mark.openmp
@needs2
def test_forked_child_finishes_its_calls(eager, own_budget):
    x = rng.standard_normal(1 << 20)
    expected = be.sum(x)  # the parent's OpenMP team exists now
    assert be.explain(be.sum, x).variant == "parallel"
    for _ in range(3):
        safe = runtimes.survives_fork()
        pid = os.fork()
        if pid == 0:  # child: dispatched calls must finish, correctly
            code = 1
            try:
                # serial where the runtime's pool does not survive fork
                # (libgomp); LLVM's and Intel's start a new one
                variant = "parallel" if safe else "serial"
                ok = (be.sum(x) == expected and be.explain(be.sum, x).variant ==
                      variant and np.allclose(be.exp(x[:1000]), np.exp(x[:1000])))
                code = 0 if ok else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            pytest.fail("forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0


# ---------------------------------------------------------------------------
# a user kernel, compiled here, end to end
# ---------------------------------------------------------------------------

USER_PYX = '''
# cython: language_level=3, boundscheck=False, wraparound=False
from cython.parallel cimport prange

def scale_serial(const double[::1] x, double[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = 3.0 * x[i] + 1.0
    return out.base

def scale_parallel(const double[::1] x, double[::1] out, int n_threads):
    cdef Py_ssize_t i
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            out[i] = 3.0 * x[i] + 1.0
    return out.base
'''

USER_MODULE = '''
import numpy as np
import breakeven
from userkern_ext import scale_parallel, scale_serial


def _sample(work, dtype, rng):
    x = rng.standard_normal(int(work)).astype(dtype)
    return x, np.empty_like(x)


@breakeven.kernel(parallel=scale_parallel, work=lambda x, out: x.shape[0],
                  sample=_sample, dtypes=("float64",))
def scale(x, out):
    """out = 3 x + 1"""
    return scale_serial(x, out)
'''


@pytest.fixture(scope="module")
def user_kernel_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("userkern")
    (d / "userkern.py").write_text(USER_MODULE)
    build_extension(d, "userkern_ext", USER_PYX)
    return d


@pytest.mark.openmp
def test_user_kernel_end_to_end(user_kernel_dir, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(user_kernel_dir))
    import userkern

    x = rng.standard_normal(50_000)
    out = np.empty_like(x)
    assert userkern.scale(x, out) is out
    np.testing.assert_array_equal(out, 3.0 * x + 1.0)
    # named after its module: name-spaced
    assert userkern.scale.kernel.name == "userkern.scale"
    assert be.KERNELS["userkern.scale"].call is userkern.scale
    # calibrate it, then dispatch from that profile
    prof = be.calibrate(["userkern.scale"], budget=3, quick=True, progress=False,
                        dtypes=("float64",))
    assert ("userkern.scale", "float64") in prof.sweeps
    testing.reset(eager_profile())
    testing.idle(-3600)
    d = be.explain(userkern.scale, x, out)
    assert d.kernel == "userkern.scale" and d.work == 50_000
    assert d.variant == ("parallel" if CPUS >= 2 else "serial")
    with be.threads(1):
        assert be.explain(userkern.scale, x, out).variant == "serial"
    out2 = np.empty_like(x)
    assert userkern.scale(x, out2) is out2  # the parallel variant returns it too
    np.testing.assert_array_equal(out2, out)
    # and through the command line, with --module
    env = {**os.environ, "PYTHONPATH": str(user_kernel_dir)}
    path = tmp_path / "p.toml"
    full = Profile(host_fingerprint(), {}, "earlier", 10_000.0)
    full.set_table("sum", "float64", ((0, 1), (12345, 2)), ((0, 1),))
    full.save(path)
    # --module alone: the kernels that module registers, and only them
    r = subprocess.run([sys.executable, "-m", "breakeven", "calibrate", "--quick",
                        "--budget", "3", "--module", "userkern",
                        "--dtypes", "float64", "--output", str(path), "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    kernels = {ln.split()[0] for ln in r.stdout.splitlines()
               if ln.split() and ln.split()[0] in be.KERNELS}
    assert kernels == {"userkern.scale"}, r.stdout
    # ... and the entries it did not measure are kept
    saved = be.load_profile(path)
    assert saved.steps("sum", "float64") == ((0, 1), (12345, 2))
    assert ("userkern.scale" in saved.tables
            and saved.method("userkern.scale", "float64") == "quick")
    # a process without the module keeps and shows the entry, not loaded
    r = subprocess.run([sys.executable, "-m", "breakeven", "show", "--profile",
                        str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ignoring" not in r.stderr, r.stderr
    assert "userkern.scale (not loaded)" in r.stdout
    be.KERNELS.pop("userkern.scale", None)


@pytest.mark.openmp
def test_every_kernel_call_is_decided_and_counted_by_the_core():
    """Each drop-in asks the core for every call its kernel computes (the
    counters see each one), and not for the calls NumPy computes; a forced
    thread count runs that many threads, from the budget."""
    testing.reset(eager_profile(threshold=10**12, cold=10**12 + 1))
    be.stats(reset=True)
    x = np.linspace(0, 1, 5000)
    assert be.sum(x) == pytest.approx(2500.0)
    assert be.dot(x, x) == pytest.approx(np.dot(x, x))
    np.testing.assert_allclose(be.exp(x), np.exp(x), rtol=1e-15)
    np.testing.assert_allclose(be.cumsum(x), np.cumsum(x), rtol=1e-12)
    y = np.ones(5000)
    assert be.axpy(2, x, y) is y
    counts, edges = be.histogram(x, 7, (0.0, 1.0))
    np.testing.assert_array_equal(counts, np.histogram(x, 7, (0.0, 1.0))[0])
    X, C = x[:400].reshape(100, 4), x[:12].reshape(3, 4)
    np.testing.assert_array_equal(be.nearest(X, C), np.argmin(
        ((X[:, None] - C[None]) ** 2).sum(-1), axis=1))
    st = be.stats()
    for k in ("sum", "dot", "exp", "cumsum", "axpy", "histogram", "nearest"):
        assert (st[k, "float64"].serial, st[k, "float64"].parallel) == (1, 0), k
    be.sum([1.0, 2.0])  # NumPy's
    be.sum(x[::2])  # NumPy's
    assert be.stats()["sum", "float64"].serial == 1
    testing.reset_peak()
    with be.threads(2, exact=True):
        assert be.sum(x) == pytest.approx(2500.0)
    assert testing.budget().peak == min(2, CPUS) if CPUS >= 2 else True
    assert testing.budget().free == CPUS
    assert be.stats()["sum", "float64"].parallel == (1 if CPUS >= 2 else 0)
