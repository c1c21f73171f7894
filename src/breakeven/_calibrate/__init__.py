"""Calibration: find, per kernel and dtype, where parallel breaks even.

For each kernel and dtype the engine sweeps the work geometrically and, at
each size, times the serial variant and the parallel variant at every
candidate thread count (2, 4, 8, ... below the usable CPUs, and the usable
CPUs themselves), interleaved, as medians of repeated batches.  From those
points it chooses a step table ``[(work_min, threads), ...]``:

- more threads must beat fewer by a margin (5%) to be preferred;
- the table is monotone (threads never decrease as work grows): among the
  monotone tables it takes the one losing least time against the best
  candidate at each measured size, so one noisy point cannot flip a step;
- a sweep stops once the most threads have won at ``settle`` sizes in a row;
- the whole run keeps to a time budget (sweeps share it; one that runs out
  of time stops and keeps what it measured).

The hot table comes from back-to-back calls (the OpenMP team spinning).  The
cold table models a call that finds the team asleep: the measured wake-up
penalty of each thread count is added to the parallel times before the same
choice is made.  How long the team stays awake is measured too
(``sleep_after_us``), so dispatch can tell which table applies.

The measuring is done through a ``measure`` function that can be replaced,
so the choosing logic is tested on synthetic cost curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breakeven._calibrate.timing import time_interleaved
from breakeven._core import engine
from breakeven._core.engine import threads as _threads_control
from breakeven._core.openmp import NO_OPENMP, OPENMP, team_size, usable_cpus
from breakeven._cpu import Topology
from breakeven._cpu import topology as _host_topology
from breakeven._kernels import elementwise
from breakeven._kernels.registry import KERNELS, Kernel
from breakeven._profile import (
    Fingerprint,
    Profile,
    atomic_write,
    host_fingerprint,
    locked,
    now_utc,
)
from breakeven._profile.steps import (
    MARGIN,
    Point,
    choose_steps,
    cold_tables,
    crossing,
    merge,
    with_penalty,
)

__all__ = [
    "MARGIN",
    "Point",
    "Settings",
    "calibrate",
    "choose_steps",
    "crossing",
    "merge",
    "thread_candidates",
    "with_penalty",
]

# A region this much slower than back to back had to wake its threads.
WAKE_MIN = 20e-6
# The share of the budget for the first sweep of every kernel; the rest is for
# measuring each sweep's sizes a second time (:func:`second_pass`).
FIRST_PASS = 0.7
# The probe of other processes on the cores (:class:`Probe`): elements of exp
# per thread, the parallel/serial time ratio that means busy, how many times
# a point measured while busy is measured again, and how long to wait for
# the cores before each.
PROBE_WORK = 1 << 14
BUSY_RATIO = 1.4
RETRIES = 2
WAIT = 0.05
PROBE_SHARE = 0.1  # of the budget, at most
# The budget kept for a third look at sweeps with at least SUSPECT of their
# sizes still measured busy after two.
THIRD_PASS = 0.15
SUSPECT = 0.25
# Rounds of more looks at the sizes around each hot step, in what is left,
# but for this share of the budget: a last measurement that another process
# slows takes several times what it was expected to.
POLISH_ROUNDS = 3
RESERVE = 0.01


@dataclass(frozen=True)
class Settings:
    """How thoroughly to measure."""

    min_work: int = 1 << 8
    max_work: int = 1 << 24
    factor: int = 2  # geometric step of the sweep
    repeats: int = 7  # batches per candidate and size
    min_batch_time: float = 0.002  # seconds
    settle: int = 3  # sizes the most threads must win in a row to stop
    budget: float = 60.0  # seconds, the whole run
    margin: float = MARGIN

    @classmethod
    def quick(cls) -> Settings:
        return cls(max_work=1 << 22, factor=2, repeats=5, min_batch_time=0.001,
                   settle=2, budget=9.0)  # 10 s with start-up and saving

    # On a host of many CPUs, the sizes where the last thread counts pay (and
    # the data outgrows all their caches) lie further up: the sweep goes on
    # to this many elements per usable CPU, up to ``most_work``.
    work_per_cpu: int = 1 << 18
    most_work: int = 1 << 26

    def works(self, usable: int = 1) -> list[int]:
        """The sizes a sweep measures on a host of ``usable`` CPUs."""
        top = max(self.max_work, min(self.most_work, self.work_per_cpu * usable))
        out, w = [], self.min_work
        while w <= top:
            out.append(w)
            w *= self.factor
        return out


def thread_candidates(usable: int, topology: Topology | None = None) -> list[int]:
    """The thread counts a calibration times: 1 (serial), 2, 4, 8, ... below
    ``usable``, and ``usable``; with a ``topology``, also the physical cores
    and one NUMA node's CPUs and cores (where memory-bound kernels stop
    scaling, often between two powers of two).

    Examples
    --------
    >>> from breakeven._cpu import Topology
    >>> thread_candidates(8)
    [1, 2, 4, 8]
    >>> thread_candidates(384, Topology(384, 192, 192, 96))
    [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384]
    """
    if usable < 1:
        raise ValueError(f"usable CPUs must be >= 1, got {usable}")
    out, t = {1}, 2
    while t < usable:
        out.add(t)
        t *= 2
    out.add(usable)
    if topology is not None:
        out.update(n for n in topology[1:] if 1 < n < usable)
    return sorted(out)


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------

Measure = Callable[[Kernel, np.dtype, int, Sequence[int], Settings], Point]


# A candidate faster than serial by the margin in fewer than this share of
# the batch pairs counts as no faster (paired_point).
CONSISTENCY = 0.6
# A kernel whose parallel variant never gained more than this many margins
# over serial is swept a second time: interference looks like that too.
PAYS_LITTLE = 4


def paired_point(work: int, timings: dict[int, object], margin: float = MARGIN,
                 consistency: float = CONSISTENCY) -> Point:
    """A Point from interleaved timings, judged batch pair by batch pair
    (against serial; without a serial candidate, against the fewest threads
    timed).

    Batches of different candidates that ran next to each other saw the same
    machine, so each candidate's time is taken as the serial median times
    the median of its per-batch ratios to serial.  A candidate that is not
    faster than serial by the margin in at least ``consistency`` of the
    batch pairs is counted as no faster than serial: on a noisy machine a
    lucky median must not buy a parallel step (below the size at which a
    parallel kernel actually splits its input, both variants run the same
    serial code, and only noise tells them apart).
    """
    ref = 1 if 1 in timings else min(timings)  # serial, or the fewest timed
    serial = np.asarray(timings[ref].samples)
    base = float(np.median(serial))
    times = {ref: base}
    ambiguous = False
    for t, tm in timings.items():
        if t == ref:
            continue
        ratio = np.asarray(tm.samples) / serial
        r = float(np.median(ratio))
        wins = float(np.mean(ratio * (1 + margin) < 1))
        if wins < consistency:
            r = max(r, 1.0)
            ambiguous = ambiguous or wins >= 0.2
        times[t] = base * r
    return Point(int(work), times, ambiguous)


class Probe:
    """Is another process on our cores right now?

    Times ``threads`` threads each computing ``exp`` of the same number of
    elements (compute-bound, in cache) against one thread doing one share:
    with the cores free both take about as long (plus the team's fork and
    join); while another process holds a core, the parallel region takes
    about twice as long.  Busy means a ratio ``BUSY_RATIO`` times the
    lowest seen so far, so a host whose fork and join is slow is not taken
    for a busy one.  A few tens of microseconds a look, with the team hot.
    """

    def __init__(self, threads: int, per_thread: int = PROBE_WORK):
        self.threads = threads
        self._serial, self._parallel = (elementwise.exp_serial,
                                        elementwise.exp_parallel)
        self._x = np.linspace(-1.0, 1.0, per_thread * threads)
        self._out = np.empty_like(self._x)
        self._x1, self._out1 = self._x[:per_thread], self._out[:per_thread]
        self.base = math.inf
        self.spent = 0.0  # seconds waiting and measuring again
        self.retries = 0

    def ratio(self, tries: int = 3) -> float:
        clock = time.perf_counter
        serial = parallel = math.inf
        for _ in range(tries):
            t0 = clock()
            self._serial(self._x1, self._out1)
            t1 = clock()
            self._parallel(self._x, self._out, self.threads)
            t2 = clock()
            serial, parallel = min(serial, t1 - t0), min(parallel, t2 - t1)
        r = parallel / serial
        self.base = min(self.base, r)
        return r

    def busy(self) -> bool:
        return self.ratio() > self.base * BUSY_RATIO

    def wait(self, seconds: float) -> bool:
        """Look until the cores are free, for at most ``seconds`` (spinning:
        sleeping would let the team and the vCPUs go idle, which costs
        milliseconds to undo).  True if they are free."""
        end = time.perf_counter() + seconds
        while self.busy():
            if time.perf_counter() >= end:
                return False
        return True


_probes: dict[int, Probe] = {}


def _probe(threads: int) -> Probe | None:
    if threads < 2:
        return None
    if threads not in _probes:
        _probes[threads] = Probe(threads)
    return _probes[threads]


def measure_point(kernel: Kernel, dtype: np.dtype, work: int,
                  threads: Sequence[int], settings: Settings) -> Point:
    """Time the serial variant and the parallel variant at each thread count
    on one input of about ``work``, interleaved, back to back (hot team).

    Every candidate is the kernel's public call (``kernel.call``) inside
    ``threads(t, exact=True)``, so dispatch's own per-call cost is inside
    the numbers, and one function body serves every thread count.

    A :class:`Probe` looks at the cores before and after: a measurement
    during which another process held one is made again (up to
    ``RETRIES`` times, each after waiting up to ``WAIT`` seconds for the
    cores to be free) and the faster times of each candidate are kept
    (interference only ever adds time)."""
    clock = time.perf_counter
    probe = _probe(max(threads))
    # waiting and measuring again take at most a share of the budget: on a
    # host busy throughout, the points are then measured once, as they are
    looks = probe is not None and probe.spent < PROBE_SHARE * settings.budget
    if looks:
        t0 = clock()
        probe.wait(WAIT)
        probe.spent += clock() - t0
    point = _measure_once(kernel, dtype, work, threads, settings)
    if probe is None:
        return point
    for _ in range(RETRIES if looks else 0):
        t0 = clock()
        if not probe.busy():
            return point
        probe.wait(WAIT)
        point = merge(point, _measure_once(kernel, dtype, work, threads, settings))
        probe.retries += 1
        probe.spent += clock() - t0
    # still busy after the last look: the calibration may look again later
    return dataclasses.replace(point, busy=probe.busy())


def _measure_once(kernel: Kernel, dtype: np.dtype, work: int,
                  threads: Sequence[int], settings: Settings) -> Point:
    args = kernel.sample(work, dtype, np.random.default_rng(work))
    actual = int(kernel.work(*args))
    call = kernel.call

    def run():
        return call(*args)

    # The public call, as users make it (its dispatch is in the times), at
    # each thread count forced the public way, batch by batch.
    timings = time_interleaved(
        {str(t): run for t in threads}, repeats=settings.repeats,
        min_batch_time=settings.min_batch_time,
        around={str(t): (lambda t=t: _threads_control(t, exact=True))
                for t in threads})
    return paired_point(actual, {int(k): v for k, v in timings.items()},
                        settings.margin)


# measure_team: idle gaps (ms) after which a region is timed, trials of each,
# and regions back to back before (warm-up) and for the hot time.
TEAM_GAPS_MS = (0.05, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TEAM_TRIALS = 5
TEAM_WARMUP, TEAM_HOT = 50, 200
# at most this many thread counts have their wake-up measured
TEAM_COUNTS = 4


def measure_team(threads: Sequence[int], *,
                 gaps_ms=TEAM_GAPS_MS,
                 trials: int = TEAM_TRIALS, sleep=time.sleep,
                 clock=time.perf_counter) -> tuple[dict[int, float], float | None,
                                                    tuple]:
    """The wake-up penalty of each thread count, and how long the team stays
    awake.

    Opens an empty parallel region back to back (hot) and after idle gaps
    (cold).  Returns ``(penalty, sleep_after_us, wake, hot)``: ``hot[t]`` is
    the median seconds of a region of ``t`` threads back to back;
    ``penalty[t]`` is the
    median extra seconds a region of ``t`` threads costs after the longest
    gap; ``sleep_after_us`` the shortest gap after which the region costs
    ``WAKE_MIN`` more than back to back: the threads had to be woken (None
    if they never had to).  The cost of waking can jump from tens of
    microseconds to milliseconds with the idle time (an idle virtual CPU
    descheduled by its host), so ``wake`` keeps ``(gap_us, threads,
    extra_seconds)`` for every gap from the sleep time on, and dispatch
    judges a lone call with the penalty of the longest gap not longer than
    its idle time.
    """
    def region(t):
        t0 = clock()
        team_size(t)
        return clock() - t0

    penalty: dict[int, float] = {}
    hots: dict[int, float] = {}
    sleep_after = None
    per_gap: list[tuple[float, int, float]] = []
    for t in threads:
        if t == 1:
            continue
        for _ in range(TEAM_WARMUP):
            region(t)
        hot = hots[t] = float(np.median([region(t) for _ in range(TEAM_HOT)]))
        costs = []
        for gap in gaps_ms:
            samples = []
            for _ in range(trials):
                region(t)
                sleep(gap / 1e3)
                samples.append(region(t))
            costs.append(float(np.median(samples)))
        cold = costs[-1]
        penalty[t] = max(0.0, cold - hot)
        per_gap += [(gap * 1e3, t, max(0.0, c - hot))
                    for gap, c in zip(gaps_ms, costs, strict=True)]
        if t == max(threads) and cold - hot > 2e-6:
            for gap, c in zip(gaps_ms, costs, strict=True):
                if c > hot + WAKE_MIN:
                    sleep_after = gap * 1e3
                    break
    wake = tuple(r for r in per_gap if sleep_after is not None
                 and r[0] >= sleep_after)
    return penalty, sleep_after, wake, hots


def team_counts(threads: Sequence[int], most: int = TEAM_COUNTS) -> list[int]:
    """The thread counts whose wake-up is measured: all of them on a small
    host; on a large one (every count takes most of a second, for its idle
    gaps) the smallest and the largest parallel counts and a few between,
    spread evenly in log scale, the rest interpolated
    (:func:`team_interpolated`).

    >>> team_counts([1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384])
    [2, 16, 96, 384]
    """
    par = sorted(t for t in threads if t > 1)
    if len(par) <= most:
        return par
    idx = {round(i * (len(par) - 1) / (most - 1)) for i in range(most)}
    return [par[i] for i in sorted(idx)]


def _between(x: int, known: dict[int, float]) -> float:
    """Linear interpolation in the thread count (flat beyond the ends)."""
    ks = sorted(known)
    if x <= ks[0]:
        return known[ks[0]]
    for lo, hi in zip(ks, ks[1:], strict=False):
        if x <= hi:
            return known[lo] + (known[hi] - known[lo]) * (x - lo) / (hi - lo)
    return known[ks[-1]]


def team_interpolated(threads: Sequence[int], measured: tuple) -> tuple:
    """``measured`` (what :func:`measure_team` returns for
    :func:`team_counts`) completed for every parallel count of ``threads``:
    the wake-up penalty, each gap's wake-up and the hot region time of a
    count not measured are interpolated linearly between the counts either
    side (both grow about linearly with the threads to wake or join)."""
    measured = tuple(measured)
    penalty = dict(measured[0])
    par = [t for t in threads if t > 1]
    if not penalty or all(t in penalty for t in par):
        return measured
    out = list(measured)
    out[0] = {t: penalty[t] if t in penalty else _between(t, penalty) for t in par}
    if len(measured) > 2:
        rows = []
        for gap in sorted({g for g, _, _ in measured[2]}):
            at = {t: s for g, t, s in measured[2] if g == gap}
            rows += [(gap, t, at[t] if t in at else _between(t, at)) for t in par]
        out[2] = tuple(rows)
    if len(measured) > 3 and measured[3]:
        hot = dict(measured[3])
        out[3] = {t: hot[t] if t in hot else _between(t, hot) for t in par}
    return tuple(out)


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


@dataclass
class Progress:
    """A one-line progress bar on stderr (a line per step when not a TTY)."""

    total: int
    enabled: bool = True
    stream: object = field(default_factory=lambda: sys.stderr)
    done: int = 0

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {label}"
        if getattr(self.stream, "isatty", lambda: False)():
            end = "\n" if self.done >= self.total else ""
            self.stream.write("\r" + text.ljust(70) + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# Serial this many times slower than the best is no longer timed.
SERIAL_BEHIND = 8.0


def _serial_behind(p: Point) -> bool:
    return p.times[1] > SERIAL_BEHIND * min(p.times.values())


def _retime(p: Point) -> list[int]:
    """The candidates to time again at ``p``'s size: those timed there."""
    return sorted(t for t in p.times if t > 1 or not _serial_behind(p))


