"""The profile of one host (:class:`Profile`), and its conversions to and
from a host's entry in the file (the format and its validation are
:mod:`.format`'s, the writing :mod:`.files`')."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from breakeven._profile.files import default_profile_path, save_entry
from breakeven._profile.fingerprint import Fingerprint, host_fingerprint
from breakeven._profile.format import hosts_text, validate_entry, validate_host
from breakeven._profile.steps import Steps, cold_tables
from breakeven._profile.steps import threads_for as steps_threads_for


@dataclass
class Profile:
    """The calibrated thresholds of one host.

    Made by :func:`breakeven.calibrate` and :func:`breakeven.load_profile`;
    the parameters are also its attributes.

    Parameters
    ----------
    fingerprint : Fingerprint
        The host these figures were measured on: its ``cpu`` model,
        ``usable_cpus``, ``openmp`` runtime, OpenMP ``wait_policy``, ``blas``
        and ``breakeven`` version, and a short ``key`` made from them.
    tables : dict
        ``tables[kernel][dtype] = {"hot": steps, "cold": steps}``, each steps
        a tuple of ``(work_min, threads)`` pairs with ``work_min`` strictly
        increasing from 0: a call of work ``w`` uses the threads of the last
        step whose ``work_min <= w``.
    calibrated_at : str
        When the calibration ran (ISO 8601, UTC).
    sleep_after_us : float or None
        Idle time after which the OpenMP team was measured to have gone to
        sleep (the cold table applies after it).
    source : str
        Where this profile came from (a path, or ``"embedded default"``).
    batch : dict
        What spreading a batch of calls over joblib's threading backend costs
        here (:func:`breakeven.map` plans with it): ``start_s``, the fixed
        cost of one ``joblib.Parallel`` run, and ``task_s``, the cost of each
        task in it, in seconds.  Empty if not measured.
    wake : tuple
        ``((gap_us, threads, seconds), ...)``: what waking a team of that
        many threads costs after that long idle, for the gaps from the
        sleep time on; dispatch derives a cold table for each gap from the
        kernels' ``times``.  Empty if not measured (the ``cold`` tables,
        for the longest gap, then apply to every lone call).
    team_hot : dict
        ``{threads: seconds}``: what an empty parallel region of that many
        threads costs with the team awake (back to back).  Dispatch's
        estimate for a kernel without tables starts from it.
    kept : list
        ``(kernel, dtype)`` entries the last :meth:`save` kept of the file
        instead of this profile's (a quick calibration's, over a full one).
    stale_against : Fingerprint, optional
        The host this entry was loaded for, set by :func:`load_profile`: the
        libraries :attr:`stale` compares the entry's with (None: not stale).

    See Also
    --------
    load_profile : The profile dispatch uses.
    calibrate : Measure a new one.

    Examples
    --------
    >>> import breakeven
    >>> p = breakeven.load_profile()
    >>> p.threads_for("sum", "float64", 100)
    1
    >>> p.steps("no such kernel", "float64")
    ((0, 1),)
    """

    fingerprint: Fingerprint
    tables: dict[str, dict[str, dict[str, Steps]]] = field(default_factory=dict)
    calibrated_at: str = ""
    sleep_after_us: float | None = None
    source: str = "memory"
    batch: dict[str, float] = field(default_factory=dict)
    wake: tuple = ()
    team_hot: dict = field(default_factory=dict)
    # Not stored in the profile file: what a calibration measured.
    # What the last save kept of the file instead of this profile's entries.
    kept: list = field(default_factory=list, repr=False, compare=False)
    # The host now, to tell what changed since the calibration (see stale).
    stale_against: Fingerprint | None = field(default=None, repr=False,
                                              compare=False)

    @property
    def stale(self) -> list[str]:
        """What changed since the calibration, when this host's entry was
        made with other libraries: ``["numpy 2.3.0 -> 2.4.6", ...]`` (empty:
        up to date, or not a profile read for a host)."""
        now = self.stale_against
        if now is None:
            return []
        if not now.blas:  # looked up without the libraries: look them up now
            now = host_fingerprint()
        return self.fingerprint.stale(now)

    def steps(self, kernel: str, dtype: str, state: str = "hot") -> Steps:
        """The step table of a kernel and dtype.

        Parameters
        ----------
        kernel, dtype : str
            A kernel name and ``"float64"`` or ``"float32"``.
        state : {"hot", "cold"}
            The table for calls in a loop, or for lone calls.

        Returns
        -------
        tuple of (int, int)
            ``(work_min, threads)`` pairs; ``((0, 1),)`` (always serial) if
            the profile has none.
        """
        try:
            return self.tables[kernel][dtype][state]
        except KeyError:
            return ((0, 1),)

    def threads_for(self, kernel: str, dtype: str, work: int,
                    state: str = "hot") -> int:
        """Threads the table gives a call of this work (1 means serial).

        Parameters
        ----------
        kernel, dtype : str
            A kernel name and ``"float64"`` or ``"float32"``.
        work : int
            The call's work.
        state : {"hot", "cold"}
            Which table.

        Returns
        -------
        int
            Before dispatch clamps it (see :func:`breakeven.explain`).
        """
        return steps_threads_for(self.steps(kernel, dtype, state), work)

    def threshold(self, kernel: str, dtype: str, state: str = "hot") -> int | None:
        """The smallest work that goes parallel.

        Parameters
        ----------
        kernel, dtype : str
            A kernel name and ``"float64"`` or ``"float32"``.
        state : {"hot", "cold"}
            Which table.

        Returns
        -------
        int or None
            None if no work does (or the profile has no table for it).
        """
        for work_min, t in self.steps(kernel, dtype, state):
            if t > 1:
                return work_min
        return None

    def set_table(self, kernel: str, dtype: str, hot: Steps, cold: Steps,
                  times=None, cold_idle=None, method: str | None = None) -> None:
        """Set a kernel's step tables, and optionally the measured times
        ``((work, threads, seconds), ...)``: the parallel ones are what
        dispatch compares calls with to notice contention; the serial ones
        (``threads == 1``) and the parallel ones are what
        :func:`breakeven.map` estimates a batch's cost from.  ``cold_idle``:
        the cold table of each measured idle time, ``((idle_us, steps),
        ...)`` (see :meth:`cold_tables`).  ``method``: how the tables were
        made, ``"full"`` or ``"quick"`` (a calibration), or ``"learned"``
        (from a process's calls)."""
        entry = validate_entry(f"{kernel}.{dtype}", hot, cold, times, cold_idle,
                               method)
        self.tables.setdefault(kernel, {})[dtype] = entry

    def method(self, kernel: str, dtype: str) -> str | None:
        """How a kernel's tables were made (see :meth:`set_table`); None if
        it has none, ``"full"`` for tables that do not say."""
        try:
            return self.tables[kernel][dtype].get("method", "full")
        except KeyError:
            return None

    def cold_tables(self, kernel: str, dtype: str) -> list[tuple[float, Steps]]:
        """The tables of lone calls: ``[(idle_seconds, steps), ...]``,
        shortest idle first; a lone call idle at least that long uses that
        table (the first one, below the shortest).  These are what dispatch
        uses and ``breakeven show`` prints.

        Calibration stores one per measured idle time (``cold_idle``); for a
        profile without them they are derived from the kernel's times and
        the team's wake-up costs as calibration derives them
        (:func:`breakeven._profile.steps.cold_tables`), or, without those, the
        ``cold`` table for every lone call.
        """
        try:
            stored = self.tables[kernel][dtype].get("cold_idle")
        except KeyError:
            return [((self.sleep_after_us or 0) / 1e6, ((0, 1),))]
        if stored:
            return [(gap / 1e6, steps) for gap, steps in stored]
        return cold_tables(self.times(kernel, dtype), self.wake,
                           self.sleep_after_us, self.steps(kernel, dtype, "cold"))

    def times(self, kernel: str, dtype: str, parallel_only: bool = False) -> tuple:
        """The calibrated ``(work, threads, seconds)`` of calls (serial ones
        have ``threads == 1``; ``parallel_only`` leaves them out)."""
        try:
            rows = self.tables[kernel][dtype].get("times", ())
        except KeyError:
            return ()
        return tuple(r for r in rows if r[1] > 1) if parallel_only else rows

    def save(self, path: str | os.PathLike | None = None, *,
             replace: bool = False) -> Path:
        """Write this profile into the file at ``path`` (default: see
        :func:`default_profile_path`), keeping other hosts' entries, and the
        tables of this host's entry for kernels and dtypes this profile does
        not have (a calibration of some kernels keeps the others').

        An entry of a quick calibration (``method == "quick"``) does not
        replace one of a full calibration unless ``replace`` is true, and a
        learned one (``"learned"``) never replaces a calibration; the
        entries kept so are listed in :attr:`kept` afterwards.

        The write is atomic and serialised with other writers by a lock file
        beside the profile.  Returns the path written.
        """
        target = Path(path) if path is not None else default_profile_path()
        self.kept = save_entry(target, self.fingerprint.key, host_entry(self),
                               replace)
        self.source = str(target)
        return target


def host_from_entry(key: str, data, where: str) -> Profile:
    """The profile of a host's entry in a file (its ``key`` and table),
    validated; ``where`` names the entry in errors."""
    return Profile(**validate_host(key, data, where))


def host_entry(p: Profile) -> dict:
    """The data of a profile's entry in a file (what :func:`hosts_text`
    writes under its key)."""
    d: dict = {"calibrated_at": p.calibrated_at}
    if p.sleep_after_us is not None:
        d["sleep_after_us"] = float(p.sleep_after_us)
    d["fingerprint"] = p.fingerprint.as_dict()
    if p.batch:
        d["batch"] = dict(p.batch)
    if p.wake:
        d["wake"] = [list(r) for r in p.wake]
    if p.team_hot:
        d["team_hot"] = [[t, s] for t, s in sorted(p.team_hot.items())]
    d["kernels"] = {k: {dt: {s: v if isinstance(v, str) else [list(r) for r in v]
                             for s, v in states.items()}
                        for dt, states in per.items()}
                    for k, per in p.tables.items()}
    return d


def dumps(profiles: list[Profile]) -> str:
    """The TOML text of a file holding these profiles."""
    return hosts_text({p.fingerprint.key: host_entry(p) for p in profiles})


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
