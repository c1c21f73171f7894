"""Profiles: the calibrated thresholds of a host, stored as TOML.

A profile file holds the profiles of one or more hosts, each under the key of
its fingerprint (CPU model, usable CPUs, OpenMP runtime and wait policy, BLAS,
breakeven version), so that one file in a home directory shared by a cluster
serves every kind of node.  For each kernel and dtype a host has two step
tables, ``[[work_min, threads], ...]``: ``hot`` for calls that find the OpenMP
team spinning (back to back) and ``cold`` for calls after the team has gone
to sleep.

Loading never raises: a missing file means the embedded default, silently; a
file that cannot be used (corrupt, ill-typed, another format version, no
entry for this host) gives one warning naming the file and the reason, and
the embedded default.  Saving is atomic (a temporary file in the same
directory, then ``os.replace``) under an exclusive lock, and keeps the other
hosts' entries.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import threading
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breakeven._core.engine import DTYPES
from breakeven._core.openmp import OPENMP_RUNTIME, usable_cpus
from breakeven._interop.blas import blas_libraries
from breakeven._profile.steps import Steps, cold_tables
from breakeven._profile.steps import threads_for as steps_threads_for
from breakeven._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "Fingerprint",
    "Profile",
    "ProfileError",
    "ProfileWarning",
    "default_profile_path",
    "embedded_profile",
    "host_fingerprint",
    "load_profile",
]

FORMAT_VERSION = 2
# The versions this one reads: 1 is converted (Fingerprint: key of the host's
# fields only; spin settings and NumPy's version added).
READS = (1, 2)
# The dtypes a profile holds tables for: those the dispatch core keeps.
# A kernel's name: a built-in's short name, or name-spaced ("mylib.relu").
KERNEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# The built-ins' defaults: their tables on breakeven's reference hosts.  A
# plain path: the package holds compiled extensions, so it is always
# installed as files (importlib.resources would cost milliseconds of import).
EMBEDDED_DEFAULT = Path(__file__).parent.parent / "data" / "default_profile.toml"
# What a kernel's entry for one dtype may hold (see Profile.set_table).
ENTRY_KEYS = frozenset({"hot", "cold", "cold_idle", "times", "method"})
# How an entry's tables were made (Profile.set_table).
METHODS = ("full", "quick", "learned")


class ProfileError(ValueError):
    """A profile file that cannot be used, and why."""


class ProfileWarning(UserWarning):
    """A profile file was ignored; dispatch uses the embedded default.

    Issued once per file and reason, by :func:`breakeven.load_profile` and so
    at a process's first dispatched call; the message names the file and
    says why (not TOML, ill-typed, another format version, no entry for this
    host).  A kernel this process has not registered is not a reason: its
    entry is kept for the processes that do.

    See Also
    --------
    load_profile

    Examples
    --------
    Turn it into an error where a calibrated profile is required:

    >>> import warnings, breakeven
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", breakeven.ProfileWarning)
    ...     profile = breakeven.load_profile()
    """


# ---------------------------------------------------------------------------
# fingerprint
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What a calibration's figures depend on.

    Two kinds of field.  The host's own (``cpu``, ``usable_cpus``,
    ``openmp`` runtime, its ``wait_policy`` and ``spin`` settings) decide
    what a parallel region costs: a calibration of another is not this
    host's, and :attr:`key`, which finds a host's entry in a profile file,
    is made of them alone.  The libraries' (``blas``, ``numpy``,
    ``breakeven`` versions) may move a threshold a little: a calibration
    made with others is still used, and called stale (:meth:`stale`), so
    that an upgrade does not silently turn a calibrated host into an
    uncalibrated one.
    """

    cpu: str
    usable_cpus: int
    openmp: str
    wait_policy: str
    blas: str
    breakeven: str
    spin: str = "default"
    numpy: str = ""

    HOST = ("cpu", "usable_cpus", "openmp", "wait_policy", "spin")
    LIBRARIES = ("blas", "numpy", "breakeven")

    @property
    def key(self) -> str:
        """A short stable identifier of the host's fields."""
        d = self.as_dict()
        text = json.dumps({k: d[k] for k in self.HOST}, sort_keys=True)
        return _digest(text)

    def as_dict(self) -> dict:
        return {"cpu": self.cpu, "usable_cpus": self.usable_cpus,
                "openmp": self.openmp, "wait_policy": self.wait_policy,
                "spin": self.spin, "blas": self.blas, "numpy": self.numpy,
                "breakeven": self.breakeven}

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable fields in which ``other`` differs from this one."""
        a, b = self.as_dict(), other.as_dict()
        return [f"{k} {b[k]!r} (this host: {a[k]!r})" for k in a if a[k] != b[k]]

    def stale(self, now: Fingerprint) -> list[str]:
        """The libraries that changed since a calibration with this
        fingerprint, ``now`` being the host's: ``["numpy 2.3.0 -> 2.4.6",
        ...]`` (empty: not stale)."""
        a, b = self.as_dict(), now.as_dict()
        return [f"{k} {a[k] or 'unknown'} -> {b[k] or 'unknown'}"
                for k in self.LIBRARIES if a[k] != b[k]]


def _digest(text: str) -> str:
    import hashlib  # milliseconds of import: only when a key is computed
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _legacy_key(fp: dict) -> str:
    """The key of a host in a profile of format 1: of every field it had."""
    old = ("cpu", "usable_cpus", "openmp", "wait_policy", "blas", "breakeven")
    text = json.dumps({k: fp[k] for k in old}, sort_keys=True)
    return _digest(text)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _blas_info() -> str:
    """The BLAS libraries as threadpoolctl sees them."""
    # Only a fingerprint with the libraries' versions needs them: the host
    # key does not, so a process that only dispatches pays for no scan.
    blas = [f"{lib.get('internal_api')} {lib.get('version')} "
            f"{lib.get('architecture')} {lib.get('threading_layer')}"
            for lib in blas_libraries()]
    return "; ".join(sorted(set(blas))) or "none"


_fingerprint_cache: dict[bool, Fingerprint] = {}
# Reentrant: the full fingerprint scans the libraries through threadpoolctl,
# which asks breakeven's controller for the profile, which needs the key.
_fingerprint_lock = threading.RLock()


# The OpenMP runtimes' settings of how long idle threads spin before they
# sleep: they change what waking the team costs (libgomp, LLVM/Intel).
SPIN_VARIABLES = ("GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _spin_settings() -> str:
    set_ = [f"{v}={os.environ[v]}" for v in SPIN_VARIABLES if v in os.environ]
    return ";".join(set_) or "default"


def host_fingerprint(refresh: bool = False, *, libraries: bool = True
                     ) -> Fingerprint:
    """This host's fingerprint (cached; ``refresh=True`` recomputes it).

    ``libraries=False`` leaves the BLAS libraries out (``blas == ""``): the
    key, which finds the host's entry, does not depend on them, and looking
    them up imports threadpoolctl and SciPy.
    """
    with _fingerprint_lock:
        if refresh:
            _fingerprint_cache.clear()
        fp = _fingerprint_cache.get(libraries)
        if fp is None:

            fp = Fingerprint(
                cpu=_cpu_model(),
                usable_cpus=usable_cpus(),
                openmp=OPENMP_RUNTIME,
                wait_policy=os.environ.get("OMP_WAIT_POLICY", "default").lower(),
                blas=_blas_info() if libraries else "",
                breakeven=__version__,
                spin=_spin_settings(),
                numpy=np.__version__,
            )
            _fingerprint_cache[libraries] = fp
        return fp


# ---------------------------------------------------------------------------
# the profile of one host
# ---------------------------------------------------------------------------


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
    sweeps, team_penalty, elapsed, busy_retries, looked_thrice
        What a calibration measured (its points, the OpenMP team's wake-up
        penalty per thread count, its duration in seconds, how many sizes it
        measured again because another process was on the cores, and the
        sweeps it measured a third time for that reason);
        not stored in the profile file (the points go to
        ``profile.toml.sweeps.json``).
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
    sweeps: dict = field(default_factory=dict, repr=False, compare=False)
    team_penalty: dict = field(default_factory=dict, repr=False, compare=False)
    elapsed: float | None = field(default=None, repr=False, compare=False)
    busy_retries: int = field(default=0, repr=False, compare=False)
    looked_thrice: list = field(default_factory=list, repr=False, compare=False)
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
        entry = {"hot": _validate_steps(hot, f"{kernel}.{dtype}.hot"),
                 "cold": _validate_steps(cold, f"{kernel}.{dtype}.cold")}
        if times:
            entry["times"] = _validate_times(times, f"{kernel}.{dtype}.times")
        if cold_idle:
            entry["cold_idle"] = _validate_cold_idle(
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
                    hosts = _parse(target.read_text(), target)
                except (ProfileError, OSError, UnicodeDecodeError):
                    # Never destroy what we cannot read: keep it aside.
                    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                    with contextlib.suppress(OSError):
                        os.replace(target, target.with_name(
                            f"{target.name}.unreadable-{stamp}"))
                    hosts = {}
            entry = _host_to_dict(self)
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
            atomic_write(target, _dumps(hosts))
        self.source = str(target)
        return target


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _validate_steps(steps, where: str) -> Steps:
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ProfileError(f"{where}: expected a non-empty list of [work_min, threads]")
    out = []
    for i, step in enumerate(steps):
        if (not isinstance(step, (list, tuple)) or len(step) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           for v in step)):
            raise ProfileError(f"{where}[{i}]: expected [work_min, threads] integers, "
                               f"got {step!r}")
        work_min, threads = step
        if work_min < 0:
            raise ProfileError(f"{where}[{i}]: negative work_min {work_min}")
        if threads < 1:
            raise ProfileError(f"{where}[{i}]: threads {threads} < 1")
        if out and work_min <= out[-1][0]:
            raise ProfileError(f"{where}: work_min not increasing at step {i} "
                               f"({out[-1][0]} then {work_min})")
        out.append((work_min, threads))
    if out[0][0] != 0:
        raise ProfileError(f"{where}: the first step must start at work 0, "
                           f"got {out[0][0]}")
    return tuple(out)


def _validate_cold_idle(rows, where: str) -> tuple:
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ProfileError(f"{where}: expected a non-empty list of "
                           "[idle_us, steps]")
    out = []
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2
                or isinstance(row[0], bool) or not isinstance(row[0], (int, float))
                or not row[0] >= 0):
            raise ProfileError(f"{where}[{i}]: expected [idle_us, steps] with "
                               f"idle_us >= 0, got {row!r}")
        if out and row[0] <= out[-1][0]:
            raise ProfileError(f"{where}: idle_us not increasing at {i}")
        out.append((float(row[0]), _validate_steps(row[1], f"{where}[{i}]")))
    return tuple(out)


def _validate_times(times, where: str) -> tuple:
    if not isinstance(times, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [work, threads, seconds]")
    out = []
    for i, row in enumerate(times):
        if (not isinstance(row, (list, tuple)) or len(row) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           for v in row[:2])
                or not isinstance(row[2], (int, float)) or isinstance(row[2], bool)):
            raise ProfileError(f"{where}[{i}]: expected [work, threads, seconds], "
                               f"got {row!r}")
        if row[0] < 1 or row[1] < 1 or not row[2] > 0:
            raise ProfileError(f"{where}[{i}]: work >= 1, threads >= 1 and "
                               f"seconds > 0 expected, got {row!r}")
        out.append((int(row[0]), int(row[1]), float(row[2])))
    return tuple(out)


BATCH_FIELDS = ("start_s", "task_s")


def _validate_batch(batch, where: str) -> dict[str, float]:
    if not isinstance(batch, dict):
        raise ProfileError(f"{where}: expected a table")
    out = {}
    for name, value in batch.items():
        if name not in BATCH_FIELDS:
            raise ProfileError(f"{where}: unknown field {name!r} (known: "
                               f"{', '.join(BATCH_FIELDS)})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not 0 <= value < 10:
            raise ProfileError(f"{where}.{name}: expected seconds in [0, 10), "
                               f"got {value!r}")
        out[name] = float(value)
    return out


def _validate_team_hot(rows, where: str) -> dict[int, float]:
    if not isinstance(rows, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [threads, seconds]")
    out = {}
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2
                or isinstance(row[0], bool) or not isinstance(row[0], int)
                or isinstance(row[1], bool) or not isinstance(row[1], (int, float))
                or not row[0] >= 2 or not 0 <= row[1] < 1):
            raise ProfileError(f"{where}[{i}]: expected [threads >= 2, seconds in "
                               f"[0, 1)], got {row!r}")
        out[int(row[0])] = float(row[1])
    return out


def _validate_wake(rows, where: str) -> tuple:
    if not isinstance(rows, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [gap_us, threads, seconds]")
    out = []
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 3
                or any(isinstance(v, bool) or not isinstance(v, (int, float))
                       for v in row) or not isinstance(row[1], int)):
            raise ProfileError(f"{where}[{i}]: expected [gap_us, threads, seconds], "
                               f"got {row!r}")
        if not (row[0] > 0 and row[1] >= 2 and row[2] >= 0):
            raise ProfileError(f"{where}[{i}]: gap_us > 0, threads >= 2 and "
                               f"seconds >= 0 expected, got {row!r}")
        out.append((float(row[0]), int(row[1]), float(row[2])))
    return tuple(sorted(out))


def _host_from_dict(key: str, data, where: str) -> Profile:
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
    profile.batch = _validate_batch(data.get("batch", {}), f"{where}.batch")
    profile.wake = _validate_wake(data.get("wake", []), f"{where}.wake")
    profile.team_hot = _validate_team_hot(data.get("team_hot", []),
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


def _parse(text: str, path: Path | str, notes: list | None = None
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
        hosts = _from_format_1(hosts)
        if notes is not None and hosts:
            notes.append(f"it is of format 1, read as format {FORMAT_VERSION} "
                         "(a BLAS or breakeven upgrade now leaves a calibration "
                         "in use, marked stale); the next save writes format "
                         f"{FORMAT_VERSION}")
    for key, host in hosts.items():
        _host_from_dict(key, host, f"hosts.{key}")
    return hosts


def _from_format_1(hosts: dict) -> dict:
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
            legacy = _legacy_key(fp)
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


# ---------------------------------------------------------------------------
# TOML output (the format is small and fixed; no writer dependency needed)
# ---------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)  # a valid TOML basic string


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _host_to_dict(p: Profile) -> dict:
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


def _dumps(hosts: dict[str, dict]) -> str:
    lines = ["# breakeven profile: calibrated serial/parallel thresholds.",
             "# Written by `breakeven calibrate`; one [hosts.<key>] per host.",
             f"format = {FORMAT_VERSION}", ""]
    for key in sorted(hosts):
        host = hosts[key]
        lines.append(f"[hosts.{_toml_str(key)}]")
        for name in ("calibrated_at", "sleep_after_us", "wake", "team_hot"):
            if name in host:
                lines.append(f"{name} = {_toml_value(host[name])}")
        lines.append("")
        lines.append(f"[hosts.{_toml_str(key)}.fingerprint]")
        for name, value in host["fingerprint"].items():
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
        if host.get("batch"):
            lines.append(f"[hosts.{_toml_str(key)}.batch]")
            for name, value in host["batch"].items():
                lines.append(f"{name} = {_toml_value(value)}")
            lines.append("")
        for kname in sorted(host.get("kernels", {})):
            for dname in sorted(host["kernels"][kname]):
                states = host["kernels"][kname][dname]
                lines.append(f"[hosts.{_toml_str(key)}.kernels.{_toml_str(kname)}."
                             f"{dname}]")
                for state in ("method", "hot", "cold", "cold_idle", "times"):
                    if state in states:
                        lines.append(f"{state} = {_toml_value(states[state])}")
                lines.append("")
    return "\n".join(lines)


def dumps(profiles: list[Profile]) -> str:
    """The TOML text of a file holding these profiles."""
    return _dumps({p.fingerprint.key: _host_to_dict(p) for p in profiles})


def _hold(lock, held: bool) -> None:
    """Take (``held=True``, blocking) or release the exclusive lock of an
    open lock file: the one place that knows how each OS locks a file."""
    if os.name == "nt":
        import msvcrt
        lock.seek(0)  # both calls lock the file's first byte
        if not held:
            msvcrt.locking(lock.fileno(), msvcrt.LK_UNLCK, 1)
            return
        while True:  # LK_LOCK gives up after ten seconds: wait on
            try:
                msvcrt.locking(lock.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue
    import fcntl
    fcntl.flock(lock, fcntl.LOCK_EX if held else fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(target: Path):
    """Hold the lock of ``target`` (its ``.lock`` file beside it) between
    processes, on any OS."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a+") as lock:
        _hold(lock, True)
        try:
            yield
        finally:
            _hold(lock, False)