def worth_timing(threads: Sequence[int], hot: dict[int, float] | None,
                 points: Sequence[Point], work: int) -> list[int]:
    """The candidates worth timing at ``work``, after ``points`` (the sizes
    measured so far, in increasing order).

    A call never gets faster with more work, so a count whose last time
    (or, not yet timed, an empty region of it: ``hot``) exceeds twice the
    serial time expected here (the last serial time, scaled with the work)
    cannot win yet; and a count slower than four times the best at the last
    size it was timed, where more threads won, only falls further behind.
    And the best count moves little from one size to the next (about with
    the square root of the work, where the team's fork and join is what
    parallel pays), so only the counts from one below to two above the
    last size's best are timed, and the most threads (whose wins settle a
    sweep).  Serial, once slower than ``SERIAL_BEHIND`` times the best, is
    not timed again (:func:`sweep` scales its last time with the work).
    On a many-core host this leaves most counts out at every size.
    """
    if not points:
        return list(threads)
    last = points[-1]
    order = sorted(threads)
    at = order.index(min(last.times, key=lambda c: (last.times[c], c)))
    near = set(order[max(0, at - 1):at + 3]) | {1, order[-1]}
    if _serial_behind(last):
        # a count fewer than the fewest timed there takes its place
        near.add(order[max(0, at - 1)])
    serial = last.times[1] * work / last.work
    latest: dict[int, Point] = {}
    for p in points:
        for t in p.times:
            latest[t] = p
    keep = []
    for t in threads:
        if t not in near or (t == 1 and _serial_behind(last)):
            continue
        p = latest.get(t)
        if t > 1 and p is None and hot and hot.get(t, 0.0) >= 2 * serial:
            continue
        if t > 1 and p is not None:
            fastest = min(p.times, key=lambda c: (p.times[c], c))
            if p.times[t] >= 2 * serial or (
                    t < fastest and p.times[t] > 4 * p.times[fastest]):
                continue
        keep.append(t)
    return keep


