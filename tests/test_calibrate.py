"""The calibration engine, on synthetic cost curves (no real timing), plus
one real, small calibration as a smoke test."""

import math

import numpy as np
import pytest

from breakeven import _calibrate as cal
from breakeven._calibrate import Settings, TeamCosts, passes, sweeps, thread_candidates
from breakeven._calibrate import measure as measuring
from breakeven._calibrate.budget import NEVER
from breakeven._calibrate.sweeps import Job
from breakeven._kernels.registry import KERNELS
from breakeven._profile import Fingerprint, Profile
from breakeven._profile.steps import (
    Point,
    choose_steps,
    cold_tables,
    crossing,
    threads_for,
)

FP = Fingerprint("Test CPU", 8, "libgomp", "default", "openblas test", "0.1.0")


def curve(overhead_us, per_elem_ns, speedup_cap=None):
    """Seconds per call of a kernel: serial a*w; t threads: a*w/s(t) + c*t."""
    def cost(work, t):
        serial = per_elem_ns * 1e-9 * work + 0.2e-6
        if t == 1:
            return serial
        s = t if speedup_cap is None else min(t, speedup_cap)
        return serial / s + overhead_us * 1e-6 * (1 + 0.1 * t)
    return cost


def crossover(cost, t):
    """Exact work where t threads start beating serial (by bisection)."""
    lo, hi = 1.0, 1e12
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if cost(mid, t) < cost(mid, 1):
            hi = mid
        else:
            lo = mid
    return hi


def synthetic_measure(cost, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)

    def measure(kernel, dtype, work, threads, settings):
        return Point(work, {t: cost(work, t) * (1 + noise * rng.standard_normal())
                            for t in threads})
    return measure


BATCH = {"start_s": 1e-3, "task_s": 2e-5}


def run(cost, *, usable=8, settings=None, noise=0.0, seed=0, penalty=None,
        kernels=("sum",), clock=None, **kw):
    settings = settings or Settings(margin=0.0)
    return cal.calibrate(
        kernels, progress=False, dtypes=("float64",), settings=settings,
        measure=synthetic_measure(cost, noise, seed),
        team=lambda threads: TeamCosts(penalty or {}, 20000.0), usable=usable,
        fingerprint=FP, batch=lambda usable: dict(BATCH),
        **({"clock": clock} if clock else {}), **kw)


