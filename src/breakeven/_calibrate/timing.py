"""Interleaved timing of competing callables, robust on a shared machine.

Every candidate is timed in batches long enough for the clock to resolve,
the candidates take turns batch by batch (rotating who goes first), and the
caller looks at the median and the spread of the per-call times.  Machine
noise then hits every candidate alike instead of whichever ran last.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

__all__ = ["Timing", "time_interleaved"]


@dataclass(frozen=True)
class Timing:
    """Per-call times (seconds) of one candidate, one entry per batch."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        import statistics  # milliseconds of import: only when timing
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def _calls_per_batch(fn: Callable[[], object], min_batch_time: float,
                     clock: Callable[[], float], max_calls: int) -> int:
    calls = 1
    first = True
    while True:
        t0 = clock()
        for _ in range(calls):
            fn()
        elapsed = clock() - t0
        if elapsed >= min_batch_time or calls >= max_calls:
            if first and calls == 1 and calls < max_calls:
                # a first call may pay one-time costs (imports, loading a
                # profile, first touches): size on a second one
                first = False
                continue
            return calls
        first = False
        # aim a little past the target so that the next try usually suffices
        grow = 2 if elapsed <= 0 else min_batch_time * 1.2 / elapsed
        calls = min(max_calls, max(calls + 1, int(calls * min(grow, 100))))


def time_interleaved(candidates: Mapping[str, Callable[[], object]], *,
                     repeats: int = 7, min_batch_time: float = 0.002,
                     clock: Callable[[], float] = time.perf_counter,
                     max_calls: int = 1 << 20,
                     around: Mapping[str, Callable[[], AbstractContextManager]]
                     | None = None) -> dict[str, Timing]:
    """Time each candidate in ``repeats`` batches, interleaved.

    Parameters
    ----------
    candidates : mapping of str to callable
        Zero-argument callables to compare.
    repeats : int
        Batches per candidate; the median of these is the figure to use.
    min_batch_time : float
        Each batch runs enough calls to last at least this long (seconds).
        Sizing the batches also serves as warm-up.
    clock : callable
        The clock, injectable for tests.
    max_calls : int
        Upper bound on calls per batch.
    around : mapping of str to callable, optional
        For some candidates, a factory of a context manager entered around
        each of their batches (outside the timed calls): a setting the
        candidate runs under, such as ``breakeven.threads(n, exact=True)``.

    Returns
    -------
    dict of str to Timing
        Per-call times of each candidate, one per batch.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(candidates)
    around = around or {}

    def setting(name):
        make = around.get(name)
        return make() if make is not None else contextlib.nullcontext()

    calls = {}
    for name in names:
        with setting(name):
            calls[name] = _calls_per_batch(candidates[name], min_batch_time, clock,
                                           max_calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            fn, k = candidates[name], calls[name]
            with setting(name):
                t0 = clock()
                for _ in range(k):
                    fn()
                samples[name].append((clock() - t0) / k)
    return {name: Timing(tuple(s)) for name, s in samples.items()}
