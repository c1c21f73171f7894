"""One kernel and dtype's points: the sweep up the sizes (:func:`sweep`),
and the looks again at its sizes that undo interference: around each step
and where fewer threads won (:func:`refine`), every size a second time
(:func:`look_again`), and around the hot steps in the time left
(:func:`polish`).  Each measurement of a size is merged with the earlier
ones, keeping each candidate's faster time: interference only ever adds
time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from breakeven._calibrate.budget import NEVER, Deadline
from breakeven._calibrate.measure import RETRIES, Measure
from breakeven._calibrate.settings import Settings
from breakeven._calibrate.team import TeamCosts
from breakeven._kernels.registry import Kernel
from breakeven._profile.steps import Point, choose_steps, merge, with_penalty

__all__ = ["PAYS_LITTLE", "Job", "best_gain", "first_look", "look_again", "polish",
           "refine", "reversals", "sweep", "worth_timing"]

# A kernel whose parallel variant never gained more than this many margins
# over serial is swept a second time: interference looks like that too.
PAYS_LITTLE = 4
# Serial this many times slower than the best is no longer timed.
SERIAL_BEHIND = 8.0
# Rounds of looks around the steps (refine): a step that moves is looked at
# again where it went.
REFINE_ROUNDS = 4


@dataclass(frozen=True)
class Job:
    """One kernel and dtype of a run, and what every look at its sizes
    uses: the thread counts timed, the settings, the function that times a
    size, the team's costs (its wake-up ``penalty`` makes the cold table, an
    empty region's ``hot`` time rules out counts that cannot win yet) and
    the run's end, which no look may pass."""

    kernel: Kernel
    dtype: np.dtype
    threads: Sequence[int]
    settings: Settings
    measure: Measure
    team: TeamCosts = field(default_factory=TeamCosts)
    end: Deadline = NEVER

    @property
    def label(self) -> str:
        return f"{self.kernel.name} {self.dtype.name}"

    def time(self, work: int, threads: Sequence[int]) -> Point:
        """The point measured at about ``work`` for these thread counts."""
        return self.measure(self.kernel, self.dtype, work, threads, self.settings)

    def time_again(self, p: Point) -> Point:
        """``p`` merged with a new measurement of its size."""
        return merge(p, self.time(p.work, _timed_again(p)))

    def fits(self, p: Point, deadline: Deadline) -> bool:
        """Measuring ``p``'s size again ends before ``deadline``, even if it
        is measured again for interference (``RETRIES`` times)."""
        return deadline.allows((1 + RETRIES) * _measuring_time(p, self.settings))


def _serial_behind(p: Point) -> bool:
    return p.times[1] > SERIAL_BEHIND * min(p.times.values())


def _timed_again(p: Point) -> list[int]:
    """The candidates to time again at ``p``'s size: those timed there."""
    return sorted(t for t in p.times if t > 1 or not _serial_behind(p))


def _measuring_time(p: Point, settings: Settings) -> float:
    """About what measuring ``p``'s size again takes (a batch is as many
    whole calls as reach ``min_batch_time``; 10% more for the rest)."""
    return 1.1 * settings.repeats * sum(
        math.ceil(settings.min_batch_time / p.times[t]) * p.times[t]
        if p.times[t] > 0 else settings.min_batch_time for t in _timed_again(p))


def _fastest(p: Point) -> int:
    return min(p.times, key=lambda t: (p.times[t], t))


def _most_win(p: Point, most: int, margin: float, extra: float = 0.0) -> bool:
    """The most threads are the fastest at ``p`` and beat serial by the
    margin, with ``extra`` seconds (a wake-up penalty) added to their time."""
    return _fastest(p) == most and (p.times[most] + extra) * (1 + margin) < p.times[1]


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
    at = order.index(_fastest(last))
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
            fastest = _fastest(p)
            if p.times[t] >= 2 * serial or (
                    t < fastest and p.times[t] > 4 * p.times[fastest]):
                continue
        keep.append(t)
    return keep


def sweep(job: Job, deadline: Deadline) -> list[Point]:
    """Measure sizes in increasing order until settled, the largest size,
    or the deadline (at least two points are always measured), then
    :func:`refine`.  Each size times the candidates :func:`worth_timing`
    keeps, judged by the serial time of the size before.

    Settled means: the most threads beat serial by the margin at
    ``settings.settle`` sizes in a row, even with the wake-up penalty of a
    cold team added, so that both the hot and the cold table are decided
    by the points measured.
    """
    settings, points = job.settings, []
    most = max(job.threads)
    extra = job.team.penalty.get(most, 0.0)
    streak = 0
    works = settings.works(most)
    # Warm-up: the first calls of a kernel pay for first touches (pages,
    # BLAS buffers, the team's creation); they must not count.
    job.time(works[0], job.threads)
    for work in works:
        if len(points) >= 2 and deadline.reached():
            break
        if len(points) >= 2 and not job.end.allows(
                2 * _measuring_time(points[-1], settings)):
            break  # the next size (twice the work) would overrun the run
        candidates = worth_timing(job.threads, job.team.hot, points, work)
        p = job.time(work, candidates)
        if points and p.work <= points[-1].work:
            continue  # the kernel's inputs cannot be that small: same work
        for _ in range(2):  # a noise burst: look again before deciding
            if not p.ambiguous or deadline.reached():
                break
            p = job.time(work, candidates)
        if 1 not in p.times:  # serial far behind: its time scales with work
            last = points[-1]
            p = dataclasses.replace(
                p, times={1: last.times[1] * p.work / last.work, **p.times})
        points.append(p)
        if most > 1:
            streak = streak + 1 if _most_win(p, most, settings.margin, extra) else 0
            if streak >= settings.settle:
                break
    return refine(job, points)


