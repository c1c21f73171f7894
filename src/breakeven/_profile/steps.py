"""Step tables: choosing one from measured points, and reading one.

Pure functions of measured times, shared by calibration (which chooses the
tables) and dispatch (which derives a cold table for each measured idle
time from the calibrated times).  The table look-up, the margin and the
most cold tables are the dispatch core's.

A step table is a tuple of ``(work_min, threads)`` pairs with ``work_min``
strictly increasing from 0; a call of work ``w`` uses the threads of the
last step whose ``work_min <= w``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MARGIN", "Point", "Steps", "choose_steps", "cold_tables", "crossing",
           "merge", "threads_for", "with_penalty"]

# The rule's margin, the most cold tables and the table look-up are the
# dispatch core's, so that a table means here what it means to a call.
from breakeven._core.engine import GAPS_MAX as MAX_GAPS  # noqa: E402
from breakeven._core.engine import MARGIN, threads_for  # noqa: E402

Steps = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Point:
    """One measured size: seconds per call for each thread count (1 = serial).

    ``ambiguous`` marks a point where some parallel candidate won by the
    margin in some batch pairs but not in enough of them to count; ``busy``
    one measured while another process was on the cores (:class:`Probe`)."""

    work: int
    times: dict[int, float]
    ambiguous: bool = False
    busy: bool = False


def choose_steps(points: Sequence[Point], margin: float = MARGIN) -> Steps:
    """The monotone step table that loses least time on the measured points.

    Each candidate's time is inflated by ``(1 + margin)`` per rank above
    serial, so more threads win only by a margin.  Among tables whose thread
    count never decreases with work, a dynamic programme picks the one with
    the smallest total relative loss against each point's best candidate
    (ties go to fewer threads).  A step starts between the first measured
    work that uses it and the one before it that does not, where the gain
    interpolated between the two crosses the margin (:func:`crossing`).
    """
    points = sorted(points, key=lambda p: p.work)
    if not points:
        return ((0, 1),)
    cands = sorted({t for p in points for t in p.times})
    if 1 not in cands:
        raise ValueError("every point needs a serial (1 thread) time")
    rank = {t: i for i, t in enumerate(cands)}
    inf = math.inf

    def losses(p: Point) -> list[float]:
        eff = [p.times[t] * (1 + margin) ** rank[t] if t in p.times else inf
               for t in cands]
        best = min(eff)
        return [e / best - 1 if best > 0 else (0.0 if e == best else inf)
                for e in eff]

    # cost[c]: least total loss of a monotone table ending with candidate c
    cost = losses(points[0])
    back: list[list[int]] = []
    for p in points[1:]:
        loss = losses(p)
        new, arg = [], []
        best_prev, best_idx = inf, 0
        for c in range(len(cands)):
            if cost[c] < best_prev:  # strict: ties keep fewer threads
                best_prev, best_idx = cost[c], c
            new.append(best_prev + loss[c])
            arg.append(best_idx)
        cost, back = new, back + [arg]
    c = min(range(len(cands)), key=lambda i: (cost[i], i))
    choice = [c]
    for arg in reversed(back):
        c = arg[c]
        choice.append(c)
    choice.reverse()
    steps: list[tuple[int, int]] = [(0, cands[choice[0]])]
    for prev, p, ci in zip(points, points[1:], choice[1:], strict=False):
        if cands[ci] != steps[-1][1]:
            mid = crossing(prev, p, steps[-1][1], cands[ci], rank, margin)
            steps.append((max(mid, steps[-1][0] + 1), cands[ci]))
    if steps[0][1] != 1 and len(points) > 0:
        # below the smallest size measured, nothing is known: stay serial
        steps = [(0, 1), (int(points[0].work), steps[0][1])] + steps[1:]
    return tuple(steps)


def crossing(a: Point, b: Point, low: int, high: int, rank: dict[int, int],
             margin: float) -> int:
    """Where, between the measured sizes ``a`` and ``b``, ``high`` threads
    start to beat ``low`` threads by the margin.

    The gain ``time(low) / time(high)`` (each time inflated by the margin per
    thread rank) is interpolated linearly in log work and log gain between
    the two sizes; if it does not cross 1 between them (noise), the
    geometric mean of the two sizes.  Interpolating, rather than always
    taking the midpoint, keeps a threshold from jumping a whole grid step
    when the gain at one size moves by a few percent from run to run.
    """
    def log_gain(p: Point) -> float | None:
        lo, hi = p.times.get(low), p.times.get(high)
        if not lo or not hi or lo <= 0 or hi <= 0:
            return None
        return math.log(lo * (1 + margin) ** rank[low]) \
            - math.log(hi * (1 + margin) ** rank[high])

    la, lb = math.log(a.work), math.log(b.work)
    ga, gb = log_gain(a), log_gain(b)
    if ga is None or gb is None or not ga < 0 <= gb:
        return int(round(math.exp((la + lb) / 2)))
    return int(round(math.exp(la + (lb - la) * (-ga) / (gb - ga))))


def merge(a: Point, b: Point) -> Point:
    """Two measurements of one size: the faster time of each candidate
    (interference only ever adds time, so the minimum is the cleaner)."""
    return Point(a.work, {t: min(a.times[t], b.times.get(t, math.inf))
                          for t in a.times}, a.ambiguous and b.ambiguous,
                 a.busy and b.busy)


def with_penalty(points: Iterable[Point], penalty: dict[int, float]) -> list[Point]:
    """Points as a call that finds the team asleep would see them."""
    return [Point(p.work, {t: s + (penalty.get(t, 0.0) if t > 1 else 0.0)
                           for t, s in p.times.items()}) for p in points]


def cold_tables(times: Sequence[tuple[int, int, float]],
                wake: Sequence[tuple[float, int, float]],
                sleep_after_us: float | None, cold: Steps,
                margin: float = MARGIN) -> list[tuple[float, Steps]]:
    """``[(idle_seconds, steps), ...]``, shortest idle first: the table for a
    lone call idle at least that long.

    One per measured gap of ``wake`` (``(gap_us, threads, seconds)``: what
    waking a team of that many threads costs after that idle time), chosen
    from a kernel's calibrated ``times`` (``(work, threads, seconds)``) with
    that gap's wake-up penalty added to the parallel ones; ``cold`` (the
    profile's table for the longest gap) for every lone call when there is
    no ``wake`` or no times.
    """
    fallback = [((sleep_after_us or 0) / 1e6, cold)]
    if not wake or not times:
        return fallback
    by_work: dict[int, dict[int, float]] = {}
    for work, t, seconds in times:
        by_work.setdefault(work, {})[t] = seconds
    points = [Point(w, ts) for w, ts in sorted(by_work.items()) if 1 in ts]
    if not points:
        return fallback
    beyond = _beyond(points[-1], max(s for _, _, s in wake))
    if beyond is not None:
        points.append(beyond)
    out = []
    for gap in sorted({g for g, _, _ in wake}):
        penalty = {t: s for g, t, s in wake if g == gap}
        out.append((gap / 1e6, choose_steps(with_penalty(points, penalty), margin)))
    return out[:MAX_GAPS]


def _beyond(last: Point, wake_s: float) -> Point | None:
    """A point past the largest size measured, far enough that the gain of
    its best parallel count pays for waking the team (``wake_s``) four
    times over, its times scaled from ``last`` in proportion to work (as
    the hot table's last step assumes).  Without it, a wake-up longer than
    the gain at the largest size measured made a cold table say "never"
    for any work, and a lone call of a thousand times that size ran
    serially.  None when no parallel count gains there."""
    gain = last.times[1] - min(last.times.values())
    if gain <= 0:
        return None
    factor = 2.0 ** math.ceil(math.log2(max(2.0, 4 * wake_s / gain)))
    return Point(int(last.work * factor),
                 {t: s * factor for t, s in last.times.items()})

