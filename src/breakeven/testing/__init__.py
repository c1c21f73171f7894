"""Test hooks: documented ways to put dispatch in a known state.

For the tests of breakeven and of libraries that dispatch through it: each
hook drives the dispatch core through a public function, so a test written
with them keeps working when the core's insides change.  Everything here is
process-wide except :func:`thread_controls`; none of it is for production
code.

Examples
--------
>>> import numpy as np, breakeven
>>> from breakeven import testing
>>> with testing.simulated_cpus(64):
...     d = breakeven.decide("exp", 10**9, idle=0)
>>> d.threads <= 64
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from breakeven._core import engine, host, tables
from breakeven._interop.blas import thread_setters
from breakeven._kernels import registry
from breakeven._profile import Profile
from breakeven._profile import forget_warnings as _forget_warnings

__all__ = ["EVIDENCE_MIN", "EXPLORE_UNTIL", "HOSTS", "KERNEL_MODELS", "Budget",
           "CallLog", "Evidence", "KernelModel", "ProcessesLog", "SimulatedHost",
           "Simulation", "TORCH_GRAIN",
           "backoff_state", "blas_functions", "budget", "clock_scale", "evidence",
           "fixed_rules", "forget_warnings", "hammer", "idle", "kernel_models",
           "make_probe_due", "profile", "regret", "reset", "reset_peak", "run_callers",
           "run_processes", "simulated_clock", "simulated_cpus", "table_rule",
           "thread_controls", "WAKE_EVIDENCE", "wake_seen"]


class Budget(NamedTuple):
    """The process's core budget: ``usable`` CPUs, ``free`` ones, threads
    ``in_flight`` now, and the ``peak`` in flight since :func:`reset_peak`."""

    usable: int
    free: int
    in_flight: int
    peak: int


def reset(profile: Profile | None = None) -> None:
    """Dispatch as in a new process: ``profile`` in use (None: the profile
    file, loaded at the next call), nothing learnt, the budget full, the
    team's clocks cleared.  (A profile file already warned about is not
    warned about again: :func:`forget_warnings`.)"""
    tables.use_profile(profile)
    joined = engine.host_joined()
    engine.set_usable(engine.usable())
    if joined:  # in the host's budget again, with a slot of its own
        host.join()


def profile() -> Profile:
    """The profile dispatch uses (loading it if no call has yet)."""
    return tables.profile()


def forget_warnings() -> None:
    """A :class:`~breakeven.ProfileWarning` already given for a file and a
    reason is given again (as in a new process)."""
    _forget_warnings()


def budget() -> Budget:
    """The core budget now."""
    return Budget(*engine.budget())


def reset_peak() -> None:
    """Start :attr:`Budget.peak` again from the threads in flight now."""
    engine.reset_peak()


def idle(seconds: float) -> None:
    """Make the last parallel call have ended ``seconds`` ago: a lone call
    after a long idle finds the team asleep (the cold table); a negative
    value keeps the team counted as awake for that long (every call is then
    decided from the hot table)."""
    engine.set_idle(float(seconds))


class clock_scale(contextlib.AbstractContextManager):  # noqa: N801 - a function
    """Calls take ``factor`` times longer as the core times them, from now
    on: a way to make a kernel look contended.  As a context manager, back
    to 1 at the end of the block."""

    def __init__(self, factor: float):
        engine.set_clock_scale(float(factor))

    def __exit__(self, *exc) -> None:
        engine.set_clock_scale(1.0)


class SimulatedClock:
    """The core's clock while :func:`simulated_clock` is open."""

    def __init__(self, start: float):
        self.now = start
        engine.simulate_clock(True, start)

    def advance(self, seconds: float) -> float:
        """Move the clock on by ``seconds``; returns the new time."""
        self.now += seconds
        engine.simulate_clock(True, self.now)
        return self.now


@contextlib.contextmanager
def simulated_clock(start: float = 1000.0) -> Iterator[SimulatedClock]:
    """The core's clock stands still at ``start`` seconds and moves only by
    :meth:`SimulatedClock.advance`: calls, idle times and contention in
    simulated time."""
    clock = SimulatedClock(start)
    try:
        yield clock
    finally:
        engine.simulate_clock(False)


@contextlib.contextmanager
def simulated_cpus(n: int) -> Iterator[None]:
    """Dispatch as on a host with ``n`` usable CPUs (and
    ``omp_get_max_threads() == n``): decisions, the budget and caps, and
    the kernels' clamp of ``n_threads`` (one usable-CPU count for the whole
    package); the kernels themselves still run on the real CPUs."""
    real, joined = engine.usable(), engine.host_joined()
    engine.set_usable(n)  # a budget of its own, of n cores
    engine.simulate_max_threads(n)
    try:
        yield
    finally:
        engine.simulate_max_threads(0)
        engine.set_usable(real)
        if joined:
            host.join()


