"""The dispatch core on hosts of any size, driven through its public
functions and the test hooks of ``breakeven.testing``: step tables with
several thread counts, the budget shared by concurrent callers, back-off and
recovery at each thread count, caps; the Cython API hammered from Python
threads and from a prange loop of its own; and explain() against what the
counters show each call did."""

import threading

import numpy as np
import pytest
from helpers import build_extension, ladder, ladder_profile

import breakeven as be
from breakeven import testing
from breakeven._profile import Profile, host_fingerprint

CPU_COUNTS = [1, 2, 3, 8, 64]
CPUS = be.usable_cpus()


@pytest.fixture(autouse=True)
def fresh():
    testing.reset()
    yield
    testing.reset()


@pytest.mark.parametrize("n", CPU_COUNTS)
def test_step_tables_with_several_thread_counts(n):
    with testing.simulated_cpus(n):
        testing.reset(ladder_profile(n))
        for work_min, threads in ladder(n):
            for work in (work_min, 3 * work_min + 5):
                d = be.decide("sum", work)
                assert d.threads == threads, (n, work, d)
                assert d.variant == ("parallel" if threads > 1 else "serial")
        # a profile calibrated on a bigger host: clamped to this one's CPUs
        testing.reset(ladder_profile(4 * n))
        d = be.decide("sum", 10**15)
        assert d.threads == n
        if n > 1:
            assert f"usable CPUs {n}" in d.reason


@pytest.mark.openmp
@pytest.mark.parametrize("n", CPU_COUNTS)
def test_caps_and_forced_counts(n):
    with testing.simulated_cpus(n):
        testing.reset(ladder_profile(n))
        big = 10**15
        for cap in (1, 2, 3, n, 4 * n):
            with be.threads(cap):
                assert be.decide("sum", big).threads == min(cap, n)
                with be.threads(cap + 1):  # an inner cap cannot raise it
                    assert be.decide("sum", big).threads == min(cap, n)
        for forced in (1, 2, 3, 4 * n):
            with be.threads(forced, exact=True):
                d = be.decide("sum", 10)  # below every threshold: forced
                assert d.threads == min(forced, n)
                assert f"threads({forced}, exact=True)" in d.reason
        with be.threads(1):
            assert be.decide("sum", big).variant == "serial"
        assert testing.thread_controls() == (0, 0, 0)


@pytest.mark.parametrize("n", CPU_COUNTS)
def test_budget_is_shared_by_callers(n):
    """Calls in flight together never hold more cores than there are; what
    one holds the next cannot take; everything goes back."""
    with testing.simulated_cpus(n):
        testing.reset(ladder_profile(n))
        testing.reset_peak()
        grants = [be.grant("sum", 10**15) for _ in range(4)]
        got = []
        for g in grants:
            g.__enter__()
            got.append(g.threads)
        assert got[0] == n
        parallel = [t for t in got if t > 1]
        assert sum(parallel) <= n
        assert testing.budget().in_flight <= n
        for g in reversed(grants):
            g.__exit__(None, None, None)
        assert testing.budget() == (n, n, 0, testing.budget().peak)
        assert testing.budget().peak <= n


@pytest.mark.parametrize("n", [3, 8, 64])
def test_concurrent_python_threads_share_the_budget(n):
    """Python threads taking and giving cores at once (the core's atomics,
    not the GIL, keep the count): never more in flight than usable."""
    with testing.simulated_cpus(n):
        testing.reset(ladder_profile(n))
        testing.idle(-3600)
        testing.reset_peak()
        errors = []
        seen = []

        def worker(i):
            try:
                for j in range(300):
                    with be.grant("sum", 10 ** (3 + (i + j) % 12)) as g:
                        assert 1 <= g.threads <= n
                        seen.append(testing.budget().in_flight)
            except Exception as exc:  # reported below
                errors.append(repr(exc))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors[:3]
        assert max(seen) <= n and testing.budget().peak <= n
        assert testing.budget()[:3] == (n, n, 0)


BIG = 10**12  # past every step of the ladders


def times_profile(n: int, seconds: float) -> Profile:
    """A ladder whose calls of work BIG at full threads take ``seconds``
    (the contention check's yardstick)."""
    rows = tuple((BIG, t, seconds) for t in {2, n} if t > 1)
    return ladder_profile(n, times=rows or None)