def test_thread_candidates():
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(3) == [1, 2, 3]
    assert thread_candidates(8) == [1, 2, 4, 8]
    assert thread_candidates(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        thread_candidates(0)


@pytest.mark.parametrize("overhead_us,per_elem_ns", [(1.3, 0.1), (2.0, 1.0), (5, 0.05)])
def test_known_crossover_found_within_one_grid_step(overhead_us, per_elem_ns):
    cost = curve(overhead_us, per_elem_ns)
    p = run(cost, usable=2, settings=Settings(margin=0.0, settle=2))
    found = p.threshold("sum", "float64")
    true = crossover(cost, 2)
    # the step sits where the gain interpolated between the sizes either
    # side of the crossover (one grid step, x2, apart) crosses 1: much
    # closer than the grid step
    assert true / 1.25 <= found <= true * 1.25, (found, true)


def test_noise_does_not_flip_the_decision():
    cost = curve(2.0, 0.5)
    true = crossover(cost, 2)
    found = [run(cost, usable=2, noise=0.02, seed=s,
                 settings=Settings(margin=0.05, settle=3)).threshold("sum", "float64")
             for s in range(10)]
    # each within a grid step of the noiseless answer, around the margin,
    # and all within 2x of each other (the stability calibration promises)
    assert all(true / 2 <= f <= 4 * true for f in found), (found, true)
    assert max(found) / min(found) <= 2.0, found
    steps = [run(cost, usable=2, noise=0.02, seed=s).steps("sum", "float64")
             for s in range(10)]
    assert all(len(st) == 2 for st in steps), steps  # one serial->parallel step


def test_a_kernel_that_never_pays_gets_no_parallel_step():
    def cost(work, t):
        return 1e-9 * work * (1 if t == 1 else 1.5)
    p = run(cost, usable=4)
    assert p.steps("sum", "float64", "hot") == ((0, 1),)
    assert p.steps("sum", "float64", "cold") == ((0, 1),)
    assert p.threshold("sum", "float64") is None


def test_a_sweep_measured_under_interference_is_measured_again():
    """A whole first sweep during which another process held a core (parallel
    pays little, late) is swept once more, and the second look's times win."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    first = len(Settings().works()) + 1  # the warm-up and every size
    calls = []

    def measure(kernel, dtype, work, threads, settings):
        calls.append(work)
        times = {t: cost(work, t) for t in threads}
        if len(calls) <= first:  # the whole first sweep: a busy core, on
            # which parallel loses, and pays barely at the largest sizes
            times[2] = times[1] * 1.3 if work < 8 * true else times[1] / 1.1
        return Point(work, times)

    p = cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                      settings=Settings(margin=0.05), measure=measure,
                      team=lambda threads: TeamCosts(), usable=2, fingerprint=FP,
                      batch=lambda usable: dict(BATCH))
    found = p.threshold("sum", "float64")
    assert len(calls) > first and found is not None and found <= 2 * true, \
        (len(calls), found, true)


@pytest.mark.parametrize("second_look", [True, False])
def test_a_sweep_slowed_throughout_is_measured_again_later(monkeypatch,
                                                            second_look):
    """Interference through a kernel's whole first sweep, and its refinement,
    that leaves parallel paying, but late (the second sweep for kernels that
    never pay is not triggered): every kernel's sizes are measured a second
    time after all first sweeps, and the faster times show the crossover.
    Without that second pass (and the looks around the step after it) the
    threshold lands far too high."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    state = {"second": False}

    def measure(kernel, dtype, work, threads, settings):
        times = {t: cost(work, t) for t in threads}
        if not state["second"]:
            times = {t: s * (1.6 if t == 2 else 1) for t, s in times.items()}
        return Point(work, times)

    original = passes.look_again

    def look_again(job, points, deadline):
        state["second"] = True
        return original(job, points, deadline) if second_look else points

    monkeypatch.setattr(passes, "look_again", look_again)
    if not second_look:  # nor the later looks around the step
        monkeypatch.setattr(passes, "polish", lambda job, points, deadline: points)
    p = cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                      settings=Settings(margin=0.05), measure=measure,
                      team=lambda threads: TeamCosts(), usable=2, fingerprint=FP,
                      batch=lambda usable: dict(BATCH))
    found = p.threshold("sum", "float64")
    assert found is not None
    if second_look:
        assert true / 2 <= found <= 2 * true, (found, true)
    else:
        assert found > 3 * true, (found, true)