def sweep(kernel: Kernel, dtype: np.dtype, threads: Sequence[int],
          settings: Settings, measure: Measure, deadline: float,
          clock: Callable[[], float] = time.perf_counter,
          penalty: dict[int, float] | None = None,
          hot: dict[int, float] | None = None, end: float = math.inf) -> list[Point]:
    """Measure sizes in increasing order until settled, the largest size,
    or the deadline (at least two points are always measured).  Each size
    times the candidates :func:`worth_timing` keeps, judged by the serial
    time of the size before (``hot``: an empty region's time per count).

    Settled means: the most threads beat serial by the margin at
    ``settings.settle`` sizes in a row, even with the wake-up ``penalty``
    of a cold team added, so that both the hot and the cold table are
    decided by the points measured.
    """
    points: list[Point] = []
    most = max(threads)
    extra = (penalty or {}).get(most, 0.0)
    streak = 0
    works = settings.works(max(threads))
    # Warm-up: the first calls of a kernel pay for first touches (pages,
    # BLAS buffers, the team's creation); they must not count.
    measure(kernel, dtype, works[0], threads, settings)
    for work in works:
        if len(points) >= 2 and clock() >= deadline:
            break
        if len(points) >= 2 and clock() + 2 * _cost(points[-1], settings) >= end:
            break  # the next size (twice the work) would overrun the run
        cands = worth_timing(threads, hot, points, work)
        p = measure(kernel, dtype, work, cands, settings)
        if points and p.work <= points[-1].work:
            continue  # the kernel's inputs cannot be that small: same work
        for _ in range(2):  # a noise burst: look again before deciding
            if not p.ambiguous or clock() >= deadline:
                break
            p = measure(kernel, dtype, work, cands, settings)
        if 1 not in p.times:  # serial far behind: its time scales with work
            last = points[-1]
            p = dataclasses.replace(
                p, times={1: last.times[1] * p.work / last.work, **p.times})
        points.append(p)
        if most > 1:
            streak = streak + 1 if _clear_win(p, most, settings.margin, extra) \
                else 0
            if streak >= settings.settle:
                break
    return refine(kernel, dtype, threads, settings, measure, points, penalty,
                  end, clock)


