"""``calibrate()``: the run, pass by pass, and its progress bar."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from breakeven._kernels.registry import KERNELS

if TYPE_CHECKING:
    from breakeven._calibrate.measure import Measure
    from breakeven._calibrate.result import Calibration
    from breakeven._calibrate.settings import Settings
    from breakeven._calibrate.team import TeamCosts
    from breakeven._cpu import Topology
    from breakeven._profile import Fingerprint

# The engine (measuring, passes, team costs) is imported by calibrate() at
# its first call, not by `import breakeven`: its records are a large share
# of the package's import, and a process that only dispatches never needs
# them.

__all__ = ["Progress", "calibrate"]


class Progress:
    """A one-line progress bar on stderr (a line per step when not a TTY)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.done = total, enabled, 0
        self.stream = sys.stderr if stream is None else stream

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


def _settings(settings: Settings | None, quick: bool,
              budget: float | None) -> Settings:
    from breakeven._calibrate.settings import Settings

    settings = settings or (Settings.quick() if quick else Settings())
    if budget is None:
        return settings
    if not budget > 0:
        raise ValueError(f"budget must be positive, got {budget}")
    return dataclasses.replace(settings, budget=float(budget))


def _kernels_to_time(kernels: Iterable[str] | None) -> list[str]:
    """The names asked for (default: every registered kernel that can be
    timed); an error for a name not registered, or registered without the
    function that runs it."""
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
    return [n for n in names if KERNELS[n].call is not None]


def _thread_counts(usable: int | None, topology: Topology | None) -> list[int]:
    from breakeven._calibrate.settings import thread_candidates
    from breakeven._core.openmp import usable_cpus
    from breakeven._cpu import topology as host_topology

    if topology is None and usable is None:
        topology = host_topology()
    usable = usable or (topology.cpus if topology else usable_cpus())
    return thread_candidates(usable, topology)


def calibrate(kernels: Iterable[str] | None = None, budget: float | None = None,
              quick: bool = False, progress: bool = True, *,
              dtypes: Iterable[str] = ("float64", "float32"),
              settings: Settings | None = None, measure: Measure | None = None,
              team: Callable[[Sequence[int]], TeamCosts | tuple] | None = None,
              usable: int | None = None,
              fingerprint: Fingerprint | None = None,
              clock: Callable[[], float] = time.perf_counter,
              batch: Callable[[int], dict[str, float]] | None = None,
              topology: Topology | None = None) -> Calibration:
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
        With hot and cold step tables for each kernel and dtype, and what
        the run measured (not saved in the profile file): the raw points in
        ``profile.sweeps``, the team's wake-up penalty in
        ``profile.team_penalty``, the run's seconds in ``profile.elapsed``.

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
    import numpy as np

    from breakeven._calibrate.measure import forget_probes
    from breakeven._core import engine, host
    from breakeven._core.openmp import NO_OPENMP, OPENMP

    settings = _settings(settings, quick, budget)
    names = _kernels_to_time(kernels)
    dtypes = [np.dtype(d) for d in dtypes]
    if measure is None and not OPENMP:
        raise RuntimeError(f"{NO_OPENMP}, so there is nothing to calibrate")
    threads = _thread_counts(usable, topology)
    pairs = [(n, d) for n in names for d in dtypes if d in KERNELS[n].dtypes]

    engine.note_omp_started()  # the team runs from here on (fork)
    forget_probes()
    # Measured on the process's own budget: the host's would give a forced
    # count fewer cores while another process holds some, and the time of a
    # serial call would pass for a parallel one's.  (Another process on the
    # cores shows as interference, measured again.)
    with host.suspended():
        return _run(settings, names, dtypes, threads, pairs, quick, progress,
                    measure, team, batch, fingerprint, clock)


def _run(settings, names, dtypes, threads, pairs, quick, progress, measure, team,
         batch, fingerprint, clock):
    """The passes of :func:`calibrate`, on the process's own core budget."""
    from breakeven._calibrate.budget import Budget
    from breakeven._calibrate.measure import busy_retries, measure_batch, measure_point
    from breakeven._calibrate.passes import (
        first_pass,
        polish_pass,
        second_pass,
        third_pass,
    )
    from breakeven._calibrate.result import Calibration
    from breakeven._calibrate.sweeps import Job
    from breakeven._calibrate.team import measure_team, team_costs
    from breakeven._profile import host_fingerprint

    run = Budget.from_now(settings.budget, clock)
    bar = Progress(2 * len(pairs) + 2, enabled=progress)
    costs = team_costs(threads, team or measure_team)
    bar.step("OpenMP team wake-up")
    result = Calibration.started(fingerprint or host_fingerprint(), costs)
    if max(threads) > 1:
        result.batch = (batch or measure_batch)(max(threads))
    bar.step("joblib overhead")

    jobs = [Job(KERNELS[n], d, threads, settings, measure or measure_point, costs,
                run.end) for n, d in pairs]
    swept = first_pass(jobs, run, bar.step)
    second_pass(jobs, swept, run, bar.step)
    result.looked_thrice = third_pass(jobs, swept, run)
    polish_pass(jobs, swept, run)
    for job, points in zip(jobs, swept, strict=True):
        result.add_sweep(job.kernel.name, job.dtype.name, points, settings.margin,
                         "quick" if quick else "full")
    result.elapsed = run.elapsed()
    result.busy_retries = busy_retries()
    return result
