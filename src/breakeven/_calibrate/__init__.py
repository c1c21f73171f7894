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

The modules, from the bottom up:

- ``timing``: interleaved timing of competing callables;
- ``settings``: the sizes and thread counts a run times, and how thoroughly;
- ``measure``: timing one size (and looking for other processes on the
  cores), and joblib's cost;
- ``team``: the OpenMP team's costs, hot and after idle times;
- ``budget``: the run's time, shared out among the passes;
- ``sweeps``: one kernel and dtype's sweep, and the looks again at its sizes;
- ``passes``: the run's passes over every sweep;
- ``result``: the :class:`Calibration` returned, and its record on disk;
- ``driver``: :func:`calibrate`, the passes in order.

This package re-exports what the rest of breakeven, its tests and its
documentation use.
"""

from breakeven._calibrate.driver import calibrate

# The rest, for the CLI, the simulated host, the docs and the tests: each
# name from its module at first use (calibrate() imports the engine itself;
# `import breakeven` loads only this module and the driver).
_WHERE = {
    "measure": ("BUSY_RATIO", "CONSISTENCY", "PROBE_SHARE", "RETRIES", "WAIT",
                "Probe", "measure_batch", "measure_point", "paired_point"),
    "passes": ("FIRST_PASS", "POLISH_ROUNDS", "SUSPECT", "THIRD_PASS"),
    "result": ("Calibration", "load_record", "points_from_record", "save_record"),
    "settings": ("Settings", "thread_candidates"),
    "sweeps": ("PAYS_LITTLE", "worth_timing"),
    "team": ("TEAM_COUNTS", "TEAM_GAPS_MS", "TEAM_HOT", "TEAM_TRIALS", "TEAM_WARMUP",
             "WAKE_MIN", "TeamCosts", "measure_team", "team_counts",
             "team_interpolated"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name == "MARGIN":  # the core's
        from breakeven._core.engine import MARGIN

        return MARGIN
    if name in _MODULE_OF:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"),
                        name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    # the run and its result
    "Calibration", "Settings", "calibrate", "thread_candidates",
    # measuring
    "BUSY_RATIO", "CONSISTENCY", "PROBE_SHARE", "RETRIES", "WAIT", "Probe",
    "measure_batch", "measure_point", "paired_point",
    # the team
    "TEAM_COUNTS", "TEAM_GAPS_MS", "TEAM_HOT", "TEAM_TRIALS", "TEAM_WARMUP",
    "WAKE_MIN", "TeamCosts", "measure_team", "team_counts", "team_interpolated",
    # the passes
    "FIRST_PASS", "MARGIN", "PAYS_LITTLE", "POLISH_ROUNDS", "SUSPECT",
    "THIRD_PASS", "worth_timing",
    # the record beside the profile
    "load_record", "points_from_record", "save_record",
]