def _clear_win(p: Point, most: int, margin: float, extra: float = 0.0) -> bool:
    """The most threads are the fastest at ``p`` and beat serial by the
    margin, with ``extra`` seconds (a wake-up penalty) added to their time."""
    best = min(p.times, key=lambda t: (p.times[t], t))
    return best == most and (p.times[most] + extra) * (1 + margin) < p.times[1]


def _cost(p: Point, settings: Settings) -> float:
    """About what measuring ``p``'s size again takes (a batch is as many
    whole calls as reach ``min_batch_time``; 10% more for the rest)."""
    return 1.1 * settings.repeats * sum(
        math.ceil(settings.min_batch_time / p.times[t]) * p.times[t]
        if p.times[t] > 0 else settings.min_batch_time for t in _retime(p))


def _fits(p: Point, settings: Settings, clock: Callable[[], float],
          deadline: float) -> bool:
    """Measuring ``p``'s size again ends before ``deadline``, even if it is
    measured again for interference (``RETRIES`` times)."""
    return clock() + (1 + RETRIES) * _cost(p, settings) < deadline


def second_pass(kernel: Kernel, dtype: np.dtype, threads: Sequence[int],
                settings: Settings, measure: Measure, points: list[Point],
                deadline: float, clock: Callable[[], float] = time.perf_counter,
                penalty: dict[int, float] | None = None,
                end: float = math.inf) -> list[Point]:
    """Measure a sweep's sizes once more, smallest first, and keep each
    size's faster times (:func:`merge`), then :func:`refine`.

    Run after every kernel's first sweep, so the two measurements of a size
    are many seconds apart: interference that lasts a whole sweep (another
    process holding a core for seconds, which makes parallel look no better
    than serial at every size) seldom hits both.  Stops once the most
    threads beat serial by the margin at ``settings.settle`` sizes in a row
    (the hot table is then decided by the sizes measured twice), at the
    deadline, or before a size whose measurement would overrun it.
    """
    if len(points) < 2 or max(threads) == 1 or clock() >= deadline:
        return points
    out = list(points)
    most, streak = max(threads), 0
    measure(kernel, dtype, out[0].work, _retime(out[0]), settings)  # warm-up
    for i, p in enumerate(out):
        if not _fits(p, settings, clock, deadline):
            break
        out[i] = q = merge(p, measure(kernel, dtype, p.work, _retime(p), settings))
        streak = streak + 1 if _clear_win(q, most, settings.margin) else 0
        if streak >= settings.settle:
            break
    return refine(kernel, dtype, threads, settings, measure, out, penalty, end,
                  clock)


