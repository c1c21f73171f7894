"""The online check: every decision, whatever its source, is measured by the
calls it decides and corrected where the other choice runs confidently
faster; lone calls are judged against the wake-ups the team's calls
measured.  All in simulated time, through breakeven.grant (the begin/end a
kernel's Cython code calls) and the test hooks."""

import numpy as np
import pytest

import breakeven as be
from breakeven import testing
from breakeven._profile import Profile, host_fingerprint

N = 4  # simulated CPUs
NAME = "oc.kernel"


def sample(work, dtype, rng):
    return (np.ones(int(work), dtype),)


@pytest.fixture
def kernel():
    k = be.register(NAME, lambda x: x, work=0, sample=sample, dtypes=("float64",))
    yield k
    be.KERNELS.pop(NAME, None)


def profile(hot, cold=((0, 1),), **host):
    """A profile calibrated for the kernel with these tables, a team start
    of 2 us."""
    p = Profile(host_fingerprint(), {}, "now", None, "test profile")
    p.set_table(NAME, "float64", hot, cold)
    p.team_hot = {N: 2e-6}
    for name, value in host.items():
        setattr(p, name, value)
    return p


class Host:
    """The simulated host's truth: serial ns per unit of work; parallel ns
    per unit plus a fixed cost; a lone parallel call's wake-up; noise."""

    def __init__(self, clock, serial=1.0, parallel=0.3, fixed_us=0.0, wake_ms=0.0,
                 noise=0.0, seed=0):
        self.clock, self.serial, self.parallel = clock, serial, parallel
        self.fixed, self.wake, self.noise = fixed_us * 1e-6, wake_ms * 1e-3, noise
        self.rng = np.random.default_rng(seed)

    def call(self, work, lone=False):
        """One call of the kernel, as long as its choice takes here."""
        with be.grant(NAME, work) as g:
            if g.threads == 1:
                s = self.serial * work * 1e-9
            else:
                s = self.parallel * work * 1e-9 + self.fixed
                s += self.wake if lone else 0.0
            if self.noise:
                s *= self.rng.lognormal(0.0, self.noise)
            self.clock.advance(s)
        return g.threads


@pytest.fixture
def clock():
    with testing.simulated_cpus(N), testing.simulated_clock() as c:
        yield c
    testing.reset()


def hot_loop(clock, p):
    testing.reset(p)
    testing.idle(-3600)  # calls in a loop: the team awake


def test_a_hot_table_that_goes_parallel_too_soon_is_corrected(kernel, clock):
    """The table says parallel from 1,000; here parallel costs 20 us more
    than the model, so serial is faster up to about 2^14.5."""
    hot_loop(clock, profile(((0, 1), (1000, N))))
    host = Host(clock, fixed_us=20.0)
    for _ in range(40):  # small calls: their serial rate, timed
        host.call(500)
    work = 1 << 13  # serial 8 us, parallel 22.5 us
    assert be.decide(NAME, work).threads == N
    got = [host.call(work) for _ in range(300)]
    assert got[-100:] == [1] * 100  # corrected: serial, from then on
    ev = testing.evidence(NAME, work)
    assert ev.settled == "serial" and ev.serial_calls >= testing.EVIDENCE_MIN
    d = be.decide(NAME, work)
    assert d.variant == "serial" and d.source == "calibrated", d
    assert "corrected to serial by this process's calls" in d.reason, d.reason
    # a size where the table is right keeps its choice
    big = 1 << 18  # serial 262 us, parallel 99 us
    assert [host.call(big) for _ in range(200)][-50:].count(N) >= 49
    assert testing.evidence(NAME, big).settled in ("", "parallel")


def test_a_hot_table_that_goes_parallel_too_late_is_corrected(kernel, clock):
    """The table says serial up to 2^20; here parallel wins from a few
    thousand: sizes near the threshold are checked, and a size settled
    parallel extends the check to smaller sizes."""
    hot_loop(clock, profile(((0, 1), (1 << 20, N))))
    host = Host(clock)
    near = 3 << 18  # within CHECK_BELOW of the threshold
    got = [host.call(near) for _ in range(300)]
    assert got[-100:] == [N] * 100
    assert testing.evidence(NAME, near).settled == "parallel"
    d = be.decide(NAME, near)
    assert d.threads == N and "corrected to parallel" in d.reason, d.reason
    lower = 3 << 16
    got = [host.call(lower) for _ in range(300)]
    assert got[-100:] == [N] * 100
    # far below, the fast path: serial and unchecked
    assert [host.call(64) for _ in range(100)] == [1] * 100
    assert testing.evidence(NAME, 64).settled == ""


