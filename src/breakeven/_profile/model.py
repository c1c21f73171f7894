"""The profile of one host (:class:`Profile`), and its conversions to and
from the file's data: parsing a file's text, and its text."""

from __future__ import annotations

import contextlib
import datetime
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from breakeven._core.engine import DTYPES
from breakeven._profile.files import atomic_write, default_profile_path, locked
from breakeven._profile.fingerprint import Fingerprint, host_fingerprint, legacy_key
from breakeven._profile.format import (
    ENTRY_KEYS,
    FORMAT_VERSION,
    KERNEL_NAME,
    METHODS,
    READS,
    ProfileError,
    hosts_text,
    validate_batch,
    validate_cold_idle,
    validate_steps,
    validate_team_hot,
    validate_times,
    validate_wake,
)
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
        entry = {"hot": validate_steps(hot, f"{kernel}.{dtype}.hot"),
                 "cold": validate_steps(cold, f"{kernel}.{dtype}.cold")}
        if times:
            entry["times"] = validate_times(times, f"{kernel}.{dtype}.times")
        if cold_idle:
            entry["cold_idle"] = validate_cold_idle(
                cold_idle, f"{kernel}.{dtype}.cold_idle")
        if method is not None:
            if method not in METHODS:
                raise ProfileError(f"{kernel}.{dtype}.method: one of "
                                   f"{', '.join(METHODS)}, got {method!r}")
            entry["method"] = method
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
        self.kept = []
        target = Path(path) if path is not None else default_profile_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        with locked(target):
            hosts: dict[str, dict] = {}
            if target.exists():
                try:
                    hosts = parse_hosts(target.read_text(), target)
                except (ProfileError, OSError, UnicodeDecodeError):
                    # Never destroy what we cannot read: keep it aside.
                    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                    with contextlib.suppress(OSError):
                        os.replace(target, target.with_name(
                            f"{target.name}.unreadable-{stamp}"))
                    hosts = {}
            entry = host_entry(self)
            old = hosts.get(self.fingerprint.key)
            if isinstance(old, dict):
                # a partial calibration (--kernels, --dtypes) keeps the
                # tables it did not measure, and a quick one the full ones
                for kname, per in old.get("kernels", {}).items():
                    for dname, states in per.items():
                        mine = entry["kernels"].setdefault(kname, {})
                        new_entry = mine.get(dname)
                        old_method = states.get("method", "full")
                        if new_entry is None:
                            mine[dname] = states
                        elif (new_entry.get("method") == "learned"
                              and old_method in ("full", "quick")) or (
                                not replace and new_entry.get("method") == "quick"
                                and old_method == "full"):
                            # learned tables never replace a calibration
                            mine[dname] = states
                            self.kept.append((kname, dname))
                if "batch" in old and "batch" not in entry:
                    entry["batch"] = old["batch"]
            hosts[self.fingerprint.key] = entry
            atomic_write(target, hosts_text(hosts))
        self.source = str(target)
        return target


