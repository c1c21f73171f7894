"""The host's core budget: processes of one user on one set of CPUs share it.

Each process that dispatches maps one small file of shared memory, named
after the user and the CPUs it may use (its affinity and its cgroup quota),
mode 0600, in the user's runtime directory (``$XDG_RUNTIME_DIR``, else
``/dev/shm``, else the temporary directory).  Its layout, and everything done
to it while calls run, is the core's (``host.h``); this module finds the
file, makes it if it is missing, checks who owns it, maps it and hands it to
the core.  The process joins at its first dispatched call, leaves at exit;
a forked child takes a slot of its own (in the core).

``BREAKEVEN_HOST_BUDGET=0`` (or ``off``) in the environment, or
:func:`use_host_budget` ``(False)``, keeps the budget per process;
``BREAKEVEN_HOST_BUDGET_DIR`` puts the files elsewhere (the test suite keeps
its own there).  A file that cannot be used (another user's, not a budget,
of another version) gives one warning naming it, and the process keeps its
own budget.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import mmap
import os
import stat
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from breakeven._core import engine
from breakeven._cpu import cgroup_cpu_limit, usable_cpus

__all__ = ["HostBudget", "HostProcess", "host_budget", "use_host_budget"]

SWITCH = "BREAKEVEN_HOST_BUDGET"
FOLDER = "BREAKEVEN_HOST_BUDGET_DIR"
_OFF = ("0", "off", "no", "false")

_lock = threading.RLock()
_state: dict = {"wanted": None, "reason": "not joined yet: no call has needed cores",
                "path": None, "suspended": 0}
_warned: set[tuple[str, str]] = set()


class HostBudgetWarning(RuntimeWarning):
    """The host's core budget cannot be used: the process keeps its own."""


@dataclass(frozen=True)
class HostProcess:
    """A process in the host's budget (see :func:`host_budget`).

    Parameters
    ----------
    pid : int
        Its process id.
    held : int
        Cores its calls run on now.
    lent : int
        Cores its idle OpenMP team still spins on: its own next calls take
        them first, other processes once the team has gone to sleep.
    peak : int
        The most cores it held at once.
    calls : int
        Its calls that took cores.
    short : int
        Its calls that found fewer cores free than they wanted.
    waits : int
        Its calls that waited for cores.
    wait_seconds : float
        How long they waited in all.
    alive : bool
        Whether it is still running (a dead one's cores come back at the
        next sweep).

    See Also
    --------
    host_budget : The budget, with its processes.

    Examples
    --------
    >>> import os, breakeven
    >>> b = breakeven.host_budget()
    >>> all(p.held >= 0 and p.lent >= 0 for p in b.processes)
    True
    """

    pid: int
    held: int
    lent: int
    peak: int
    calls: int
    short: int
    waits: int
    wait_seconds: float
    alive: bool


@dataclass(frozen=True)
class HostBudget:
    """The core budget this process takes its cores from (see :func:`host_budget`).

    Parameters
    ----------
    joined : bool
        Whether it is the host's, shared with other processes.
    reason : str
        Why it is, or is not.
    path : str or None
        The file of the host's budget.
    usable : int
        The CPUs the budget shares.
    free : int
        Cores free in it now (below zero when serial calls past their
        threshold run beyond it: each takes the core it runs on).
    peak : int
        The most threads parallel calls ran at once: host-wide once joined,
        else in this process.
    swept : int
        Cores given back after processes died holding them.
    processes : tuple of HostProcess
        The processes joined (this one first); empty if not joined.

    See Also
    --------
    host_budget : Makes one.
    use_host_budget : Turn sharing on or off.

    Examples
    --------
    >>> import breakeven
    >>> b = breakeven.host_budget()
    >>> print(b)  # doctest: +ELLIPSIS
    host budget: ...
    """

    joined: bool
    reason: str
    path: str | None
    usable: int
    free: int
    peak: int
    swept: int
    processes: tuple[HostProcess, ...]

    def __str__(self) -> str:
        head = (f"host budget: {'on' if self.joined else 'off'} ({self.reason})"
                + (f"\n  file: {self.path}" if self.path and self.joined else ""))
        head += (f"\n  cores: {self.usable} usable, {self.free} free; at most "
                 f"{self.peak} threads of parallel calls at once")
        if self.swept:
            head += f", {self.swept} given back from processes that died"
        if not self.processes:
            return head
        rows = [("pid", "held", "lent", "peak", "calls", "short", "waits", "waited s",
                 "")]
        rows += [(str(p.pid), str(p.held), str(p.lent), str(p.peak), str(p.calls),
                  str(p.short),
                  str(p.waits), f"{p.wait_seconds:.3f}",
                  ("this process" if i == 0 else "") + ("" if p.alive else "ended"))
                 for i, p in enumerate(self.processes)]
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  " + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True))
                 .rstrip() for r in rows]
        n = len(self.processes)
        return (head + f"\n  {n} process{'es' if n > 1 else ''} joined:\n"
                + "\n".join(lines))