def polish(kernel: Kernel, dtype: np.dtype, threads: Sequence[int],
           settings: Settings, measure: Measure, points: list[Point],
           deadline: float, clock: Callable[[], float] = time.perf_counter
           ) -> list[Point]:
    """Measure the sizes within a factor of 4 of each hot step once more and
    keep each candidate's faster time; stops before a size whose
    measurement would overrun the deadline."""
    steps = choose_steps(points, settings.margin)[1:]
    if not steps or max(threads) == 1:
        return points
    out = list(points)
    for i, p in enumerate(out):
        if not any(w / 4 <= p.work <= w * 4 for w, _ in steps):
            continue
        if not _fits(p, settings, clock, deadline):
            break
        out[i] = merge(p, measure(kernel, dtype, p.work, _retime(p), settings))
    return out


def _busy_share(points: Sequence[Point]) -> float:
    return sum(p.busy for p in points) / max(1, len(points))


def best_gain(points: Sequence[Point]) -> float:
    """The largest speed-up over serial any thread count reached."""
    return max((p.times[1] / s for p in points for t, s in p.times.items()
                if t > 1 and s > 0 and p.times.get(1)), default=1.0)


def reversals(points: Sequence[Point], margin: float) -> list[int]:
    """Sizes where fewer threads win than at a smaller size, where more won
    by the margin: a monotone table cannot follow them, and they are most
    often a burst of interference (which only ever adds time), so they are
    measured again.  Indices, the largest first."""
    out, most = [], 1
    for i, p in enumerate(points):
        best = min(p.times, key=lambda t: (p.times[t], t))
        if best < most:
            out.append(i)
        serial = p.times.get(1, math.inf)
        for t, s in p.times.items():
            if t > most and s * (1 + margin) < serial:
                most = t
    return out[::-1]