def host_from_entry(key: str, data, where: str) -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a table")
    fp = data.get("fingerprint")
    if not isinstance(fp, dict):
        raise ProfileError(f"{where}: missing [fingerprint] table")
    types = {"cpu": str, "usable_cpus": int, "openmp": str, "wait_policy": str,
             "blas": str, "breakeven": str, "spin": str, "numpy": str}
    for name, typ in types.items():
        if not isinstance(fp.get(name), typ) or isinstance(fp.get(name), bool):
            raise ProfileError(f"{where}.fingerprint.{name}: expected {typ.__name__}, "
                               f"got {fp.get(name)!r}")
    fingerprint = Fingerprint(**{k: fp[k] for k in types})
    sleep = data.get("sleep_after_us")
    if sleep is not None and (not isinstance(sleep, (int, float))
                              or isinstance(sleep, bool) or sleep < 0):
        raise ProfileError(f"{where}.sleep_after_us: expected a non-negative number")
    when = data.get("calibrated_at", "")
    if not isinstance(when, str):
        raise ProfileError(f"{where}.calibrated_at: expected a string")
    kernels = data.get("kernels", {})
    if not isinstance(kernels, dict):
        raise ProfileError(f"{where}.kernels: expected a table")
    profile = Profile(fingerprint, {}, when, None if sleep is None else float(sleep))
    profile.batch = validate_batch(data.get("batch", {}), f"{where}.batch")
    profile.wake = validate_wake(data.get("wake", []), f"{where}.wake")
    profile.team_hot = validate_team_hot(data.get("team_hot", []),
                                          f"{where}.team_hot")
    for kname, per_dtype in kernels.items():
        # A kernel of a library this process has not imported is kept (and
        # saved again) all the same; dispatch uses the entries of the
        # kernels registered, when they are.
        if not isinstance(kname, str) or not KERNEL_NAME.match(kname):
            raise ProfileError(f"{where}.kernels: {kname!r} is not a kernel name")
        if not isinstance(per_dtype, dict):
            raise ProfileError(f"{where}.kernels.{kname}: expected a table")
        for dname, states in per_dtype.items():
            if dname not in DTYPES:
                raise ProfileError(f"{where}.kernels.{kname}: unknown dtype {dname!r}")
            if not isinstance(states, dict) or not {"hot", "cold"} <= set(states) \
                    or not set(states) <= ENTRY_KEYS:
                raise ProfileError(f"{where}.kernels.{kname}.{dname}: expected "
                                   "'hot' and 'cold' step tables (and 'times', "
                                   "'cold_idle')")
            profile.set_table(kname, dname, states["hot"], states["cold"],
                              states.get("times"), states.get("cold_idle"),
                              states.get("method"))
    if key != fingerprint.key:
        raise ProfileError(f"{where}: the key does not match its fingerprint "
                           "(edited by hand?)")
    return profile


def parse_hosts(text: str, path: Path | str, notes: list | None = None
           ) -> dict[str, dict]:
    """Parse and validate a profile file; returns its raw host tables, in
    the current format.  A file of an older format this version reads is
    converted (``notes`` receives a sentence saying so)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"not valid TOML ({exc})") from None
    fmt = data.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise ProfileError("missing or non-integer 'format' version")
    if fmt not in READS:
        raise ProfileError(f"format version {fmt} is not supported (this breakeven "
                           f"reads versions {', '.join(map(str, READS))})")
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ProfileError("'hosts' must be a table")
    if fmt == 1:
        hosts = from_format_1(hosts)
        if notes is not None and hosts:
            notes.append(f"it is of format 1, read as format {FORMAT_VERSION} "
                         "(a BLAS or breakeven upgrade now leaves a calibration "
                         "in use, marked stale); the next save writes format "
                         f"{FORMAT_VERSION}")
    for key, host in hosts.items():
        host_from_entry(key, host, f"hosts.{key}")
    return hosts


def from_format_1(hosts: dict) -> dict:
    """Format 1's hosts: keyed by a hash of every fingerprint field, and
    without the spin settings and NumPy's version.  Re-keyed by the host's
    fields (the key check of format 1 kept)."""
    out = {}
    for key, data in hosts.items():
        fp = data.get("fingerprint") if isinstance(data, dict) else None
        if not isinstance(fp, dict):
            out[key] = data  # the validation says what is wrong
            continue
        fp = {**fp, "spin": fp.get("spin", "default"), "numpy": fp.get("numpy", "")}
        try:
            legacy = legacy_key(fp)
        except (KeyError, TypeError):
            out[key] = data
            continue
        if key != legacy:
            raise ProfileError(f"hosts.{key}: the key does not match its "
                               "fingerprint (edited by hand?)")
        data = {**data, "fingerprint": fp}
        try:
            new_key = Fingerprint(**fp).key
        except TypeError:
            out[key] = data
            continue
        out[new_key] = data
    return out


def host_entry(p: Profile) -> dict:
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