def _wanted() -> bool:
    if _state["wanted"] is None:
        return os.environ.get(SWITCH, "").strip().lower() not in _OFF
    return _state["wanted"]


def folder() -> Path:
    """Where the budgets' files are: ``$BREAKEVEN_HOST_BUDGET_DIR``, the
    user's runtime directory if it is private, ``/dev/shm``, or the
    temporary directory."""
    chosen = os.environ.get(FOLDER)
    if chosen:
        return Path(chosen)
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        with contextlib.suppress(OSError):
            st = os.stat(run)
            if (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                    and not st.st_mode & 0o077):
                return Path(run)
    if os.path.isdir("/dev/shm"):
        return Path("/dev/shm")
    return Path(tempfile.gettempdir())


def segment_path() -> Path:
    """The file of the budget this process would join: one per user and set
    of usable CPUs (affinity and cgroup quota)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(usable_cpus()))
    key = f"{cpus}|{cgroup_cpu_limit()}|{usable_cpus()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return folder() / f"breakeven-{os.getuid()}-{digest}.budget"


class _Refused(Exception):
    """The file cannot be used; the message says why."""


def _map(fd: int, size: int) -> mmap.mmap:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _Refused("it is not a regular file")
    if st.st_uid != os.getuid():
        raise _Refused(f"it belongs to user {st.st_uid}, not to this process's user")
    if st.st_mode & 0o077:
        raise _Refused("other users may read or write it "
                       f"(mode {st.st_mode & 0o777:o})")
    if st.st_size != size:
        raise _Refused(f"it is {st.st_size} bytes, a budget {size}")
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def _open(path: Path) -> mmap.mmap:
    """The budget's file mapped: opened, or made (whole, then linked into
    place, so that no process sees half of one)."""
    size = engine.host_segment_size()
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(3):
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _Refused(exc.strerror or str(exc)) from None
        else:
            try:
                return _map(fd, size)
            finally:
                os.close(fd)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise _Refused(f"cannot be made: {exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, size)
            with mmap.mmap(fd, size, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE) as fresh:
                engine.host_format(fresh, usable_cpus())
            with contextlib.suppress(FileExistsError):  # made by another: use it
                os.link(tmp, path)
        except OSError as exc:
            raise _Refused(f"cannot be made: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    raise _Refused("it keeps disappearing")


def _warn_once(path: Path, reason: str) -> None:
    if (str(path), reason) in _warned:
        return
    _warned.add((str(path), reason))
    warnings.warn(f"breakeven: cannot share cores through {path}: {reason}; "
                  "this process keeps its own core budget", HostBudgetWarning,
                  stacklevel=3)


def join() -> bool:
    """Join the host's budget if it is wanted and can be: whether joined.
    (Called by the first dispatched call, and by :func:`use_host_budget`.)"""
    with _lock:
        if engine.host_joined():
            return True
        if _state["suspended"]:
            _state["reason"] = "left while this process calibrates"
            return False
        if not _wanted():
            _state["reason"] = ("turned off by use_host_budget(False)"
                                if _state["wanted"] is False
                                else f"turned off by {SWITCH}={os.environ.get(SWITCH)}")
            return False
        if not engine.host_supported():
            _state["reason"] = "this platform keeps a budget per process"
            return False
        if engine.usable() != usable_cpus():
            _state["reason"] = "the usable CPUs are simulated"
            return False
        path = segment_path()
        _state["path"] = str(path)
        try:
            wrong = engine.host_join(_open(path))
        except _Refused as exc:
            wrong = str(exc)
        if wrong is not None:
            _state["reason"] = f"{path} cannot be used: {wrong}"
            _warn_once(path, wrong)
            return False
        _state["reason"] = (f"shared by the processes of user {os.getuid()} "
                            f"on these {usable_cpus()} CPUs")
        return True


def leave() -> None:
    """Leave the host's budget: this process's own again."""
    with _lock:
        if engine.host_joined():
            engine.host_leave()
            _state["reason"] = "left"


@contextlib.contextmanager
def suspended():
    """The process's own budget for a block (calibration's measurements),
    the host's again after it if it was joined."""
    with _lock:
        joined = engine.host_joined()
        _state["suspended"] += 1
        leave()
    try:
        yield
    finally:
        with _lock:
            _state["suspended"] -= 1
            if joined and not _state["suspended"]:
                join()


