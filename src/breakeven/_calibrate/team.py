"""What the OpenMP team costs a parallel region: back to back (hot), and
after idle times, when its threads must be woken (cold).

Measured for a few thread counts (:func:`team_counts`) with
:func:`measure_team`, completed for the others by interpolation
(:func:`team_interpolated`), and kept in a :class:`TeamCosts`: the
calibration's cold tables add the wake-up penalty to the parallel times,
and dispatch reads the sleep time, the wake-up after each idle time and the
hot region times from the profile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from breakeven._core.openmp import team_size
from breakeven._cpu import at_count

__all__ = ["TEAM_COUNTS", "TEAM_GAPS_MS", "TEAM_HOT", "TEAM_TRIALS", "TEAM_WARMUP",
           "WAKE_MIN", "TeamCosts", "measure_team", "team_costs", "team_counts",
           "team_interpolated"]

# A region this much slower than back to back had to wake its threads.
WAKE_MIN = 20e-6
# measure_team: idle gaps (ms) after which a region is timed, trials of each,
# and regions back to back before (warm-up) and for the hot time.
TEAM_GAPS_MS = (0.05, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TEAM_TRIALS = 5
TEAM_WARMUP, TEAM_HOT = 50, 200
# at most this many thread counts have their wake-up measured
TEAM_COUNTS = 4


@dataclass(frozen=True)
class TeamCosts:
    """What a region of the team costs, by thread count.

    Parameters
    ----------
    penalty : dict of int to float
        The extra seconds a region of that many threads costs after the
        longest idle gap, over one back to back.
    sleep_after_us : float or None
        The shortest idle gap after which a region costs ``WAKE_MIN`` more
        than back to back: the threads had to be woken (None if they never
        had to).
    wake : tuple of (float, int, float)
        ``(gap_us, threads, extra_seconds)`` for every gap from the sleep
        time on (waking can cost tens of microseconds after a short idle
        time and milliseconds after a long one, when the host deschedules
        an idle virtual CPU): dispatch judges a lone call with the penalty
        of the longest gap not longer than its idle time.
    hot : dict of int to float
        The seconds of an empty region of that many threads back to back.
    """

    penalty: dict[int, float] = field(default_factory=dict)
    sleep_after_us: float | None = None
    wake: tuple[tuple[float, int, float], ...] = ()
    hot: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, measured: TeamCosts | tuple) -> TeamCosts:
        """``measured`` as team costs: already, or the tuple ``(penalty,
        sleep_after_us[, wake[, hot]])`` a team function given to
        :func:`breakeven.calibrate` may return instead."""
        if isinstance(measured, cls):
            return measured
        penalty, sleep_after_us, wake, hot = (*measured, (), {})[:4]
        return cls(dict(penalty), sleep_after_us, tuple(wake), dict(hot))


def measure_team(threads: Sequence[int], *,
                 gaps_ms: Sequence[float] = TEAM_GAPS_MS,
                 trials: int = TEAM_TRIALS,
                 sleep: Callable[[float], object] = time.sleep,
                 clock: Callable[[], float] = time.perf_counter) -> TeamCosts:
    """The wake-up penalty of each thread count, and how long the team stays
    awake.

    Opens an empty parallel region back to back (hot: the median of
    ``TEAM_HOT``, after ``TEAM_WARMUP``) and after each idle gap of
    ``gaps_ms`` (cold: the mean of ``trials``, the expected cost: on a
    virtual machine a wake-up after the same idle time costs from a tenth
    of a millisecond to several, when the host has descheduled the idle
    virtual CPU, and a median of a few trials hides the costly ones; and
    never less than after a shorter idle time); the sleep time is read
    from the largest count of ``threads``.  See :class:`TeamCosts`.
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
            costs.append(float(np.mean(samples)))
        # a longer idle time never makes the wake-up cheaper
        costs = [float(c) for c in np.maximum.accumulate(costs)]
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
    return TeamCosts(penalty, sleep_after, wake, hots)


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


def _completed(known: dict[int, float], counts: Sequence[int]) -> dict[int, float]:
    return {t: known[t] if t in known else at_count(t, known) for t in counts}


def team_interpolated(threads: Sequence[int], measured: TeamCosts) -> TeamCosts:
    """``measured`` (what :func:`measure_team` returns for
    :func:`team_counts`) completed for every parallel count of ``threads``:
    the wake-up penalty, each gap's wake-up and the hot region time of a
    count not measured are interpolated linearly between the counts either
    side (both grow about linearly with the threads to wake or join)."""
    par = [t for t in threads if t > 1]
    if not measured.penalty or all(t in measured.penalty for t in par):
        return measured
    wake = []
    for gap in sorted({g for g, _, _ in measured.wake}):
        at = {t: s for g, t, s in measured.wake if g == gap}
        wake += [(gap, t, s) for t, s in _completed(at, par).items()]
    hot = _completed(measured.hot, par) if measured.hot else measured.hot
    return TeamCosts(_completed(measured.penalty, par), measured.sleep_after_us,
                     tuple(wake), hot)


def team_costs(threads: Sequence[int],
               measure: Callable[[Sequence[int]], TeamCosts | tuple] = measure_team
               ) -> TeamCosts:
    """The team's costs for every parallel count of ``threads``: measured
    at :func:`team_counts`, the others interpolated; none on one CPU."""
    if max(threads) == 1:
        return TeamCosts()
    return team_interpolated(threads, TeamCosts.of(measure(team_counts(threads))))