def call(seconds: float, clock, kernel="sum", work=BIG) -> int:
    """One call of ``work`` taking ``seconds`` of simulated time."""
    with be.grant(kernel, work) as g:
        clock.advance(seconds)
    return g.threads


@pytest.mark.parametrize("n", [2, 3, 8, 64])
def test_back_off_and_recovery_at_each_thread_count(n):
    with testing.simulated_cpus(n), testing.simulated_clock() as clock:
        testing.reset(times_profile(n, 1e-3))
        testing.idle(-3600)
        full = be.decide("sum", BIG).threads
        assert full == n
        for _ in range(5):
            assert call(1e-3, clock) == full  # as calibrated: no back-off
        assert not testing.backoff_state("sum")["backed_off"]
        for _ in range(testing.BACKOFF_AFTER):
            call(5e-3, clock)  # 5x slower than calibrated: contended
        state = testing.backoff_state("sum")
        assert state["backed_off"] and state["cap"] == max(1, full // 2)
        d = be.decide("sum", BIG)
        assert d.threads == max(1, full // 2) and d.table == "backoff"
        # backed-off calls pace the probe: it comes after they have taken
        # PROBE_RATIO times the last slow call (5 ms)
        calls = 0
        while be.decide("sum", BIG).threads < full:
            call(1e-3, clock)
            calls += 1
            assert calls < 1000
        assert calls == testing.PROBE_RATIO * 5
        # the probe runs at full speed: the back-off is lifted.  (The first
        # probe wakes the threads the backed-off calls let sleep: it is not
        # judged, and the next call probes again.)
        probes = 0
        while testing.backoff_state("sum")["backed_off"]:
            assert call(1e-3, clock) == full
            probes += 1
            assert probes <= 2
        assert probes == 2
        st = be.stats()["sum", "float64"]
        assert (st.backoffs, st.probes, st.recoveries) == (1, probes, 1)
        # contention that comes straight back: probes twice as far apart
        clock.advance(0.5)
        testing.idle(-3600)
        for _ in range(2):
            call(20e-3, clock)  # two severe calls are enough
        assert testing.backoff_state("sum")["spacing"] == 2 * testing.PROBE_RATIO


@pytest.mark.parametrize("n", [2, 8, 64])
def test_a_failed_probe_keeps_the_back_off(n):
    with testing.simulated_cpus(n), testing.simulated_clock() as clock:
        testing.reset(times_profile(n, 1e-3))
        testing.idle(-3600)
        for _ in range(2):
            call(20e-3, clock)
        assert testing.backoff_state("sum")["backed_off"]
        testing.make_probe_due("sum")
        assert call(20e-3, clock) == n  # the probe, still contended
        state = testing.backoff_state("sum")
        assert state["backed_off"] and state["spent"] == 0
        assert be.decide("sum", BIG).threads == n // 2


def test_one_cpu_never_goes_parallel():
    with testing.simulated_cpus(1):
        testing.reset(ladder_profile(8))
        for work in (10, 10**6, 10**12):
            assert be.decide("sum", work).threads == 1
        with be.threads(8, exact=True):
            assert be.decide("sum", 10).threads == 1
        with be.grant("sum", 10**12) as g:
            assert g.threads == 1


@pytest.mark.parametrize("n", [2, 8, 64])
def test_lone_calls_after_each_idle_time(n):
    """The cold tables, one per measured idle time, in simulated time."""
    p = ladder_profile(n, sleep_us=10_000.0)
    works = [10**k for k in range(3, 10)]
    rows = [(w, 1, 1e-9 * w) for w in works] + [(w, n, 1e-9 * w / n) for w in works]
    p.set_table("sum", "float64", ((0, 1), (1000, n)), ((0, 1),), rows)
    p.wake = ((10_000.0, n, 20e-6), (30_000.0, n, 5e-3))
    with testing.simulated_cpus(n), testing.simulated_clock():
        testing.reset(p)
        testing.idle(0.001)
        assert be.decide("sum", 10**5).table == "hot"  # within the sleep time
        testing.idle(0.015)  # a short idle: waking costs 20 us
        d = be.decide("sum", 10**5)
        assert d.table == "cold" and d.threads == n, d
        testing.idle(0.05)  # a long one: 5 ms
        assert be.decide("sum", 10**5).threads == 1
        assert be.decide("sum", 10**8).threads == n


@pytest.mark.parametrize("n", [2, 8])
def test_a_loop_of_long_calls_wakes_the_team_once(n):
    """Calls that run longer than the team's sleep time, one after another:
    the first is lone and runs serially (its cold table says waking does
    not pay), but it is not the last call past a threshold for ever: the
    next, straight after its end, belongs to a loop and runs hot."""
    p = ladder_profile(n, sleep_us=10_000.0)
    p.set_table("sum", "float64", ((0, 1), (1000, n)), ((0, 1),))  # cold: never
    p.wake = ((10_000.0, n, 5e-3),)
    with testing.simulated_cpus(n), testing.simulated_clock() as clock:
        testing.reset(p)
        testing.idle(3600)
        got = []
        for _ in range(6):
            with be.grant("sum", 10**8) as g:  # 20 ms serially
                clock.advance(20e-3 if g.threads == 1 else 20e-3 / n)
            got.append(g.threads)
        assert got == [1] + [n] * 5, got
        clock.advance(1.0)  # a lone call again
        assert be.decide("sum", 10**8).threads == 1


# ---------------------------------------------------------------------------
# the Cython API under load
# ---------------------------------------------------------------------------


def test_hammer_from_python_threads():
    """Python threads running begin/end pairs without the GIL, at sizes on
    both sides of the threshold: every call counted once, the budget whole
    again, never more threads than CPUs."""
    testing.reset(ladder_profile(max(2, CPUS)))
    testing.idle(-3600)
    be.stats(reset=True)
    testing.reset_peak()
    per_thread = 20_000
    results = []

    def worker(i):
        results.append(testing.hammer("exp", 10 ** (2 + i % 6), per_thread))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(results) == 8 and max(results) <= CPUS
    st = be.stats()["exp", "float64"]
    assert st.serial + st.parallel == 8 * per_thread
    assert testing.budget()[:3] == (CPUS, CPUS, 0)
    assert testing.budget().peak <= CPUS


HAMMER_PYX = '''
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport free, malloc
from breakeven cimport dispatch as be
import breakeven
import numpy as np

if be.import_breakeven() != 0:
    raise ImportError("breakeven's C API is not available")


def hammer(int kernel, Py_ssize_t work, int calls, int n_threads):
    """begin/end from every thread of a prange of our own; how many calls
    got more than one thread."""
    cdef be.Call *c = <be.Call *>malloc(n_threads * sizeof(be.Call))
    cdef int i, many = 0
    with nogil, parallel(num_threads=n_threads):
        for i in prange(calls, schedule="static"):
            if be.begin(&c[threadid()], kernel, be.FLOAT64, work) > 1:
                many += 1
            be.end(&c[threadid()])
    free(c)
    return many


def triple(const double[::1] x, double[::1] out):
    """out = 3 x: one body, its threads from breakeven."""
    cdef be.Call call
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt
    with nogil:
        nt = be.begin(&call, TRIPLE, be.FLOAT64, n)
        for i in prange(n, num_threads=nt, use_threads_if=nt > 1,
                        schedule="static"):
            out[i] = 3.0 * x[i]
        be.end(&call)
    return nt


def _sample(work, dtype, rng):
    x = rng.standard_normal(int(work)).astype(dtype)
    return x, np.empty_like(x)


cdef int TRIPLE = breakeven.register(
    "coretest.triple", triple, work=lambda x, out: x.shape[0], sample=_sample,
    dtypes=("float64",)).slot
'''


@pytest.fixture(scope="module")
def coretest(tmp_path_factory):
    d = tmp_path_factory.mktemp("coretest")
    build_extension(d, "coretest", HAMMER_PYX)
    return d


@pytest.fixture
def coretest_module(coretest, monkeypatch):
    monkeypatch.syspath_prepend(str(coretest))
    import coretest as mod

    return mod


@pytest.mark.skipif(CPUS < 2, reason="Requires at least 2 CPUs")
def test_hammer_from_a_prange_of_its_own(coretest_module):
    """Calls from inside an OpenMP region (each of its threads calling
    begin/end): serial (no nesting), every one counted, the cores that
    parallel-sized ones hold all given back."""
    testing.reset(ladder_profile(CPUS))
    testing.idle(-3600)
    be.stats(reset=True)
    slot = be.get_kernel("sum").slot
    calls = 50_000
    for work in (10, 10**9):  # below the threshold; parallel-sized (held)
        assert coretest_module.hammer(slot, work, calls, 4) == 0
    st = be.stats()["sum", "float64"]
    assert (st.serial, st.parallel) == (2 * calls, 0)
    assert testing.budget()[:3] == (CPUS, CPUS, 0)


@pytest.mark.openmp
@pytest.mark.skipif(CPUS < 2, reason="Requires at least 2 CPUs")
def test_a_one_body_kernel_is_dispatched_and_calibrated(coretest_module):
    mod = coretest_module
    x = np.random.default_rng(1).standard_normal(200_000)
    out = np.empty_like(x)
    testing.reset(ladder_profile(CPUS))
    testing.idle(-3600)
    be.stats(reset=True)
    assert mod.triple(x, out) == CPUS  # the ladder's table, in its own loop
    np.testing.assert_array_equal(out, 3.0 * x)
    with be.threads(1):
        assert mod.triple(x, out) == 1
    with be.threads(2, exact=True):
        assert mod.triple(x[:10], out[:10]) == 2  # forced, below the threshold
    st = be.stats()["coretest.triple", "float64"]
    assert (st.serial, st.parallel) == (1, 2)
    d = be.explain(mod.triple, x, out)
    assert d.kernel == "coretest.triple" and d.work == x.size
    # calibration times the one body at each forced count
    prof = be.calibrate(["coretest.triple"], budget=2, quick=True, progress=False,
                        dtypes=("float64",))
    pts = prof.sweeps[("coretest.triple", "float64")]
    # serial at every size, and every count where it can win (calibration
    # leaves out counts whose last time was over twice serial's)
    assert pts and all(1 in p.times for p in pts)
    assert all(CPUS in p.times for p in pts[:1])


# ---------------------------------------------------------------------------
# explain() says what the call does
# ---------------------------------------------------------------------------


def _delta(before, after, key):
    b = before.get(key)
    a = after[key]
    return (a.serial - (b.serial if b else 0), a.parallel - (b.parallel if b else 0),
            a.mean_threads * a.parallel - (b.mean_threads * b.parallel if b else 0))


@pytest.mark.parametrize("state", ["hot", "lone", "capped", "section"])
def test_explain_before_each_call_is_what_the_call_did(state, rng):
    """For calls of many sizes, of several kernels: the variant and threads
    explain() gives just before a call are what the counters show it did."""
    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "explain profile")
    for k in be.KERNELS:
        for d in ("float64", "float32"):
            p.set_table(k, d, ((0, 1), (3000, 2), (300_000, max(2, CPUS))),
                        ((0, 1), (100_000, max(2, CPUS))))
    testing.reset(p)
    be.stats(reset=True)
    ctl = {"hot": None, "lone": None, "capped": ("threads", 1),
           "section": ("section", None)}[state]
    from helpers import thread_control

    checked = 0
    with thread_control(ctl):
        for lg in range(4, 21):
            n = (1 << lg) + lg
            x = rng.standard_normal(n)
            out = np.empty_like(x)
            for name, f, args in (("sum", be.sum, (x,)), ("exp", be.exp, (x, out)),
                                  ("cumsum", be.cumsum, (x,)),
                                  ("dot", be.dot, (x, x))):
                testing.idle(1e9 if state == "lone" else -3600)
                d = be.explain(f, *args)
                before = dict(be.stats())
                f(*args)
                serial, parallel, threads = _delta(before, be.stats(),
                                                   (name, "float64"))
                if d.variant == "parallel":
                    assert (serial, parallel) == (0, 1), (name, n, d)
                    assert round(threads) == d.threads, (name, n, d)
                else:
                    assert (serial, parallel) == (1, 0), (name, n, d)
                checked += 1
    assert checked == 17 * 4


def test_one_usable_cpu_count_for_the_whole_package():
    """The kernels clamp a direct call's n_threads to the dispatch core's
    count of usable CPUs, so a simulated host changes both at once."""
    from breakeven._core import openmp

    assert openmp.usable_cpus() == be.usable_cpus()
    with testing.simulated_cpus(be.usable_cpus() + 3):
        assert openmp.usable_cpus() == be.usable_cpus() + 3
    assert openmp.usable_cpus() == be.usable_cpus()