@contextlib.contextmanager
def blas_functions(pairs) -> Iterator[None]:
    """The core caps these BLAS "libraries" instead of the loaded ones:
    ``(get_num_threads, set_num_threads)`` C function addresses (ctypes
    callbacks will do), to watch what it sets.  The loaded libraries'
    functions are looked up again afterwards."""
    engine.set_blas(pairs)
    try:
        yield
    finally:
        engine.set_blas(thread_setters())


def thread_controls() -> tuple[int, int, int]:
    """``(exact, cap, section)`` of the calling thread: the ``n`` of
    ``threads(n, exact=True)`` and of ``threads(n)``, and the cores of an open
    section (0 for none)."""
    return engine.thread_controls()


def _slot(kernel: str, dtype: str) -> tuple[int, int]:
    d = engine.dtype_index(dtype)
    if d < 0:
        raise ValueError(f"unknown dtype {dtype!r}")
    return registry.get_kernel(kernel).slot, d


def backoff_state(kernel: str, dtype: str = "float64") -> dict:
    """A kernel's back-off: ``backed_off``, its thread ``cap``, the
    ``spent`` seconds of backed-off calls since the last probe, the last slow
    call's ``probe_cost`` and the probe ``spacing`` in force (a multiple of
    ``PROBE_RATIO``)."""
    on, cap, spent, cost, ratio = engine.backoff_state(*_slot(kernel, dtype))
    return {"backed_off": on, "cap": cap, "spent": spent, "probe_cost": cost,
            "spacing": ratio}


def make_probe_due(kernel: str, dtype: str = "float64") -> None:
    """Count the backed-off calls as long enough for a probe: the next call
    of the kernel past its threshold runs at its full thread count."""
    engine.make_probe_due(*_slot(kernel, dtype))


class Evidence(NamedTuple):
    """What a kernel's calls measured at one log2 size (the online check):
    each choice's mean seconds per unit of work, its standard deviation and
    how many calls measured it; ``settled`` is what that evidence settled
    (``"serial"``, ``"parallel"`` or ``""``: nothing yet, the table's or the
    estimate's choice stands)."""

    serial_mean: float
    serial_std: float
    serial_calls: int
    parallel_mean: float
    parallel_std: float
    parallel_calls: int
    settled: str


def evidence(kernel: str, work: int, dtype: str = "float64") -> Evidence:
    """What the kernel's calls measured at the log2 size of ``work``."""
    ser, par, settled = engine.evidence(*_slot(kernel, dtype), int(work))
    return Evidence(*ser, *par, ("", "serial", "parallel")[settled])


def wake_seen(team: int = 0) -> list[tuple[float, float, float, int]]:
    """The wake-ups of an OpenMP team (0: breakeven's own) its parallel
    calls measured (what a call that found the team idle paid beyond a hot
    one), per power-of-two idle time: ``(idle_seconds_from, mean_seconds,
    std_seconds, calls)`` for each idle time measured."""
    return engine.wake_seen(team)


def hammer(kernel: str, work: int, calls: int, dtype: str = "float64") -> int:
    """``calls`` begin/end pairs of the Cython API without the GIL, as a
    kernel's caller makes them (nothing runs in between); returns the most
    threads any call got."""
    return engine.hammer(registry.get_kernel(kernel).slot, np.dtype(dtype).num,
                        int(work), int(calls))


SLOW = engine.SLOW
SEVERE = engine.SEVERE
BACKOFF_AFTER = engine.BACKOFF_AFTER
PROBE_RATIO = engine.PROBE_RATIO
EXPLORE_EVERY = engine.EXPLORE_EVERY
EVIDENCE_MIN = engine.EVIDENCE_MIN
EXPLORE_UNTIL = engine.EXPLORE_UNTIL
WAKE_EVIDENCE = engine.WAKE_EVIDENCE


# Simulated hosts (a cost model of many-core machines): for calibration
# through its overrides, and for dispatch through the hooks above.
from breakeven.testing.simhost import (  # noqa: E402
    HOSTS,
    KERNEL_MODELS,
    TORCH_GRAIN,
    CallLog,
    KernelModel,
    ProcessesLog,
    SimulatedHost,
    Simulation,
    fixed_rules,
    kernel_models,
    regret,
    run_callers,
    run_processes,
    table_rule,
)