def test_a_cold_table_whose_wake_up_is_too_cheap_is_corrected(kernel, clock):
    """The profile says waking the team costs 0.1 ms after 10 ms idle (its
    cold table sends 2^18 parallel); here it costs 5 ms: after a few lone
    calls, lone calls of that size go serial, and explain says why."""
    p = profile(((0, 1), (1000, N)), cold=((0, 1), (1 << 16, N)),
                sleep_after_us=10_000.0, wake=((10_000.0, N, 1e-4),))
    hot_loop(clock, p)
    host = Host(clock, wake_ms=5.0)
    work = 1 << 18  # serial 262 us; parallel 79 us hot, 5.08 ms lone
    for _ in range(20):
        host.call(work)  # in a loop: the hot time measured
    testing.idle(0)
    got = []
    for _ in range(200):
        clock.advance(0.05)
        got.append(host.call(work, lone=True))
    first = got.index(1)
    assert first <= 5, got  # a few lone calls measured the wake-up
    # and then serial, but for a rare call that measures it anew, paced so
    # that it costs at most 1 / LONE_PACE of the time
    assert got[first:].count(N) <= 1, got
    (since, seen, _, calls), = testing.wake_seen()  # one idle time: 50 ms
    assert since <= 0.05 < 2 * since and calls >= 2
    assert seen == pytest.approx(5e-3, rel=0.05)
    d = be.decide(NAME, work, idle=0.05)
    assert d.variant == "serial", d
    assert "measured waking the team" in d.reason, d.reason
    assert "the profile says 100 us" in d.reason, d.reason
    # a size whose gain pays for the measured wake-up stays parallel
    assert be.decide(NAME, 1 << 26, idle=0.05).threads == N
    # and a call in a loop, the team awake, is not touched
    assert be.decide(NAME, work, idle=0).threads == N


def test_a_call_at_another_size_measures_no_wake_up(kernel, clock):
    """Lone calls that change size each time meet the caches the last size
    left: what they pay beyond a hot call is not the team's wake-up.  Lone
    calls of one size measure it."""
    p = profile(((0, 1), (1000, N)), cold=((0, 1), (1 << 16, N)),
                sleep_after_us=10_000.0, wake=((10_000.0, N, 1e-4),))
    hot_loop(clock, p)
    host = Host(clock, wake_ms=5.0)
    sizes = (1 << 18, 1 << 19)
    for work in sizes:
        for _ in range(20):
            host.call(work)  # in a loop: the hot times measured
    testing.idle(0)
    for i in range(20):
        clock.advance(0.05)
        host.call(sizes[i % 2], lone=True)
    assert testing.wake_seen() == []
    for _ in range(testing.WAKE_EVIDENCE + 1):
        clock.advance(0.05)
        host.call(sizes[0], lone=True)
    (since, seen, _, calls), = testing.wake_seen()
    assert calls >= testing.WAKE_EVIDENCE and seen == pytest.approx(5e-3, rel=0.05)


def test_calls_that_change_size_are_not_judged_for_contention(kernel, clock):
    """In random size order a call at another size than the last meets the
    caches that size left and may run several times slower than a repeat
    at its own size: no back-off for that; the same slowness in calls of
    one size is contention, and backs off."""
    hot_loop(clock, profile(((0, 1), (1000, N))))
    sizes = [1 << 16, 1 << 17, 1 << 18, 1 << 19]
    rng = np.random.default_rng(3)
    last = None
    for _ in range(400):
        work = int(rng.choice(sizes))
        with be.grant(NAME, work) as g:
            assert g.threads == N
            clock.advance(0.3e-9 * work * (1 if work == last else 5))
        last = work
    assert be.stats()[NAME, "float64"].backoffs == 0
    # slow at one size: contention (the first call follows another size)
    for _ in range(testing.BACKOFF_AFTER + 1):
        with be.grant(NAME, sizes[0]):
            clock.advance(1.5e-9 * sizes[0])
    assert testing.backoff_state(NAME)["backed_off"]