def test_the_sizes_around_a_step_get_more_looks_in_the_time_left(monkeypatch):
    """The budget left after the passes goes to the sizes within 4x of each
    hot step: slowed in every earlier look, they are measured again, and
    only they."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    state = {"late": False, "late_works": set()}

    def measure(kernel, dtype, work, threads, settings):
        times = {t: cost(work, t) for t in threads}
        if state["late"]:
            state["late_works"].add(work)
        elif true / 8 <= work <= 8 * true:
            times = {t: s * (1.6 if t == 2 else 1) for t, s in times.items()}
        return Point(work, times)

    original = passes.polish

    def polish(job, points, deadline):
        state["late"] = True
        return original(job, points, deadline)

    monkeypatch.setattr(passes, "polish", polish)
    p = cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                      settings=Settings(margin=0.05), measure=measure,
                      team=lambda threads: TeamCosts(), usable=2, fingerprint=FP,
                      batch=lambda usable: dict(BATCH))
    found = p.threshold("sum", "float64")
    assert true / 2 <= found <= 2 * true, (found, true)
    assert state["late_works"] and all(true / 32 <= w <= 32 * true
                                       for w in state["late_works"])


def test_sweeps_still_busy_after_two_looks_get_a_third(monkeypatch):
    """Sizes measured busy (the probe found another process on the cores)
    in both passes: the sweep is measured a third time, after waiting for
    the cores, in the budget kept for that."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    state = {"free": False}

    class Waits:
        spent, retries = 0.0, 0

        def wait(self, seconds):
            state["free"] = True
            return True

    def measure(kernel, dtype, work, threads, settings):
        times = {t: cost(work, t) for t in threads}
        if not state["free"]:
            times = {t: s * (1.6 if t == 2 else 1) for t, s in times.items()}
        return Point(work, times, busy=not state["free"])

    monkeypatch.setattr(passes, "probe_for", lambda threads: Waits())

    def calibrate():
        return cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                             settings=Settings(margin=0.05), measure=measure,
                             team=lambda threads: TeamCosts(), usable=2,
                             fingerprint=FP, batch=lambda usable: dict(BATCH))

    p = calibrate()
    assert p.looked_thrice == ["sum float64"]
    assert true / 2 <= p.threshold("sum", "float64") <= 2 * true
    # sizes measured with the cores free: no third look
    assert calibrate().looked_thrice == []


class FakeProbe:
    """A probe that reports the cores busy for its first ``busy`` looks."""

    def __init__(self, busy):
        self.looks, self.busy_left = 0, busy
        self.spent, self.retries = 0.0, 0

    def busy(self):
        self.looks += 1
        self.busy_left -= 1
        return self.busy_left >= 0

    def wait(self, seconds):  # waited in vain: as busy as before
        return False


@pytest.mark.parametrize("busy,measured", [(0, 1), (1, 2), (2, 3), (99, 3)])
def test_a_point_measured_while_the_cores_were_busy_is_measured_again(
        monkeypatch, busy, measured):
    """Each measurement after which the probe finds the cores busy is made
    again (at most RETRIES more times) and the faster times are kept."""
    probe = FakeProbe(busy)
    monkeypatch.setattr(measuring, "probe_for", lambda threads: probe)
    monkeypatch.setattr(cal.Probe, "wait", FakeProbe.wait)
    times = iter([{1: 2.0, 2: 3.0}, {1: 1.0, 2: 4.0}, {1: 5.0, 2: 0.5}])
    calls = []

    def once(kernel, dtype, work, threads, settings):
        calls.append(work)
        return Point(work, next(times))

    monkeypatch.setattr(measuring, "measure_once", once)
    p = cal.measure_point(KERNELS["sum"], np.dtype("float64"), 4096, [1, 2],
                          Settings())
    assert len(calls) == measured and probe.retries == measured - 1
    expect = [{1: 2.0, 2: 3.0}, {1: 1.0, 2: 3.0}, {1: 1.0, 2: 0.5}][measured - 1]
    assert p.times == expect
    # once waiting has taken its share of the budget, points are measured once
    probe, calls[:] = FakeProbe(99), []
    probe.spent = cal.PROBE_SHARE * Settings().budget
    times = iter([{1: 2.0, 2: 3.0}])
    cal.measure_point(KERNELS["sum"], np.dtype("float64"), 4096, [1, 2], Settings())
    assert len(calls) == 1


def test_the_probe_tells_a_busy_core(monkeypatch):
    """Real probe on this host: its ratio is positive and finite, and a look
    slower than BUSY_RATIO times the best seen counts as busy."""
    probe = cal.Probe(2, per_thread=1 << 10)
    r = probe.ratio()
    assert 0 < probe.base <= r < math.inf
    monkeypatch.setattr(probe, "ratio", lambda: probe.base * cal.BUSY_RATIO * 1.01)
    assert probe.busy()
    monkeypatch.setattr(probe, "ratio", lambda: probe.base)
    assert not probe.busy() and probe.wait(0.0)


