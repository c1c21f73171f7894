"""What a calibration returns: a :class:`Calibration`, the profile it
measured with the run's report, and the raw record of that report kept
beside the profile file (``profile.toml.sweeps.json``) for
``breakeven plot`` and ``breakeven check``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from breakeven._calibrate.team import TeamCosts
from breakeven._profile import Fingerprint, Profile, atomic_write, locked, now_utc
from breakeven._profile.steps import Point, choose_steps, cold_tables, with_penalty

__all__ = ["Calibration", "load_record", "points_from_record", "record",
           "save_record", "sweeps_path"]


@dataclass
class Calibration(Profile):
    """A profile just calibrated, and what the run measured.

    What the run measured is this record's, not :class:`Profile`'s, and is
    not stored in the profile file (the points go to
    its sidecar record, :func:`save_record`): ``sweeps``, the points of
    each ``(kernel, dtype)``; ``team_penalty``, the OpenMP team's wake-up
    penalty per thread count; ``elapsed``, the run's seconds;
    ``busy_retries``, how many sizes it measured again because another
    process was on the cores; and ``looked_thrice``, the sweeps it measured
    a third time for that reason.
    """

    sweeps: dict[tuple[str, str], list[Point]] = field(
        default_factory=dict, repr=False, compare=False)
    team_penalty: dict[int, float] = field(default_factory=dict, repr=False,
                                           compare=False)
    elapsed: float | None = field(default=None, repr=False, compare=False)
    busy_retries: int = field(default=0, repr=False, compare=False)
    looked_thrice: list[str] = field(default_factory=list, repr=False,
                                     compare=False)

    @classmethod
    def started(cls, fingerprint: Fingerprint, team: TeamCosts) -> Calibration:
        """An empty calibration, now, of a host whose team costs ``team``."""
        return cls(fingerprint, calibrated_at=now_utc(),
                   sleep_after_us=team.sleep_after_us, wake=tuple(team.wake),
                   team_hot=dict(team.hot), team_penalty=team.penalty)

    def add_sweep(self, kernel: str, dtype: str, points: Sequence[Point],
                  margin: float, method: str) -> None:
        """Keep a sweep's points and set the tables chosen from them: hot,
        cold (with the team's wake-up penalty), and one cold table per
        measured idle time; the times measured too, as dispatch's yardstick
        for contention and the estimates of :func:`breakeven.map`."""
        hot = choose_steps(points, margin)
        cold = choose_steps(with_penalty(points, self.team_penalty), margin)
        times = tuple((p.work, t, p.times[t]) for p in points
                      for t in sorted(p.times) if p.times[t] > 0)
        idle = cold_tables(times, self.wake, self.sleep_after_us, cold, margin)
        self.set_table(kernel, dtype, hot, cold, times,
                       [(gap * 1e6, steps) for gap, steps in idle], method)
        self.sweeps[(kernel, dtype)] = points


def sweeps_path(profile_path) -> Path:
    """The record beside a profile file."""
    p = Path(profile_path)
    return p.with_name(p.name + ".sweeps.json")


def record(calibration: Calibration) -> dict:
    """A JSON-able record of what the calibration measured."""
    return {
        "fingerprint": calibration.fingerprint.as_dict(),
        "calibrated_at": calibration.calibrated_at,
        "sleep_after_us": calibration.sleep_after_us,
        "team_penalty_s": {str(t): s for t, s in calibration.team_penalty.items()},
        "elapsed_s": calibration.elapsed,
        "busy_retries": calibration.busy_retries,
        "looked_thrice": list(calibration.looked_thrice),
        "sweeps": {f"{k}/{d}": [[p.work, {str(t): s for t, s in p.times.items()}]
                                for p in pts]
                   for (k, d), pts in calibration.sweeps.items()},
    }


def save_record(calibration: Calibration, profile_path) -> Path:
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
        data[calibration.fingerprint.key] = record(calibration)
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
    """The points of each ``(kernel, dtype)`` in a record."""
    out = {}
    for name, pts in rec.get("sweeps", {}).items():
        k, d = name.split("/", 1)
        out[(k, d)] = [Point(int(w), {int(t): float(s) for t, s in times.items()})
                       for w, times in pts]
    return out