def refine(kernel: Kernel, dtype: np.dtype, threads: Sequence[int],
           settings: Settings, measure: Measure, points: list[Point],
           penalty: dict[int, float] | None = None, end: float = math.inf,
           clock: Callable[[], float] = time.perf_counter) -> list[Point]:
    """Measure the sizes on both sides of each chosen step once more, and
    the sizes where fewer threads won than at a smaller size
    (:func:`reversals`), and merge: a burst of interference during the
    sweep (another process on the cores) can make several sizes in a row
    look serial, and would otherwise push a threshold far up, or remove it.
    Costs a few points per sweep; none that would end after ``end``."""
    if len(points) < 2 or max(threads) == 1:
        return points
    out = list(points)
    done: set[int] = set()
    for _ in range(4):  # a step that moves is looked at again, where it went
        again: set[int] = set()
        for pts in (out, with_penalty(out, penalty or {})):
            for work_min, _t in choose_steps(pts, settings.margin)[1:]:
                i = next(i for i, p in enumerate(out) if p.work >= work_min)
                again.update(range(max(0, i - 2), min(len(out), i + 1)))
        again.update(reversals(out, settings.margin)[:6])
        again -= done
        if not again:
            break
        for i in sorted(again):
            if not _fits(out[i], settings, clock, end):  # the run's budget
                return out
            out[i] = merge(out[i], measure(kernel, dtype, out[i].work,
                                           _retime(out[i]), settings))
        done |= again
    return out


