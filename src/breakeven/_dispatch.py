"""Dispatch, the Python side: the profile in the core, and decisions in words.

Every decision is made by the dispatch core (:mod:`breakeven._core`, whose
docstring states the rule), for the drop-ins, for kernels of other libraries
through the Cython API and for :func:`decide`.  This module keeps what C
should not do: loading the profile (at the first call) and giving each
registered kernel its tables in the core, turning a decision into a
:class:`Decision` and its reason into words, and the per-kernel counters
into :func:`stats`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from breakeven import _core, _registry
from breakeven._blas import thread_setters
from breakeven._profile import Profile, load_profile

__all__ = ["Decision", "KernelStats", "Stats", "decide", "grant", "profile",
           "stats", "use_profile"]


@dataclass(frozen=True)
class Decision:
    """What dispatch chose for one call, and why.

    Returned by :func:`breakeven.explain` and :func:`breakeven.decide`;
    ``str()`` gives it in one line.

    Parameters
    ----------
    variant : {"serial", "parallel", "numpy"}
        Which implementation runs; for :func:`breakeven.map`, how the batch
        runs: "inner" (one item after another, each dispatched), "outer" or
        "mixed" (spread over worker threads), or "backend" (the joblib
        backend set with ``joblib.parallel_config``).
    threads : int
        OpenMP threads (1 unless parallel); for map, the most each call of a
        worker may take (0: as dispatch decides).
    work : int
        The call's work (elements; ``n*m*d`` for nearest).
    reason : str
        The decision in words.
    kernel : str
        The kernel's name.
    table : str
        The step table that decided: "hot", "cold", "backoff" (fewer
        threads than the table gives, for contention), or "" (forced
        threads, a forked child, no table, or not decided from the profile).
    workers : int
        Outer workers running the items (:func:`breakeven.map`; else 1).

    See Also
    --------
    explain : The decision for a call, without running it.
    decide : The decision for a kernel and an amount of work.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> d = breakeven.explain(breakeven.sum, np.ones(10))
    >>> d.variant, d.threads, d.work, d.kernel
    ('serial', 1, 10, 'sum')
    >>> print(d)
    sum: serial (work 10 < ... in the ... table of profile ...)
    """

    variant: str
    threads: int
    work: int
    reason: str
    kernel: str = ""
    # "hot"/"cold": the table used (the call was past the hot threshold);
    # "backoff": fewer threads than the table says, for contention
    table: str = ""
    workers: int = 1

    def __str__(self) -> str:
        t = f" with {self.threads} threads" if self.variant == "parallel" else ""
        if self.variant in ("outer", "mixed", "backend"):
            t = f" with {self.workers} workers"
        return f"{self.kernel}: {self.variant}{t} ({self.reason})"


# ---------------------------------------------------------------------------
# the profile in the core
# ---------------------------------------------------------------------------

_lock = threading.RLock()
_profile: Profile | None = None


def profile() -> Profile:
    """The profile dispatch uses (loaded, and given to the core, on first
    use)."""
    p = _profile
    if p is None or not _core.configured():
        with _lock:
            if _profile is None:
                _set(load_profile())
            elif not _core.configured():
                _set(_profile)
            p = _profile
    return p


def use_profile(profile: Profile | None) -> None:
    """Make dispatch use ``profile`` from now on.

    Parameters
    ----------
    profile : Profile or None
        A profile (from :func:`breakeven.load_profile` or
        :func:`breakeven.calibrate`); ``None`` forgets the one in use, and
        the next dispatched call loads the profile file again.  Either way
        what dispatch learnt while running (contention back-offs, observed
        rates) is forgotten.

    See Also
    --------
    load_profile, calibrate

    Examples
    --------
    >>> import breakeven
    >>> breakeven.use_profile(breakeven.load_profile("/nonexistent/profile.toml"))
    >>> breakeven.explain(breakeven.sum, [1.0]).kernel
    'sum'
    >>> breakeven.use_profile(None)  # back to the profile file
    """
    if profile is not None and not isinstance(profile, Profile):
        raise TypeError(f"use_profile() takes a Profile or None, got "
                        f"{type(profile).__name__}")
    with _lock:
        global _profile
        _core.unconfigure()
        _profile = None
        if profile is not None:
            _set(profile)


def _set(p: Profile) -> None:
    """Give every registered kernel its tables from ``p`` (lock held)."""
    global _profile
    _profile = p
    for k in list(_registry.KERNELS.values()):
        _give_tables(p, k)
    _core.configure((p.sleep_after_us or 0) / 1e6)


def _give_tables(p: Profile, kernel: _registry.Kernel) -> None:
    for d, name in enumerate(_core.DTYPES):
        if name not in p.tables.get(kernel.name, {}):
            _core.clear_table(kernel.slot, d)
            continue
        _core.set_table(kernel.slot, d, p.steps(kernel.name, name, "hot"),
                        p.cold_tables(kernel.name, name))
        # The calibration's times are the uncontended yardstick: without
        # them the first calls seen would set it, contended or not.
        for work, threads, seconds in p.times(kernel.name, name, parallel_only=True):
            _core.seed_rate(kernel.slot, d, threads, work, seconds / max(work, 1))


def _registered(kernel: _registry.Kernel) -> None:
    """A kernel registered after the profile was loaded: its tables now."""
    with _lock:
        if _profile is not None and _core.configured():
            _give_tables(_profile, kernel)


def _load() -> None:
    """The core's hook, called (with the GIL) by the first dispatched call."""
    profile()