def use_host_budget(enabled: bool = True) -> bool:
    """Share the cores with the user's other processes on these CPUs, or not.

    With the host's budget, a parallel call takes its cores from one count
    that every process of the user on the same CPUs (the same affinity and
    cgroup quota) takes from: a process's idle cores serve its neighbours,
    and all of them together never run more threads than there are CPUs.
    It is on by default; ``BREAKEVEN_HOST_BUDGET=0`` in the environment
    turns it off for a process from its start.  Switch it while no call
    runs.

    Parameters
    ----------
    enabled : bool
        Join the host's budget (now), or keep one for this process alone.

    Returns
    -------
    bool
        Whether the process now takes its cores from the host's budget
        (False if it cannot: :func:`host_budget` says why).

    See Also
    --------
    host_budget : Which budget is in force, and the processes in it.
    section : Reserve cores for a block of calls.

    Examples
    --------
    >>> import breakeven
    >>> breakeven.use_host_budget(False)
    False
    >>> breakeven.host_budget().joined
    False
    >>> _ = breakeven.use_host_budget(True)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"use_host_budget() takes True or False, got {enabled!r}")
    with _lock:
        _state["wanted"] = enabled
        if not enabled:
            leave()
            _state["reason"] = "turned off by use_host_budget(False)"
            return False
        return join()


def host_budget(sweep: bool = False) -> HostBudget:
    """The core budget in force: the host's, shared with other processes, or
    this process's own, and why.

    Parameters
    ----------
    sweep : bool
        First give back the cores of processes that died holding some
        (a call that finds the budget short does this too, but at most once
        in ``SWEEP_SECONDS`` of the dispatch core, host-wide).

    Returns
    -------
    HostBudget
        Printable: the processes joined, the cores each holds, the calls
        that found the budget short and the waits.

    See Also
    --------
    use_host_budget : Turn sharing on or off.
    stats : What the calls did, per kernel.

    Examples
    --------
    >>> import breakeven
    >>> b = breakeven.host_budget()
    >>> b.free + sum(p.held + p.lent for p in b.processes) == b.usable
    True
    """
    with _lock:
        state = engine.host_state()
        usable, free, _, peak = engine.budget()
        if state is None:
            return HostBudget(False, _state["reason"], _state["path"], usable, free,
                              peak, 0, ())
        if sweep:
            engine.host_sweep_now()
            state = engine.host_state()
        rows = [HostProcess(*row) for row in state["slots"]]
        me = os.getpid()
        rows.sort(key=lambda p: (p.pid != me, p.pid))
        return HostBudget(True, _state["reason"], _state["path"], state["usable"],
                          state["free"], state["peak"], state["swept"], tuple(rows))


atexit.register(leave)