def calibrate(kernels: Iterable[str] | None = None, budget: float | None = None,
              quick: bool = False, progress: bool = True, *,
              dtypes: Iterable[str] = ("float64", "float32"),
              settings: Settings | None = None, measure: Measure | None = None,
              team: Callable[[Sequence[int]], tuple] | None = None,
              usable: int | None = None,
              fingerprint: Fingerprint | None = None,
              clock: Callable[[], float] = time.perf_counter,
              batch: Callable[[int], dict[str, float]] | None = None,
              topology: Topology | None = None) -> Profile:
    """Calibrate kernels on this host and return the profile (not saved).

    Parameters
    ----------
    kernels : iterable of str, optional
        Registered kernel names; default all.
    budget : float, optional
        Seconds for the whole run (default 60, or 9 with ``quick``).
    quick : bool
        A coarser, shorter calibration.
    progress : bool
        Show a progress bar on stderr.
    dtypes : iterable of str
        Which dtypes to calibrate.
    settings, measure, team, usable, fingerprint, clock, batch, topology
        Overrides, chiefly for tests and simulated hosts: the sweep
        settings, the function that times one size, the function that
        measures the team's wake-up penalty, the usable CPU count, the host
        fingerprint, the clock, the function that measures joblib's
        overhead (:func:`measure_batch`) and the cores and NUMA nodes
        (:func:`thread_candidates`; with ``usable`` given and no topology,
        powers of two only).

    Returns
    -------
    Profile
        With hot and cold step tables for each kernel and dtype, and the raw
        measured points in ``profile.sweeps``.

    Raises
    ------
    ValueError
        For an unknown kernel name or a budget that is not positive.
    RuntimeError
        In a build without OpenMP (``breakeven info`` says which build this
        is): every kernel runs serially, so there is nothing to measure
        (a ``measure`` of your own still runs).

    See Also
    --------
    Profile.save : Write the result into the profile file.
    load_profile : Read it back.

    Notes
    -----
    ``breakeven calibrate`` on the command line does the same and saves the
    result, with the raw sweeps beside it for ``breakeven plot``.  Saving a
    run of some kernels replaces their tables in this host's entry and keeps
    the others' (and other hosts'), so kernels can be calibrated a few at a
    time.  The profile in use by dispatch is loaded once per process.

    Examples
    --------
    A tiny run of one kernel and dtype (a full run takes tens of seconds):

    >>> import breakeven
    >>> p = breakeven.calibrate(["exp"], budget=0.5, quick=True,
    ...                         progress=False, dtypes=["float64"])
    >>> p.steps("exp", "float64", "hot")[0]
    (0, 1)
    >>> sorted(p.tables)
    ['exp']
    """
    settings = settings or (Settings.quick() if quick else Settings())
    if budget is not None:
        if not budget > 0:
            raise ValueError(f"budget must be positive, got {budget}")
        settings = Settings(**{**settings.__dict__, "budget": float(budget)})
    names = list(KERNELS) if kernels is None else list(kernels)
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise ValueError(f"unknown kernel(s) {', '.join(unknown)}; known: "
                         f"{', '.join(KERNELS)}")
    uncallable = [n for n in names if KERNELS[n].call is None]
    if uncallable and kernels is not None:
        raise ValueError(f"kernel(s) {', '.join(uncallable)} cannot be timed: "
                         "register them with the function that runs them "
                         "(breakeven.register(name, call, ...))")
    names = [n for n in names if KERNELS[n].call is not None]
    dtypes = [np.dtype(d) for d in dtypes]
    if measure is None and not OPENMP:
        raise RuntimeError(f"{NO_OPENMP}, so there is nothing to calibrate")
    if topology is None and usable is None:
        topology = _host_topology()
    usable = usable or (topology.cpus if topology else usable_cpus())
    threads = thread_candidates(usable, topology)
    measure = measure or measure_point
    team = team or measure_team
    start = clock()
    end = start + settings.budget
    jobs = [(n, d) for n in names for d in dtypes if d in KERNELS[n].dtypes]
    bar = Progress(2 * len(jobs) + 2, enabled=progress)

    engine.note_omp_started()  # the team runs from here on (fork)
    _probes.clear()  # a new run: what is busy is learnt again
    measured = (team_interpolated(threads, team(team_counts(threads)))
                if usable > 1 else ({}, None))
    penalty, sleep_after = measured[:2]
    bar.step("OpenMP team wake-up")
    profile = Profile(fingerprint or host_fingerprint(), {}, now_utc(), sleep_after)
    if len(measured) > 2:
        profile.wake = tuple(measured[2])
    if len(measured) > 3:
        profile.team_hot = dict(measured[3])
    if usable > 1:
        profile.batch = (batch or measure_batch)(usable)
    bar.step("joblib overhead")
    swept = []
    first_budget = settings.budget * FIRST_PASS
    for i, (name, dtype) in enumerate(jobs):
        # Each remaining sweep gets an equal share of the first pass's time,
        # and at least half an even share (one slow sweep must not starve
        # the rest), within the whole budget.
        remaining = first_budget - (clock() - start)
        share = max(remaining / (len(jobs) - i), first_budget / len(jobs) / 2)
        deadline = min(clock() + share, start + settings.budget)
        pts = sweep(KERNELS[name], dtype, threads, settings, measure, deadline,
                    clock, penalty, profile.team_hot, end)
        if usable > 1 and best_gain(pts) < 1 + PAYS_LITTLE * settings.margin \
                and clock() < deadline:
            # Parallel paid little or never: true of some kernels, but also
            # what a sweep measured while another process held a core looks
            # like.  Sweep once more, in what is left of this kernel's share,
            # and keep each size's faster times (interference only ever adds
            # time); the second sweep's sizes are the ones kept (it stops
            # where it settles).
            first = {p.work: p for p in pts}
            pts = [merge(p, first[p.work]) if p.work in first else p
                   for p in sweep(KERNELS[name], dtype, threads, settings,
                                  measure, deadline, clock, penalty,
                                  profile.team_hot, end)]
        swept.append(pts)
        bar.step(f"{name} {dtype.name}")
    second_budget = settings.budget * (1 - THIRD_PASS)
    for i, (name, dtype) in enumerate(jobs):
        remaining = second_budget - (clock() - start)
        deadline = clock() + max(0.0, remaining) / (len(jobs) - i)
        swept[i] = second_pass(KERNELS[name], dtype, threads, settings, measure,
                               swept[i], deadline, clock, penalty, end)
        bar.step(f"{name} {dtype.name}, again")
    # A third look, in what is left of the budget, at the sweeps whose sizes
    # were still measured busy in both passes (the cores taken for seconds),
    # the busiest first, each after waiting a while for the cores to be free.
    suspects = sorted((i for i, pts in enumerate(swept)
                       if _busy_share(pts) >= SUSPECT),
                      key=lambda i: -_busy_share(swept[i]))
    for n, i in enumerate(suspects):
        remaining = settings.budget - (clock() - start)
        if remaining <= 0:
            break
        deadline = clock() + remaining / (len(suspects) - n)
        probe = _probe(max(threads))
        if probe is not None:
            probe.wait(min(1.0, (deadline - clock()) / 4))
        name, dtype = jobs[i]
        swept[i] = second_pass(KERNELS[name], dtype, threads, settings, measure,
                               swept[i], deadline, clock, penalty, end)
        profile.looked_thrice.append(f"{name} {dtype.name}")
    # What is left of the budget goes to more looks at the sizes that place
    # each hot step: a threshold then rests on three or more measurements,
    # tens of seconds apart, of the sizes either side of it.
    for _ in range(POLISH_ROUNDS):
        for i, (name, dtype) in enumerate(jobs):
            remaining = settings.budget * (1 - RESERVE) - (clock() - start)
            if remaining <= 0:
                break
            swept[i] = polish(KERNELS[name], dtype, threads, settings, measure,
                              swept[i], clock() + remaining / (len(jobs) - i),
                              clock)
    for (name, dtype), pts in zip(jobs, swept, strict=True):
        hot = choose_steps(pts, settings.margin)
        cold = choose_steps(with_penalty(pts, penalty), settings.margin)
        # what calls took here: the parallel times are dispatch's yardstick
        # for contention; with the serial ones, map() estimates batches
        times = tuple((p.work, t, p.times[t]) for p in pts for t in sorted(p.times)
                      if p.times[t] > 0)
        # the table of each measured idle time, as dispatch will use it
        idle = cold_tables(times, profile.wake, sleep_after, cold, settings.margin)
        profile.set_table(name, dtype.name, hot, cold, times,
                          [(gap * 1e6, steps) for gap, steps in idle],
                          "quick" if quick else "full")
        profile.sweeps[(name, dtype.name)] = pts
    profile.team_penalty = penalty
    profile.elapsed = clock() - start
    profile.busy_retries = sum(p.retries for p in _probes.values())
    return profile