_registry._listeners.append(_registered)
_core.set_hooks(load=_load, blas=thread_setters)


# ---------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------


def _kernel(kernel) -> _registry.Kernel:
    if isinstance(kernel, _registry.Kernel):
        kernel = kernel.name
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a kernel's name or a Kernel, got "
                        f"{type(kernel).__name__}")
    return _registry.get_kernel(kernel)


def _dtype_index(dtype) -> tuple[int, str]:
    d = _core.dtype_index(dtype)
    if d < 0:
        raise ValueError(f"dispatch knows the dtypes {', '.join(_core.DTYPES)}; "
                         f"got {dtype!r}")
    return d, _core.DTYPES[d]


def _work(work) -> int:
    if isinstance(work, bool) or not isinstance(work, (int, np.integer)):
        raise TypeError(f"work must be an integer, got {type(work).__name__}")
    if work < 0:
        raise ValueError(f"work must be >= 0, got {work}")
    return min(int(work), 2**62)


def decision(slot: int, d: int, work: int, idle: float | None = None) -> Decision:
    """The core's decision for a call (a dry run), with its reason in words."""
    p = profile()
    threads, why = _core.decide(slot, d, work, idle)
    name = _core.slot_name(slot)
    dtype = _core.DTYPES[d]
    return Decision("parallel" if threads > 1 else "serial", threads, work,
                    _words(why, name, dtype, work, threads, p),
                    name, _table(why, threads))


def _table(why: dict, threads: int) -> str:
    if why["table"] not in ("hot", "cold"):
        return ""
    return "backoff" if why["backoff"] else why["table"]


