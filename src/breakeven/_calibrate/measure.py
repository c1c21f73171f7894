"""Timing one size: the public call at each forced thread count,
interleaved batch by batch (:func:`measure_point`), judged batch pair by
batch pair (:func:`paired_point`), and measured again while another process
is on the cores (:class:`Probe`); and what spreading a batch of calls over
joblib's threads costs (:func:`measure_batch`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from breakeven._calibrate.settings import Settings
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.engine import MARGIN
from breakeven._core.engine import threads as threads_control
from breakeven._kernels import elementwise
from breakeven._kernels.registry import Kernel
from breakeven._profile.steps import Point, merge

__all__ = ["BUSY_RATIO", "CONSISTENCY", "PROBE_SHARE", "RETRIES", "WAIT", "Measure",
           "Probe", "measure_batch", "measure_point", "paired_point"]

# What times one size: ``measure(kernel, dtype, work, threads, settings)``,
# replaceable, so that the choosing is tested on synthetic cost curves.
Measure = Callable[[Kernel, np.dtype, int, Sequence[int], Settings], Point]

# A candidate faster than serial by the margin in fewer than this share of
# the batch pairs counts as no faster (paired_point).
CONSISTENCY = 0.6
# The probe of other processes on the cores (:class:`Probe`): elements of exp
# per thread, the parallel/serial time ratio that means busy, how many times
# a point measured while busy is measured again, and how long to wait for
# the cores before each.
PROBE_WORK = 1 << 14
BUSY_RATIO = 1.4
RETRIES = 2
WAIT = 0.05
PROBE_SHARE = 0.1  # of the budget, at most


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


# One probe per team size, for the whole run: its lowest ratio is what a
# free host looks like.
_probes: dict[int, Probe] = {}


def probe_for(threads: int) -> Probe | None:
    """The run's probe of a team of ``threads`` (None for one thread)."""
    if threads < 2:
        return None
    if threads not in _probes:
        _probes[threads] = Probe(threads)
    return _probes[threads]


def forget_probes() -> None:
    """A new run: what busy looks like is learnt again."""
    _probes.clear()


def busy_retries() -> int:
    """How many sizes the run measured again because the cores were busy."""
    return sum(p.retries for p in _probes.values())


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
    probe = probe_for(max(threads))
    # waiting and measuring again take at most a share of the budget: on a
    # host busy throughout, the points are then measured once, as they are
    looks = probe is not None and probe.spent < PROBE_SHARE * settings.budget
    if looks:
        t0 = clock()
        probe.wait(WAIT)
        probe.spent += clock() - t0
    point = measure_once(kernel, dtype, work, threads, settings)
    if probe is None:
        return point
    for _ in range(RETRIES if looks else 0):
        t0 = clock()
        if not probe.busy():
            return point
        probe.wait(WAIT)
        point = merge(point, measure_once(kernel, dtype, work, threads, settings))
        probe.retries += 1
        probe.spent += clock() - t0
    # still busy after the last look: the calibration may look again later
    return dataclasses.replace(point, busy=probe.busy())


def measure_once(kernel: Kernel, dtype: np.dtype, work: int,
                 threads: Sequence[int], settings: Settings) -> Point:
    """One interleaved timing of the candidates, with no look at the cores."""
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
        around={str(t): (lambda t=t: threads_control(t, exact=True))
                for t in threads})
    return paired_point(actual, {int(k): v for k, v in timings.items()},
                        settings.margin)


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
