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
    # no oversubscription once the first calls are done: serial callers
    # included, no more threads than CPUs
    assert log.most_running <= HOST.cpus + callers
    per_caller = {}
    for c, _, _, t in log.calls:
        per_caller.setdefault(c, []).append(t)
    assert len(per_caller) == callers
    # nobody starves: every caller is still calling late in the run
    late = {c for c, start, end, t in log.calls if start > 0.1}
    assert late == set(range(callers))
    b = testing.budget()
    assert (b.free, b.in_flight) == (HOST.cpus, 0)


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
    from breakeven._steps import threads_for
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