def _words(why: dict, kernel: str, dtype: str, work: int, threads: int,
           p: Profile) -> str:
    table = why["table"]
    if table == "forked":
        return ("in a forked child: OpenMP is not fork-safe, so this process "
                "runs serially")
    parts = []
    if table == "forced":
        parts.append(f"threads({why['forced']}, exact=True)")
    elif table == "none":
        how = ("breakeven calibrate" if kernel in _registry.BUILTINS
               else "breakeven calibrate --module ...")
        return (f"{kernel} {dtype} is not calibrated in profile {p.source} (run "
                f"`{how}`)")
    else:
        thr = why["threshold"]
        lone = (" (a lone call: no dispatched call within the team's "
                f"{why['sleep_after'] * 1e3:g} ms sleep time, so the OpenMP team "
                "would have to wake up; the table for this idle time)"
                if table == "cold" else "")
        if why["table_threads"] <= 1:
            below = (f"work {work} < {thr}" if thr is not None
                     else "parallel never paid for this kernel")
            return f"{below} in the {table} table of profile {p.source}{lone}"
        parts.append(f"work {work} >= {thr} in the {table} table of profile "
                     f"{p.source}{lone}")
        if why["cap"]:
            parts.append(f"capped at {why['cap']} by threads({why['cap']})")
        if why["backoff"]:
            parts.append(f"backed off to {why['backoff']} threads: recent parallel "
                         f"calls ran over {_core.SLOW:g}x slower than their best "
                         "(contention)")
        if why["probe"]:
            parts.append("a probe at full threads of a kernel backed off for "
                         "contention")
    if why["limit"]:
        parts.append(f"capped at {why['limit']} (usable CPUs {why['usable']}, "
                     f"omp_get_max_threads {why['max_threads']})")
    if why["nested"]:
        parts.append("already inside a parallel region")
    if why["section"]:
        parts.append(f"inside a section holding {why['section']} cores")
    elif why["budget"] or threads > 1:
        parts.append(f"{max(why['free'], 0)} of {why['usable']} CPUs free")
    return "; ".join(parts)


def decide(kernel, work, dtype="float64", *, idle=None) -> Decision:
    """How many threads dispatch gives a call of ``kernel`` with this much
    work, and why: for parallel code of your own (Numba, numexpr, threads).

    A dry run of the rule every dispatched call goes through: nothing is
    taken from the core budget (:func:`grant` takes it).

    Parameters
    ----------
    kernel : str or Kernel
        A registered kernel's name (a built-in's, or one registered with
        :func:`register`).
    work : int
        The call's work, in the kernel's units.
    dtype : dtype-like
        The dtype whose table applies.
    idle : float, optional
        Decide as a call after this many seconds without a parallel call (0:
        a call in a loop, the team awake); default: as a call made now.

    Returns
    -------
    Decision

    Raises
    ------
    KeyError
        For a kernel nobody registered.
    TypeError, ValueError
        For a work that is not a non-negative integer, or a dtype dispatch
        does not know.

    See Also
    --------
    grant : The same decision, with the cores held for a block.
    explain : The decision for a call of a dispatched function.

    Examples
    --------
    >>> import breakeven
    >>> breakeven.decide("exp", 10).variant
    'serial'
    >>> d = breakeven.decide("exp", 10**8, idle=0)
    >>> d.threads <= breakeven.usable_cpus()
    True
    """
    k = _kernel(kernel)
    d, _ = _dtype_index(dtype)
    return decision(k.slot, d, _work(work), idle)


def grant(kernel, work, dtype="float64"):
    """Hold the threads dispatch grants a call for the block: parallel code
    of your own runs with them, inside the core budget.

    Parameters
    ----------
    kernel : str or Kernel
        A registered kernel's name.
    work : int
        The call's work.
    dtype : dtype-like
        The dtype whose table applies.

    Returns
    -------
    context manager
        Its ``threads`` attribute is the count granted (1: run serially).
        On exit the cores go back to the budget, and the block's duration
        feeds the kernel's contention check.

    See Also
    --------
    decide : The decision alone.
    register : Register a kernel of your own first.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> x = np.ones(10**6)
    >>> with breakeven.grant("sum", x.size) as g:
    ...     total = float(breakeven.get_kernel("sum").parallel(x, g.threads)
    ...                   if g.threads > 1 else x.sum())
    >>> total
    1000000.0
    """
    k = _kernel(kernel)
    _dtype_index(dtype)
    profile()
    return _core.Grant(k.slot, np.dtype(dtype).num, _work(work))


