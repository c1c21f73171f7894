"""Dispatch on a simulated 64-core host (128 CPUs), in simulated time: the
core's real rule, budget and contention check, with every call lasting what
the host's cost model says for the threads it was granted."""

import pytest

import breakeven as be
from breakeven import testing

HOST = testing.HOSTS["workstation-64"]
WORK = 1 << 24  # past every threshold: the table gives many threads


@pytest.fixture(scope="module")
def profile():
    """The host calibrated (in simulated time) for sum and exp."""
    return testing.Simulation(HOST, seed=0).calibrate(["sum", "exp"],
                                                      dtypes=("float64",))


@pytest.fixture
def host(profile):
    with testing.simulated_cpus(HOST.cpus), testing.simulated_clock() as clock:
        testing.reset(profile)
        testing.idle(-3600)
        yield clock
    testing.reset()


@pytest.mark.parametrize("callers", [8, 32])
def test_concurrent_callers_share_the_cores_fairly(host, callers):
    """8 or 32 Python threads calling at once: the threads in flight never
    exceed the CPUs, each caller gets about its share once the first calls
    (which found the cores taken by the first caller, and ran serially) are
    done, and every core comes back at the end."""
    alone = be.decide("exp", WORK).threads
    assert alone > HOST.cpus // 2
    log = testing.run_callers(HOST, "exp", WORK, callers, 0.2, host)
    assert log.peak <= HOST.cpus
    share = HOST.cpus // callers
    steady = [t for c, start, end, t in log.calls if start > 0.1]
    # a caller beginning while others are between two calls gets a share
    # of fewer callers: at most twice the fair share
    assert steady and max(steady) <= 3 * share
    assert 0.75 * share <= sum(steady) / len(steady) <= 1.25 * share
    # once the first calls are done, the threads running (a serial caller
    # counts one) stay within the CPUs, but for a few callers that found
    # every core taken and ran serially (nothing is preempted)
    late = [n for t, n in log.running if t > 0.1]
    assert max(late) <= 1.1 * HOST.cpus
    assert sum(late) / len(late) <= HOST.cpus
    per_caller = {}
    for c, _, _, t in log.calls:
        per_caller.setdefault(c, []).append(t)
    assert len(per_caller) == callers
    # nobody starves: every caller is still calling late in the run
    late = {c for c, start, end, t in log.calls if start > 0.1}
    assert late == set(range(callers))
    b = testing.budget()
    assert (b.free, b.in_flight) == (HOST.cpus, 0)


def test_back_off_when_another_pool_takes_half_the_cores_and_recovery(host):
    """Another process keeps half the CPUs busy from 20 ms to 220 ms: calls
    sharing cores with it wait out its time slices, many times slower; the
    kernel backs off to half its threads (the free half), probes now and
    then, and is back at its full count after the other pool left."""
    work = 1 << 22
    full = be.decide("exp", work).threads
    half = HOST.cpus // 2
    assert full > half

    def other(t):
        return half if 0.02 <= t < 0.22 else 0

    log = testing.run_callers(HOST, "exp", work, 1, 0.5, host, external=other)
    before = [t for _, s, e, t in log.calls if e < 0.02]
    during = [t for _, s, e, t in log.calls if 0.07 <= s < 0.22]
    after = [t for _, s, e, t in log.calls if s >= 0.3]
    assert set(before) == {full}
    assert during and sorted(during)[len(during) // 2] <= half
    assert sum(t > half for t in during) <= max(2, len(during) // 10)  # probes
    assert after and set(after) == {full}
    st = be.stats()["exp", "float64"]
    assert st.backoffs >= 1 and st.recoveries >= 1
    # backed off, the calls ran far faster than the contended ones
    slow = [e - s for _, s, e, t in log.calls if 0.02 <= s < 0.22 and t > half]
    fast = [e - s for _, s, e, t in log.calls if 0.02 <= s < 0.22 and t <= half]
    assert slow and fast and max(fast) * 5 < min(slow)


def test_a_team_partly_asleep_is_judged_with_the_cold_table(host, profile):
    """Calls on a few threads keep part of the team awake; the rest sleeps.
    A call whose hot table wants the whole team, where waking the sleepers
    does not pay (the cold table), runs on the awake part; where it pays,
    it wakes them, and its time (the wake-up in it) is not taken for
    contention."""
    steps = profile.steps("exp", "float64", "hot")
    cold = dict(profile.cold_tables("exp", "float64"))
    # a work where the hot table wants more than 8 threads but the coldest
    # table, for the longest idle time, fewer
    coldest = cold[max(cold)]
    from breakeven._profile.steps import threads_for
    works = [2 ** e for e in range(8, 27)]
    mid = next((w for w in works if threads_for(steps, w) > 8
                and threads_for(coldest, w) <= 8), None)
    assert mid is not None, (steps, coldest)
    testing.idle(10.0)  # the whole team asleep
    with be.threads(8):
        for _ in range(5):
            with be.grant("exp", 1 << 22) as g:
                host.advance(1e-4)
            assert g.threads == 8
    host.advance(1.0)  # the 8 stay awake below: keep them busy
    with be.threads(8):
        with be.grant("exp", 1 << 22):
            host.advance(1e-4)
    d = be.decide("exp", mid)
    assert d.threads == 8 and "still awake" in d.reason, d.reason
    # a work where waking the team pays even cold: it is woken, unjudged
    big = 1 << 26
    assert be.decide("exp", big).threads > 8
    with be.grant("exp", big) as g:
        host.advance(50e-3)  # 50x slower than calibrated: the wake-up in it
    assert g.threads > 8
    assert not testing.backoff_state("exp")["backed_off"]


def test_no_back_off_where_the_rate_drops_past_the_calibrated_sizes(host, profile):
    """Past the largest size the calibration measured, the data outgrows the
    caches and a call's rate per element drops several times: the first
    such call sets the yardstick of its size instead of counting as
    contended (the yardstick there was only the nearest size's)."""
    top = max(w for w, _, _ in profile.times("exp", "float64"))
    work = 4 * top
    model = testing.KERNEL_MODELS["exp"]
    full = be.decide("exp", work).threads
    per_element = [HOST.time(model, w, full) / w for w in (top, work)]
    assert per_element[1] > testing.SLOW * per_element[0]  # the cliff
    log = testing.run_callers(HOST, "exp", work, 1, 0.1, host)
    assert {t for _, _, _, t in log.calls} == {full}
    assert be.stats()["exp", "float64"].backoffs == 0


def test_processes_share_a_host_budget_within_the_cpus(host):
    """8 simulated processes calling in bursts, half of the time, through
    one host budget (the core's code, a slot each): the parallel calls'
    threads never exceed the CPUs, a process alone gets the host's best
    count, and every core comes back when the processes leave."""
    log = testing.run_processes(HOST, "exp", WORK, 8, 0.5, 0.05, host)
    best = HOST.best(testing.KERNEL_MODELS["exp"], WORK)[0]
    assert 0 < log.peak <= HOST.cpus
    assert log.calls[0][3] == best  # the first call found every core free
    assert max(t for *_, t in log.calls) <= best
    assert log.free_at_end == HOST.cpus
    static = testing.run_processes(HOST, "exp", WORK, 8, 0.5, 0.05, host,
                                   shared=False)
    assert {t for *_, t in static.calls} == {HOST.cpus // 8}