def _noop() -> None:
    return None


def measure_batch(usable: int, repeats: int = 7, tasks: int = 64) -> dict[str, float]:
    """What spreading work over joblib's threading backend costs here.

    Times ``joblib.Parallel(n_jobs=usable, backend="threading")`` over
    ``usable`` empty tasks (the fixed cost of a run: ``start_s``) and over
    ``tasks`` empty tasks (the extra per task: ``task_s``), the median of
    ``repeats`` interleaved runs each.  :func:`breakeven.map` compares
    these with the kernels' times to choose between running a batch's items
    one after another and spreading them over threads.
    """
    # joblib is needed by this measurement only: it costs tens of ms to import
    from joblib import Parallel, delayed

    def run(n: int) -> float:
        t0 = time.perf_counter()
        Parallel(n_jobs=usable, backend="threading", batch_size=1)(
            delayed(_noop)() for _ in range(n))
        return time.perf_counter() - t0

    run(usable)  # warm-up: imports, the first pool
    few, many = [], []
    for _ in range(repeats):
        few.append(run(usable))
        many.append(run(tasks))
    import statistics  # milliseconds of import: only when calibrating
    start, full = statistics.median(few), statistics.median(many)
    return {"start_s": start, "task_s": max(full - start, 0.0) / (tasks - usable)}


# ---------------------------------------------------------------------------
# the raw record of a calibration, kept beside the profile for plots
# ---------------------------------------------------------------------------


def sweeps_path(profile_path) -> Path:
    p = Path(profile_path)
    return p.with_name(p.name + ".sweeps.json")


def record(profile: Profile) -> dict:
    """A JSON-able record of what the calibration measured."""
    return {
        "fingerprint": profile.fingerprint.as_dict(),
        "calibrated_at": profile.calibrated_at,
        "sleep_after_us": profile.sleep_after_us,
        "team_penalty_s": {str(t): s for t, s in profile.team_penalty.items()},
        "elapsed_s": profile.elapsed,
        "busy_retries": profile.busy_retries,
        "looked_thrice": list(profile.looked_thrice),
        "sweeps": {f"{k}/{d}": [[p.work, {str(t): s for t, s in p.times.items()}]
                                for p in pts]
                   for (k, d), pts in profile.sweeps.items()},
    }


def save_record(profile: Profile, profile_path) -> Path:
    """Store this host's record in the sidecar JSON of the profile file
    (atomically, keeping other hosts' records)."""
    target = sweeps_path(profile_path)
    with locked(target):
        data = {}
        if target.exists():
            try:
                data = json.loads(target.read_text())
                if not isinstance(data, dict):
                    data = {}
            except (OSError, ValueError):
                data = {}
        data[profile.fingerprint.key] = record(profile)
        atomic_write(target, json.dumps(data, indent=1, sort_keys=True))
    return target


def load_record(profile_path, key: str) -> dict | None:
    """This host's record from the sidecar JSON, or None."""
    try:
        data = json.loads(sweeps_path(profile_path).read_text())
        rec = data.get(key) if isinstance(data, dict) else None
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def points_from_record(rec: dict) -> dict[tuple[str, str], list[Point]]:
    out = {}
    for name, pts in rec.get("sweeps", {}).items():
        k, d = name.split("/", 1)
        out[(k, d)] = [Point(int(w), {int(t): float(s) for t, s in times.items()})
                       for w, times in pts]
    return out