def test_serial_is_measured_in_its_own_caches(kernel, clock):
    """Right after a parallel call of its size, a serial call finds half its
    data in another core's caches, and runs slower than in a run of serial
    calls: that call teaches nothing (a serial exploration is two calls in
    a row).  Here serial runs 1.0 ns a unit in its own caches, 2.0 right
    after parallel, parallel 1.15: serial is the better choice, and is
    learnt as such."""
    p = Profile(host_fingerprint(), {}, "now", None, "empty")
    p.team_hot = {N: 2e-6}
    hot_loop(clock, p)
    work = 1 << 16
    wide, got = False, []
    for _ in range(1500):
        with be.grant(NAME, work) as g:
            per = 1.15 if g.threads > 1 else 2.0 if wide else 1.0
            clock.advance(per * work * 1e-9)
        wide = g.threads > 1
        got.append(g.threads)
    assert testing.evidence(NAME, work).settled == "serial"
    assert got[-200:].count(1) >= 190


def test_a_lone_estimate_takes_the_measured_wake_up(kernel, clock):
    """A kernel without a table: its lone calls' model adds the wake-up the
    team's calls measured, once above the profile's."""
    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "empty")
    p.team_hot = {N: 2e-6}
    p.wake = ((10_000.0, N, 1e-4),)
    hot_loop(clock, p)
    host = Host(clock, wake_ms=5.0)
    work = 1 << 18
    for _ in range(10):
        host.call(work)
    testing.idle(0)
    assert be.decide(NAME, work, idle=0.05).threads == N  # 0.1 ms: pays
    for _ in range(testing.WAKE_EVIDENCE):
        clock.advance(0.05)
        host.call(work, lone=True)
    assert be.decide(NAME, work, idle=0.05).variant == "serial"


@pytest.mark.parametrize("gain, settled", [(1.2, "parallel"), (1.0, "serial")])
def test_noise_does_not_flip_a_settled_choice(kernel, clock, gain, settled):
    """A memory-bound kernel without a table, on a noisy host (a log-normal
    factor of 10% on every call, and one call in 50 slowed three times):
    parallel 1.2x faster than serial settles parallel and stays so; one
    that gains nothing settles serial.  (On five hosts' noise: how soon it
    settles is itself a random figure.)"""
    firsts = []
    for seed in range(5):
        p = Profile(host_fingerprint(), {}, "now", None, "empty")
        p.team_hot = {N: 2e-6}
        hot_loop(clock, p)
        host = Host(clock, serial=1.0, parallel=1.0 / gain, noise=0.1, seed=seed)
        work = 1 << 18
        rng = np.random.default_rng(100 + seed)
        states, got = [], []
        for _ in range(3000):
            if rng.random() < 0.02:
                with testing.clock_scale(3.0):
                    got.append(host.call(work))
            else:
                got.append(host.call(work))
            states.append(testing.evidence(NAME, work).settled)
        assert states[-1] == settled, seed
        firsts.append(states.index(settled))
        # never flipped once settled
        assert set(states[firsts[-1]:]) == {settled}, seed
        # exploring aside (parallel on any count: this host's parallel time
        # does not depend on it, and the estimate takes the fewest threads then)
        ran = ["parallel" if t > 1 else "serial" for t in got[-500:]]
        assert ran.count(settled) >= 480, seed
    assert sorted(firsts)[2] < 1000, firsts  # the median


def test_settled_sizes_time_a_sample_of_their_calls(kernel, clock):
    """Once a size is settled serial, its calls are timed one in
    SAMPLE_EVERY (a clock read costs as much as a small call), and small
    calls take the fast path."""
    p = Profile(host_fingerprint(), {}, "now", None, "empty")
    p.team_hot = {N: 2e-6}
    hot_loop(clock, p)
    host = Host(clock)
    for _ in range(20):
        host.call(16)
    before = be.stats()[NAME, "float64"]
    for _ in range(1600):
        assert host.call(16) == 1
    after = be.stats()[NAME, "float64"]
    timed = after.serial_timed - before.serial_timed
    assert timed <= 1600 // 16 + 3, timed  # (spread by a hash: about one in 16)
    assert after.explored == before.explored  # never worth trying parallel