# ---------------------------------------------------------------------------
# counters
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelStats:
    """What one kernel's calls on one dtype did (see :func:`stats`).

    Parameters
    ----------
    serial, parallel : int
        Calls run serially and in parallel.
    mean_threads : float
        Threads of a parallel call, on average (0 if none).
    most_threads : int
        The most threads a call got.
    backoffs, probes, recoveries : int
        Back-offs for contention, probes at full threads while backed off,
        and probes that ended a back-off.
    parallel_seconds : float
        Time in the parallel calls (each one timed).
    serial_seconds : float
        Time in the serial calls, estimated from the timed ones (one in 16
        is timed; a clock read costs as much as a small call).
    serial_timed : int
        Serial calls timed.
    backed_off : bool
        Whether the kernel is backed off now.

    See Also
    --------
    stats : The counters of every kernel called.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> _ = breakeven.stats(reset=True)
    >>> _ = breakeven.exp(np.ones(10))
    >>> s = breakeven.stats()["exp", "float64"]
    >>> s.serial + s.parallel
    1
    """

    serial: int
    parallel: int
    mean_threads: float
    most_threads: int
    backoffs: int
    probes: int
    recoveries: int
    parallel_seconds: float
    serial_seconds: float
    serial_timed: int
    backed_off: bool


class Stats(Mapping):
    """Per ``(kernel, dtype)``: a :class:`KernelStats`.  ``str()`` gives a
    table.

    Parameters
    ----------
    rows : dict
        ``{(kernel, dtype): KernelStats}``.

    See Also
    --------
    stats : Makes one from the dispatch core's counters.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> _ = breakeven.stats(reset=True)
    >>> _ = breakeven.sum(np.ones(10, dtype=np.float32))
    >>> s = breakeven.stats()
    >>> list(s)
    [('sum', 'float32')]
    >>> print(s)  # doctest: +ELLIPSIS
    kernel  dtype    serial  parallel  threads  back-offs  probes  parallel s  serial s
    ...
    sum     float32  1       0         0.0      0          0       0           ~...
    """

    def __init__(self, rows: dict[tuple[str, str], KernelStats]):
        self._rows = rows

    def __getitem__(self, key: tuple[str, str]) -> KernelStats:
        return self._rows[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"Stats({self._rows!r})"

    def __str__(self) -> str:
        head = ("kernel", "dtype", "serial", "parallel", "threads", "back-offs",
                "probes", "parallel s", "serial s")
        rows = [head] + [
            (k, d, str(s.serial), str(s.parallel), f"{s.mean_threads:.1f}",
             str(s.backoffs) + (" (now)" if s.backed_off else ""), str(s.probes),
             f"{s.parallel_seconds:.3g}", f"~{s.serial_seconds:.3g}")
            for (k, d), s in sorted(self._rows.items())]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                 .rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def stats(reset: bool = False) -> Stats:
    """What the dispatched calls of this process did, per kernel and dtype.

    From counters the core keeps on every call (an atomic add or two; the
    parallel calls' clock reads are there anyway).

    Parameters
    ----------
    reset : bool
        Start the counters again from zero.

    Returns
    -------
    Stats
        A mapping ``(kernel, dtype) -> KernelStats`` of the kernels called.

    See Also
    --------
    explain : What a call would do.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> _ = breakeven.stats(reset=True)
    >>> _ = breakeven.sum(np.ones(100))
    >>> breakeven.stats()["sum", "float64"].serial
    1
    """
    rows = {}
    for r in _core.stats(reset):
        par = r["parallel"]
        timed = r["serial_timed"]
        serial_s = (r["serial_seconds_timed"] * r["serial"] / timed if timed
                    else 0.0)
        rows[(_core.slot_name(r["slot"]), r["dtype"])] = KernelStats(
            r["serial"], par, r["thread_sum"] / par if par else 0.0,
            r["most_threads"], r["backoffs"], r["probes"], r["recoveries"],
            r["parallel_seconds"], serial_s, timed, r["backed_off"])
    return Stats(rows)