def best_gain(points: Sequence[Point]) -> float:
    """The largest speed-up over serial any thread count reached."""
    return max((p.times[1] / s for p in points for t, s in p.times.items()
                if t > 1 and s > 0 and p.times.get(1)), default=1.0)


def first_look(job: Job, deadline: Deadline) -> list[Point]:
    """:func:`sweep`, and once more if parallel paid little or never.

    That is true of some kernels, but also what a sweep measured while
    another process held a core looks like: the second sweep runs in what
    is left of the first one's time, each size keeps its faster times, and
    its sizes are the ones kept (it stops where it settles)."""
    points = sweep(job, deadline)
    if max(job.threads) > 1 and best_gain(points) < \
            1 + PAYS_LITTLE * job.settings.margin and not deadline.reached():
        first = {p.work: p for p in points}
        points = [merge(p, first[p.work]) if p.work in first else p
                  for p in sweep(job, deadline)]
    return points


def reversals(points: Sequence[Point], margin: float) -> list[int]:
    """Sizes where fewer threads win than at a smaller size, where more won
    by the margin: a monotone table cannot follow them, and they are most
    often a burst of interference (which only ever adds time), so they are
    measured again.  Indices, the largest first."""
    out, most = [], 1
    for i, p in enumerate(points):
        if _fastest(p) < most:
            out.append(i)
        serial = p.times.get(1, math.inf)
        for t, s in p.times.items():
            if t > most and s * (1 + margin) < serial:
                most = t
    return out[::-1]


def _around_steps(job: Job, points: Sequence[Point]) -> set[int]:
    """The sizes either side of each step of the hot and the cold table,
    and the latest :func:`reversals`: indices."""
    margin, out = job.settings.margin, set()
    for pts in (points, with_penalty(points, job.team.penalty)):
        for work_min, _ in choose_steps(pts, margin)[1:]:
            i = next(i for i, p in enumerate(points) if p.work >= work_min)
            out.update(range(max(0, i - 2), min(len(points), i + 1)))
    out.update(reversals(points, margin)[:6])
    return out


def refine(job: Job, points: list[Point]) -> list[Point]:
    """Measure the sizes on both sides of each chosen step once more, and
    the sizes where fewer threads won than at a smaller size
    (:func:`reversals`), and merge: a burst of interference during the
    sweep (another process on the cores) can make several sizes in a row
    look serial, and would otherwise push a threshold far up, or remove it.
    Costs a few points per sweep; none that would end after the run's end."""
    if len(points) < 2 or max(job.threads) == 1:
        return points
    out = list(points)
    done: set[int] = set()
    for _ in range(REFINE_ROUNDS):
        again = _around_steps(job, out) - done
        if not again:
            break
        for i in sorted(again):
            if not job.fits(out[i], job.end):
                return out
            out[i] = job.time_again(out[i])
        done |= again
    return out


def look_again(job: Job, points: list[Point], deadline: Deadline) -> list[Point]:
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
    if len(points) < 2 or max(job.threads) == 1 or deadline.reached():
        return points
    out = list(points)
    most, streak = max(job.threads), 0
    job.time(out[0].work, _timed_again(out[0]))  # warm-up
    for i, p in enumerate(out):
        if not job.fits(p, deadline):
            break
        out[i] = q = job.time_again(p)
        streak = streak + 1 if _most_win(q, most, job.settings.margin) else 0
        if streak >= job.settings.settle:
            break
    return refine(job, out)


def polish(job: Job, points: list[Point], deadline: Deadline) -> list[Point]:
    """Measure the sizes within a factor of 4 of each hot step once more and
    keep each candidate's faster time; stops before a size whose
    measurement would overrun the deadline."""
    steps = choose_steps(points, job.settings.margin)[1:]
    if not steps or max(job.threads) == 1:
        return points
    out = list(points)
    for i, p in enumerate(out):
        if not any(w / 4 <= p.work <= w * 4 for w, _ in steps):
            continue
        if not job.fits(p, deadline):
            break
        out[i] = job.time_again(p)
    return out