def test_three_thread_counts_give_a_monotone_table():
    cost = curve(2.0, 0.3)
    p = run(cost, usable=4, noise=0.05, seed=3)
    steps = p.steps("sum", "float64")
    threads = [t for _, t in steps]
    assert threads == sorted(threads) and threads[0] == 1 and threads[-1] == 4
    works = [w for w, _ in steps]
    assert works == sorted(set(works)) and works[0] == 0


def test_margin_keeps_fewer_threads_when_more_barely_help():
    # 4 threads only 2% better than 2 threads at large sizes: keep 2
    def cost(work, t):
        base = 1e-9 * work
        return {1: base, 2: base / 1.9 + 2e-6, 4: base / 1.94 + 3e-6}[t]
    p = run(cost, usable=4, settings=Settings(margin=0.05))
    assert max(t for _, t in p.steps("sum", "float64")) == 2


def test_cold_table_starts_later_by_the_wake_up_penalty():
    cost = curve(1.3, 0.2)
    p = run(cost, usable=2, penalty={2: 40e-6})
    hot, cold = p.threshold("sum", "float64", "hot"), p.threshold("sum", "float64",
                                                                  "cold")
    assert hot is not None and cold is not None and cold > 4 * hot
    true_cold = crossover(lambda w, t: cost(w, t) + (40e-6 if t > 1 else 0), 2)
    assert true_cold / 2**0.5 <= cold <= true_cold * 2**0.5


def test_sweep_stops_once_settled():
    calls = []

    def measure(kernel, dtype, work, threads, settings):
        calls.append(work)
        return Point(work, {1: 1e-9 * work, 2: 0.5e-9 * work + 1e-6})

    settings = Settings(margin=0.05, settle=3)
    pts = sweeps.sweep(Job(KERNELS["sum"], np.dtype("float64"), [1, 2], settings,
                           measure), NEVER)
    first_win = next(p.work for p in pts if p.times[2] * 1.05 < p.times[1])
    assert pts[-1].work == first_win * 4  # three wins in a row, then stop
    assert max(calls) == first_win * 4
    assert len(pts) < len(settings.works())