def atomic_write(target: Path, text: str) -> None:
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode the file
        # had, or the one a plain open() would have given.
        try:
            mode = os.stat(target).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dirfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------




def default_profile_path() -> Path:
    """``$BREAKEVEN_PROFILE`` if set, else ``profile.toml`` in the user's
    config directory (platformdirs)."""
    env = os.environ.get("BREAKEVEN_PROFILE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir  # only when a file is looked for

    return Path(user_config_dir("breakeven")) / "profile.toml"


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(path: Path | str, reason: str) -> None:
    with _warned_lock:
        if (str(path), reason) in _warned:
            return
        _warned.add((str(path), reason))
    warnings.warn(f"breakeven: ignoring profile {path}: {reason}; "
                  "using the embedded default profile", ProfileWarning, stacklevel=3)


def forget_warnings() -> None:
    """Warn again about files already warned about (a new process would)."""
    with _warned_lock:
        _warned.clear()


def _note_once(path: Path | str, sentence: str) -> None:
    """A profile used, with something to say about it (once per file)."""
    with _warned_lock:
        if (str(path), sentence) in _warned:
            return
        _warned.add((str(path), sentence))
    warnings.warn(f"breakeven: profile {path}: {sentence}", ProfileWarning,
                  stacklevel=3)


def _pick_host(hosts: dict[str, dict], fingerprint: Fingerprint) -> Profile | None:
    if fingerprint.key in hosts:
        p = _host_from_dict(fingerprint.key, hosts[fingerprint.key],
                            f"hosts.{fingerprint.key}")
        p.stale_against = fingerprint
        return p
    return None


def similar_host(profiles: list[Profile], fingerprint: Fingerprint) -> Profile | None:
    """The entry a host without a calibration of its own borrows from a set
    of reference hosts (an embedded or a library's default): its own, else
    one of the same CPU model and CPU count, else of the same CPU count,
    else the first; None if there is none."""
    if not profiles:
        return None
    for same in (lambda p: p.fingerprint.key == fingerprint.key,
                 lambda p: (p.fingerprint.cpu, p.fingerprint.usable_cpus)
                 == (fingerprint.cpu, fingerprint.usable_cpus),
                 lambda p: p.fingerprint.usable_cpus == fingerprint.usable_cpus):
        chosen = next((p for p in profiles if same(p)), None)
        if chosen is not None:
            return chosen
    return profiles[0]


def read_defaults(source, fingerprint: Fingerprint | None = None,
                  name: str = "default") -> Profile | None:
    """A default profile file (the embedded one, or a library's): the entry
    for this host or a similar one (:func:`similar_host`), its ``source``
    naming the file; None if it has none.  Raises ProfileError or OSError
    if the file cannot be used."""
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
    text = source.read_text()
    hosts = _parse(text, str(source))
    chosen = similar_host([_host_from_dict(k, h, f"hosts.{k}")
                           for k, h in sorted(hosts.items())], fingerprint)
    if chosen is not None:
        chosen.source = name
        chosen.stale_against = fingerprint
    return chosen


def embedded_profile(fingerprint: Fingerprint | None = None) -> Profile:
    """The default profile shipped in the package.

    It holds the calibrations of reference hosts (see ``calibration/`` in
    the source tree); this host gets the entry of a similar host
    (:func:`similar_host`).  Its fingerprint stays the reference host's.
    """
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    try:
        chosen = read_defaults(EMBEDDED_DEFAULT, fingerprint, "embedded default")
    except (OSError, ProfileError) as exc:  # a broken install: stay serial
        warnings.warn(f"breakeven: the embedded default profile is unusable ({exc}); "
                      "every call runs serially", ProfileWarning, stacklevel=2)
        chosen = None
    if chosen is None:
        return Profile(fingerprint, {}, "", None, "embedded default (empty)")
    return chosen


def load_profile(path: str | os.PathLike | None = None, *,
                 fingerprint: Fingerprint | None = None) -> Profile:
    """The profile for this host.

    Parameters
    ----------
    path : path-like, optional
        The profile file; default :func:`default_profile_path`.
    fingerprint : Fingerprint, optional
        The host to look up (default: this host).

    Returns
    -------
    Profile
        This host's entry from the file; or the embedded default when the
        file does not exist (silently) or cannot be used (with one
        :class:`ProfileWarning` naming the file and the reason).  Never raises
        because of the file's contents.

    See Also
    --------
    Profile.save : Write a profile into the file.
    calibrate : Measure this host.

    Notes
    -----
    The default file is ``$BREAKEVEN_PROFILE`` if set, else ``profile.toml``
    in the user configuration directory (``~/.config/breakeven/`` on Linux).
    Dispatch loads it once, at the process's first dispatched call.

    Examples
    --------
    >>> import breakeven
    >>> p = breakeven.load_profile("/nonexistent/profile.toml")
    >>> p.source
    'embedded default'
    >>> p.threshold("sum", "float64", "hot") > 0
    True
    """
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    target = Path(path) if path is not None else default_profile_path()
    try:
        if not target.exists():
            return embedded_profile(fingerprint)
        if target.is_dir():
            raise ProfileError("it is a directory")
        try:
            text = target.read_text()
        except PermissionError:
            raise ProfileError("permission denied") from None
        except UnicodeDecodeError:
            raise ProfileError("not a text file") from None
        notes: list[str] = []
        hosts = _parse(text, target, notes)
        for note in notes:
            _note_once(target, note)
        profile = _pick_host(hosts, fingerprint)
        if profile is None:
            others = [_host_from_dict(k, h, f"hosts.{k}") for k, h in hosts.items()]
            detail = ""
            if others:
                diffs = others[0].fingerprint.differences(fingerprint)
                detail = " (nearest entry differs in " + "; ".join(diffs[:3]) + ")"
            raise ProfileError(f"it holds no calibration for this host among "
                               f"{len(hosts)} host(s){detail}; run "
                               "`breakeven calibrate`")
        profile.source = str(target)
        return profile
    except ProfileError as exc:
        _warn_once(target, str(exc))
    except OSError as exc:
        _warn_once(target, f"cannot be read ({exc.strerror or exc})")
    return embedded_profile(fingerprint)


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