def test_stats_serial_time_counts_the_calls_timed_for_a_purpose_once(kernel, clock):
    """stats()' serial time: the calls timed to measure their size (the
    large ones) count as timed, the others by a sample of them, not every
    call at the timed calls' mean (which the large ones inflate); and the
    sample is not fooled by sizes that alternate."""
    p = Profile(host_fingerprint(), {}, "now", None, "empty")
    p.team_hot = {N: 2e-6}
    hot_loop(clock, p)
    host = Host(clock, parallel=1.0, fixed_us=50.0)  # parallel never pays
    spent = 0.0
    for i in range(3200):
        # two small sizes in turn, and now and then (until measured) a large one
        work = 1 << 20 if i % 200 == 0 else 64 if i % 2 else 512
        t0 = clock.advance(0)
        if host.call(work) == 1:
            spent += clock.advance(0) - t0
    st = be.stats()[NAME, "float64"]
    assert st.serial == 3200 - st.parallel
    assert st.serial_seconds == pytest.approx(spent, rel=0.05)


def test_a_loop_after_a_costly_wake_up_wakes_the_team_once_it_pays(kernel, clock):
    """The team sleeps soon after a call (here: 0.5 ms of idle costs a
    2 ms wake-up) though the profile says it stays awake: calls 1 ms apart
    measure it, and go serial; but calls close together add up what serial
    loses them, and once that would have paid for the wake-up, one wakes
    the team and the rest run hot."""
    hot_loop(clock, profile(((0, 1), (1000, N))))
    host = Host(clock, wake_ms=2.0)
    work = 1 << 18  # serial 262 us, parallel 79 us hot: 183 us lost serially
    for _ in range(10):
        host.call(work)  # a loop: hot
    for _ in range(testing.WAKE_EVIDENCE + 2):
        clock.advance(1e-3)
        host.call(work, lone=True)
    assert be.decide(NAME, work, idle=1e-3).variant == "serial"
    clock.advance(1e-3)
    got = []
    for _ in range(40):  # a loop: back to back
        got.append(host.call(work, lone=not got or got[-1] == 1))
    woke = got.index(N)
    # serial until the losses reach the 2 ms wake-up (11 calls of 183 us)
    assert 8 <= woke <= 14, got
    assert got[woke:] == [N] * (40 - woke), got


def test_a_wake_up_is_shared_by_the_calls_runs_are_expected_to_have(kernel, clock):
    """Lone calls whose wake-up (2 ms) costs more than it saves run serially;
    then runs of 40 calls back to back: the first rents (serial until its
    losses would have paid for the wake-up), and once the runs are known to
    be long, a run's first call wakes the team at once, its wake-up shared
    by the calls it serves.  Lone calls again: serial again."""
    hot_loop(clock, profile(((0, 1), (1000, N)), cold=((0, 1), (1000, N))))
    host = Host(clock, wake_ms=2.0)
    work = 1 << 18  # 183 us lost per call serially: 11 calls pay the wake-up
    for _ in range(10):
        host.call(work)
    testing.idle(0)
    lone = []
    for _ in range(6):
        clock.advance(0.05)
        lone.append(host.call(work, lone=True))
    assert lone[-3:] == [1, 1, 1], lone
    firsts = []
    for _ in range(6):
        clock.advance(0.05)
        got = []
        for _ in range(40):
            got.append(host.call(work, lone=not got or got[-1] == 1))
        firsts.append(got.index(N))
        assert got[firsts[-1]:] == [N] * (40 - firsts[-1]), got
    assert firsts[0] >= 5 and firsts[-1] == 0, firsts
    for _ in range(30):  # runs of one call: the mean run shrinks
        clock.advance(0.05)
        host.call(work, lone=True)
    assert be.decide(NAME, work, idle=0.05).variant == "serial"