def test_refine_recovers_from_a_burst_of_interference():
    """Four sizes in a row measured during a burst (parallel looks no better);
    measured again around the step, they show the true crossover."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    burst = {w for w in Settings().works() if true <= w <= 16 * true}
    seen = set()

    def measure(kernel, dtype, work, threads, settings):
        times = {t: cost(work, t) for t in threads}
        if work in burst and work not in seen:  # the first look only
            seen.add(work)
            times = {t: times[1] * 1.2 for t in threads}
        return Point(work, times)

    p = run(cost, usable=2, settings=Settings(margin=0.05))
    clean = p.threshold("sum", "float64")
    p = cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                      settings=Settings(margin=0.05), measure=measure,
                      team=lambda threads: TeamCosts(), usable=2, fingerprint=FP,
                      batch=lambda usable: dict(BATCH))
    assert p.threshold("sum", "float64") <= 2 * clean


def test_a_burst_after_the_crossover_does_not_remove_the_step():
    """Parallel wins clearly, then a burst of interference makes the largest
    sizes look worse in parallel (a monotone table would then stay serial
    throughout); measured again, they show the parallel win."""
    cost = curve(1.3, 0.2)
    true = crossover(cost, 2)
    works = [w for w in Settings(settle=99).works() if w >= 8 * true]
    seen = set()

    def measure(kernel, dtype, work, threads, settings):
        times = {t: cost(work, t) for t in threads}
        if work in works and work not in seen:  # the first look only
            seen.add(work)
            times[2] = times[1] * 2.0
        return Point(work, times)

    p = cal.calibrate(["sum"], progress=False, dtypes=("float64",),
                      settings=Settings(margin=0.05, settle=99), measure=measure,
                      team=lambda threads: TeamCosts(), usable=2, fingerprint=FP,
                      batch=lambda usable: dict(BATCH))
    assert len(works) >= 3 and seen == set(works)
    found = p.threshold("sum", "float64")
    assert found is not None and found <= 2 * true, (found, true)
    assert sweeps.reversals([Point(1, {1: 1.0, 2: 2.0}), Point(2, {1: 2.0, 2: 1.0}),
                          Point(4, {1: 4.0, 2: 5.0}), Point(8, {1: 8, 2: 9})],
                         0.05) == [3, 2]


def test_team_measurement_on_a_fake_clock():
    """The penalty is the longest gap's extra cost; the sleep time, the
    shortest gap after which waking shows (20 us), even when the cost then
    jumps by orders of magnitude at longer gaps."""
    cost_of_gap = {0.05: 2e-6, 0.3: 2e-6, 1.0: 3e-6, 3.0: 4e-6, 10.0: 60e-6,
                   30.0: 6e-3, 100.0: 7e-3}
    state = {"now": 0.0, "gap": None, "start": False}

    def sleep(seconds):
        state["gap"] = seconds * 1e3

    def clock():
        if not state["start"]:  # the start of a region
            state["start"] = True
            return state["now"]
        state["start"] = False  # its end: a hot region, or one after a gap
        state["now"] += cost_of_gap.get(state["gap"], 1e-6) if state["gap"] \
            else 1e-6
        state["gap"] = None
        return state["now"]

    team = cal.measure_team([1, 2], sleep=sleep, clock=clock, trials=3)
    assert team.hot == {2: pytest.approx(1e-6)}  # back to back: the team's start
    assert team.penalty[2] == pytest.approx(7e-3 - 1e-6)
    assert team.sleep_after_us == 10_000.0
    # from the sleep time on, the penalty of every gap, for dispatch
    assert [(g, t) for g, t, _ in team.wake] == [(10_000.0, 2), (30_000.0, 2),
                                                 (100_000.0, 2)]
    assert [s for _, _, s in team.wake] == pytest.approx([59e-6, 6e-3 - 1e-6,
                                                          7e-3 - 1e-6])


def test_budget_is_respected():
    """A fake clock advances with every measurement; the run stops on time
    and every kernel still gets a table."""
    now = [0.0]

    def clock():
        return now[0]

    def measure(kernel, dtype, work, threads, settings):
        now[0] += 0.5  # every point costs half a second
        return Point(work, {1: 1e-9 * work, 2: 1e-9 * work})

    p = cal.calibrate(["sum", "exp", "dot"], budget=3.0, progress=False,
                      dtypes=("float64",), measure=measure,
                      team=lambda t: TeamCosts(), usable=2, fingerprint=FP,
                      clock=clock, settings=Settings(settle=99),
                      batch=lambda usable: dict(BATCH))
    assert now[0] <= 3.0 + 3 * 0.5 * 2  # at most two points past each deadline
    assert p.elapsed <= 6.0
    assert set(p.tables) == {"sum", "exp", "dot"}


def test_the_result_is_a_profile_with_the_run_s_report():
    """calibrate() returns a Profile of its own kind, which carries what the
    run measured; a team function may give the team's costs as the tuple
    ``(penalty, sleep_after_us[, wake[, hot]])`` too."""
    cost = curve(1.3, 0.2)
    p = run(cost, usable=2, penalty={2: 40e-6})
    assert isinstance(p, Profile) and isinstance(p, cal.Calibration)
    assert p.team_penalty == {2: 40e-6} and p.sleep_after_us == 20000.0
    assert len(p.sweeps[("sum", "float64")]) >= 2 and p.elapsed > 0
    as_tuple = cal.calibrate(
        ["sum"], progress=False, dtypes=("float64",), settings=Settings(margin=0.0),
        measure=synthetic_measure(cost), team=lambda threads: ({2: 40e-6}, 20000.0),
        usable=2, fingerprint=FP, batch=lambda usable: dict(BATCH))
    assert as_tuple.tables == p.tables


def test_one_cpu_host_is_always_serial():
    p = run(curve(1.0, 1.0), usable=1)
    assert p.steps("sum", "float64") == ((0, 1),)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown kernel"):
        cal.calibrate(["nope"], progress=False)
    with pytest.raises(ValueError, match="budget"):
        cal.calibrate(["sum"], budget=0, progress=False)


def test_choose_steps_edge_cases():
    assert choose_steps([]) == ((0, 1),)
    with pytest.raises(ValueError):
        choose_steps([Point(10, {2: 1.0})])
    # parallel already best at the smallest size: serial below it
    steps = choose_steps([Point(100, {1: 2.0, 2: 1.0}), Point(200, {1: 4.0, 2: 2.0})])
    assert steps == ((0, 1), (100, 2))
    # a step between two measured sizes sits where the gain, interpolated in
    # log-log, crosses the margin: gains 1/2.1 and 4/2.1 -> 100 * 4^0.535
    steps = choose_steps([Point(100, {1: 1.0, 2: 2.0}), Point(400, {1: 4.0, 2: 2.0})])
    assert steps == ((0, 1), (210, 2))
    # ... and at their geometric mean when the gain does not cross between
    # them (noisy points)
    rank = {1: 0, 2: 1}
    assert crossing(Point(100, {1: 1.0, 2: 0.5}), Point(400, {1: 4.0, 2: 2.0}),
                    1, 2, rank, 0.05) == 200
    assert crossing(Point(100, {1: 1.0, 2: 1.0}), Point(400, {1: 4.0, 2: 2.0}),
                    1, 2, rank, 0.0) == 200


def test_paired_point_needs_a_consistent_win():
    from breakeven._calibrate.timing import Timing

    serial = Timing((1.0, 1.0, 1.0, 1.0, 1.0))
    lucky = Timing((0.5, 1.1, 1.1, 1.05, 1.2))  # one good batch out of five
    steady = Timing((0.8, 0.82, 0.79, 0.81, 1.3))
    assert cal.paired_point(10, {1: serial, 2: lucky}).times[2] >= 1.0
    assert cal.paired_point(10, {1: serial, 2: steady}).times[2] == pytest.approx(0.81)


@pytest.mark.openmp
def test_real_quick_calibration_of_one_kernel(tmp_path):
    """Smoke test: the real measuring path, one kernel, a tight budget."""
    p = cal.calibrate(["sum"], quick=True, budget=2.0, progress=False,
                      dtypes=("float64",))
    steps = p.steps("sum", "float64")
    assert steps[0] == (0, 1)
    assert len(p.sweeps[("sum", "float64")]) >= 2
    assert p.elapsed < 10
    path = p.save(tmp_path / "profile.toml")
    assert path.exists()


def test_a_cold_table_goes_parallel_past_the_sizes_measured():
    """Times measured up to 2^20, where two threads save 0.5 ms, and a
    wake-up of 7 ms: no measured size pays for the wake-up, but a size
    twenty times larger does (times grow with work), so the cold table is
    not "never"."""
    times = [(w, 1, w * 1e-9) for w in (1 << 16, 1 << 18, 1 << 20)]
    times += [(w, 2, w * 0.5e-9 + 2e-6) for w in (1 << 16, 1 << 18, 1 << 20)]
    ((idle, cold),) = cold_tables(times, ((100_000.0, 2, 7e-3),), 10_000.0, ((0, 1),))
    assert idle == 0.1
    assert threads_for(cold, 1 << 20) == 1  # 0.5 ms saved for 7 ms of wake-up
    assert threads_for(cold, 1 << 25) == 2  # 16 ms saved
    first = next(w for w, t in cold if t > 1)
    # the step where the gain (0.5 ns a unit) covers the wake-up and the margin
    assert 7e-3 / 0.5e-9 <= first <= 4 * 7e-3 / 0.5e-9, cold
    # no gain at the largest size: no step beyond it either
    flat = [(w, t, w * 1e-9) for w, t, _ in times]
    ((_, cold),) = cold_tables(flat, ((100_000.0, 2, 7e-3),), 10_000.0, ((0, 1),))
    assert cold == ((0, 1),)

