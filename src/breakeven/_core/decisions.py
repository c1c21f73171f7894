"""Dispatch, the Python side: the profile in the core, and decisions in words.

Every decision is made by the dispatch core (:mod:`breakeven._core.engine`, whose
docstring states the rule), for the drop-ins, for kernels of other libraries
through the Cython API and for :func:`decide`.  This module keeps what C
should not do: loading the profile (at the first call) and giving each
registered kernel its tables in the core, turning a decision into a
:class:`Decision` and its reason into words, and the per-kernel counters
into :func:`stats`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from breakeven._core import engine, openmp
from breakeven._core.openmp import region_seconds
from breakeven._interop.blas import thread_setters
from breakeven._kernels import registry
from breakeven._profile import (
    Profile,
    ProfileError,
    ProfileWarning,
    host_fingerprint,
    load_profile,
    now_utc,
    read_defaults,
)

__all__ = ["Decision", "KernelStats", "Stats", "decide", "grant", "profile",
           "save_learned", "stats", "use_profile"]


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
    source : str
        Where the decision came from: ``"calibrated"`` (this host's
        profile), ``"default"`` (the kernel's library default for a similar
        host; breakeven's embedded default for the built-ins),
        ``"estimate"`` (no table: the model, from the kernel's own calls),
        ``"learned"`` (no table: both choices measured at this size by this
        process's calls), or ``""`` (forced threads, a forked child, NumPy).

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
    source: str = ""

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
    if p is None or not engine.configured():
        with _lock:
            if _profile is None:
                _set(load_profile())
            elif not engine.configured():
                _set(_profile)
            p = _profile
    return p


def profile_words(stale: bool = True) -> str:
    """The profile in use, in a few words: its file and when it was
    calibrated, or that this host has none.  ``stale=False`` leaves out what
    changed since (which looks the BLAS libraries up through threadpoolctl:
    not from inside threadpoolctl)."""
    p = profile()
    if p.source.startswith("embedded default"):
        return (f"{p.source} (this host is not calibrated: run "
                "`breakeven calibrate`)")
    changed = p.stale if stale else []
    tail = f"; stale: {', '.join(changed)}" if changed else ""
    return f"{p.source} (calibrated {p.calibrated_at or 'at an unknown time'}{tail})"


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
        engine.unconfigure()
        _profile = None
        _defaults_cache.clear()
        if profile is not None:
            _set(profile)


@dataclass(frozen=True)
class Source:
    """Where the tables of a kernel's calls on a dtype come from:
    ``"calibrated"`` on this host, ``"default"`` (its library's tables for a
    similar host: breakeven's embedded default for the built-ins), or
    ``"estimate"`` (none: the model, refined from the calls); ``profile``
    holds the tables (None for the estimate)."""

    kind: str
    profile: Profile | None = None

    def words(self) -> str:
        if self.profile is None:
            return "no table: estimated from its calls"
        return f"profile {self.profile.source}"


_defaults_cache: dict[str, Profile | None] = {}


def _default_file(path, owner: str) -> Profile | None:
    """A default profile file's entry for this host, or a similar one
    (cached until the profile in use changes); a file that cannot be used is
    warned about, naming it, and gives None."""
    key = str(path)
    if key not in _defaults_cache:
        name = ("embedded default" if path == registry.EMBEDDED_DEFAULT
                else f"default {key}")
        try:
            _defaults_cache[key] = read_defaults(path, name=name)
        except (OSError, ProfileError) as exc:
            warnings.warn(f"breakeven: ignoring the default profile {key} of "
                          f"{owner}: {exc}", ProfileWarning, stacklevel=2)
            _defaults_cache[key] = None
    return _defaults_cache[key]


def _defaults(kernel: registry.Kernel) -> Profile | None:
    """The kernel's library default for this host, or None."""
    if kernel.defaults is None:
        return None
    return _default_file(kernel.defaults, kernel.name)


def source(kernel: registry.Kernel, dtype: str, p: Profile | None = None) -> Source:
    """Where dispatch takes a kernel's tables for a dtype from, in order:
    this host's calibration (the profile in use), the kernel's library
    default for a similar host, the estimate."""
    p = p if p is not None else profile()
    if dtype in p.tables.get(kernel.name, {}):
        embedded = p.source.startswith("embedded default")
        return Source("default" if embedded else "calibrated", p)
    d = _defaults(kernel)
    if d is not None and dtype in d.tables.get(kernel.name, {}):
        return Source("default", d)
    return Source("estimate")


_sources: dict[tuple[int, int], Source] = {}


def _set(p: Profile) -> None:
    """Give every registered kernel its tables from ``p`` (lock held)."""
    global _profile
    _profile = p
    _sources.clear()
    for k in list(registry.KERNELS.values()):
        _give_tables(p, k)
    engine.configure((_host(p).sleep_after_us or 0) / 1e6)


def _host(p: Profile) -> Profile:
    """The profile whose host figures apply (sleep time, wake-up costs):
    ``p``'s, or the embedded default's when ``p`` has none."""
    if p.sleep_after_us is not None or p.wake:
        return p
    return _default_file(registry.EMBEDDED_DEFAULT, "breakeven") or p


def _give_tables(p: Profile, kernel: registry.Kernel) -> None:
    dtypes = {dt.name for dt in kernel.dtypes}
    for d, name in enumerate(engine.DTYPES):
        src = source(kernel, name, p)
        _sources[(kernel.slot, d)] = src
        if src.profile is None:
            if name in dtypes:
                _team(p)
                engine.set_estimate(kernel.slot, d)
            else:
                engine.clear_table(kernel.slot, d)
            continue
        q = src.profile
        engine.set_table(kernel.slot, d, q.steps(kernel.name, name, "hot"),
                        q.cold_tables(kernel.name, name))
        # The calibration's times are the uncontended yardstick: without
        # them the first calls seen would set it, contended or not.
        # Count by count, so that each count's sizes seed one table.
        rows = q.times(kernel.name, name, parallel_only=True)
        for work, threads, seconds in sorted(rows, key=lambda r: (r[1], r[0])):
            engine.seed_rate(kernel.slot, d, threads, work, seconds / max(work, 1))


_team_known: list[Profile] = []


def _team(p: Profile) -> None:
    """The host's team costs in the core, for the estimate: a hot region's
    start from the profile, or measured now (well under a millisecond, once
    per process and profile); the wake-up costs from the profile's host
    figures."""
    if _team_known and _team_known[0] is p:
        return
    full = min(engine.usable(), engine.max_threads())
    hot = p.team_hot.get(full)
    if hot is None:
        hot = region_seconds(full) if full > 1 else 0.0
    host = _host(p)
    most = max((t for _, t, _ in host.wake), default=0)
    wake = [(gap / 1e6, seconds) for gap, t, seconds in host.wake if t == most]
    engine.set_team(hot, wake)
    _team_known[:] = [p]


def _registered(kernel: registry.Kernel) -> None:
    """A kernel registered after the profile was loaded: its tables now."""
    with _lock:
        if _profile is not None and engine.configured():
            _give_tables(_profile, kernel)


def _load() -> None:
    """The core's hook, called (with the GIL) by the first dispatched call."""
    profile()


registry._listeners.append(_registered)
engine.set_hooks(load=_load, blas=thread_setters)


# ---------------------------------------------------------------------------
# what the estimate learnt, kept
# ---------------------------------------------------------------------------


def learned_profile() -> Profile:
    """What this process's calls taught the estimate, as a profile of this
    host: for each kernel and dtype without a table that measured both
    choices at some sizes, a hot table parallel from the smallest size from
    which every size measured went parallel (serial if none did), marked
    ``method = "learned"``; lone calls serial."""
    out = Profile(host_fingerprint(), {}, now_utc(), None, "learned")
    full = min(engine.usable(), engine.max_threads())
    for (slot, d), src in list(_sources.items()):
        if src.kind != "estimate":
            continue
        decided = [(b, learned) for b, _, _, learned, _, _
                   in engine.estimate_state(slot, d) if learned]
        if not decided:
            continue
        start = None
        for b, learned in reversed(decided):
            if learned != 2:
                break
            start = b
        hot = ((0, 1),) if start is None or full < 2 else \
            ((0, 1), (1 << max(start - 1, 0), full))
        out.set_table(engine.slot_name(slot), engine.DTYPES[d], hot, ((0, 1),),
                      method="learned")
    return out


def save_learned(path=None) -> Profile:
    """Write what the estimate learnt into the profile file.

    For each kernel and dtype without a table whose calls measured both
    choices at some sizes: a table parallel from the smallest size from
    which every size measured went parallel, marked ``method =
    "learned"``.  Written under the file's lock; an entry of a calibration
    is never replaced.  ``BREAKEVEN_SAVE_LEARNED=1`` in the environment
    does this at the process's exit.

    Parameters
    ----------
    path : path-like, optional
        The profile file (default: :func:`breakeven.load_profile`'s).

    Returns
    -------
    Profile
        What was written; its ``kept`` lists the entries the file kept
        instead (calibrated ones).

    See Also
    --------
    stats : ``source == "learned"`` marks the kernels concerned.
    calibrate : Measure a kernel properly.

    Examples
    --------
    >>> import breakeven
    >>> p = breakeven.save_learned("/tmp/learned-example.toml")
    >>> all(p.method(k, d) == "learned" for k in p.tables for d in p.tables[k])
    True
    """
    p = learned_profile()
    if p.tables:
        p.save(path)
    return p


def _save_learned_at_exit() -> None:
    with contextlib.suppress(Exception):  # never fail a process at exit
        save_learned()


# Opt-in: BREAKEVEN_SAVE_LEARNED=1 writes the learned tables back at exit.
if os.environ.get("BREAKEVEN_SAVE_LEARNED", "") not in ("", "0"):
    atexit.register(_save_learned_at_exit)


# ---------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------


def _kernel(kernel) -> registry.Kernel:
    if isinstance(kernel, registry.Kernel):
        kernel = kernel.name
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a kernel's name or a Kernel, got "
                        f"{type(kernel).__name__}")
    return registry.get_kernel(kernel)


def _dtype_index(dtype) -> tuple[int, str]:
    d = engine.dtype_index(dtype)
    if d < 0:
        raise ValueError(f"dispatch knows the dtypes {', '.join(engine.DTYPES)}; "
                         f"got {dtype!r}")
    return d, engine.DTYPES[d]


def _work(work) -> int:
    if isinstance(work, bool) or not isinstance(work, (int, np.integer)):
        raise TypeError(f"work must be an integer, got {type(work).__name__}")
    if work < 0:
        raise ValueError(f"work must be >= 0, got {work}")
    return min(int(work), 2**62)


def decision(slot: int, d: int, work: int, idle: float | None = None) -> Decision:
    """The core's decision for a call (a dry run), with its reason in words."""
    p = profile()
    threads, why = engine.decide(slot, d, work, idle)
    name = engine.slot_name(slot)
    dtype = engine.DTYPES[d]
    src = _sources.get((slot, d), Source("estimate"))
    kind = {"estimate": "estimate", "learned": "learned"}.get(why["table"], src.kind)
    if why["table"] in ("forced", "forked"):
        kind = ""
    return Decision("parallel" if threads > 1 else "serial", threads, work,
                    _words(why, name, dtype, work, threads, p, src),
                    name, _table(why, threads), source=kind)


def _table(why: dict, threads: int) -> str:
    if why["table"] not in ("hot", "cold", "estimate", "learned"):
        return ""
    if why["backoff"]:
        return "backoff"
    return why["table"] if why["table"] in ("hot", "cold") else ""


def _us(ns: float) -> str:
    return f"{ns / 1e3:.3g} us"


def _words(why: dict, kernel: str, dtype: str, work: int, threads: int,
           p: Profile, src: Source) -> str:
    table = why["table"]
    if not openmp.OPENMP and engine.max_threads() <= 1:
        return openmp.NO_OPENMP  # (a simulated host still gets its words)
    if table == "forked":
        return ("in a forked child: OpenMP is not fork-safe, so this process "
                "runs serially")
    parts = []
    lone = (" (a lone call: no dispatched call within the team's "
            f"{why['sleep_after'] * 1e3:g} ms sleep time, so the OpenMP team "
            "would have to wake up)")
    if table == "forced":
        parts.append(f"threads({why['forced']}, exact=True)")
    elif table == "none":
        how = ("breakeven calibrate" if kernel in registry.BUILTINS
               else "breakeven calibrate --module ...")
        return (f"{kernel} {dtype} is not calibrated in profile {p.source} and "
                f"has no default (run `{how}`)")
    elif table == "learned":
        parts.append(f"{'parallel' if why['table_threads'] > 1 else 'serial'} "
                     "measured faster at this size, by this process's calls "
                     "(learned; no table)")
    elif table == "estimate":
        if not why["serial_ns"]:
            return ("no table, and too few serial calls of this size timed "
                    "yet to estimate from: serial (this call is timed)")
        est = (f"estimated from its calls: serial {_us(why['serial_ns'])}, "
               f"parallel {_us(why['parallel_ns'])} (no table)"
               + (lone if why["idle"] else ""))
        if why["explore"]:
            est += "; trying the other choice, to measure it"
        if threads <= 1 and not why["explore"]:
            return est
        parts.append(est)
    else:
        thr = why["threshold"]
        cold = lone[:-1] + "; the table for this idle time)" if table == "cold" else ""
        if why["table_threads"] <= 1:
            below = (f"work {work} < {thr}" if thr is not None
                     else "parallel never paid for this kernel")
            return f"{below} in the {table} table of {src.words()}{cold}"
        parts.append(f"work {work} >= {thr} in the {table} table of "
                     f"{src.words()}{cold}")
    if table not in ("forced",):
        if why["cap"]:
            parts.append(f"capped at {why['cap']} by threads({why['cap']})")
        if why["backoff"]:
            parts.append(f"backed off to {why['backoff']} threads: recent parallel "
                         f"calls ran over {engine.SLOW:g}x slower than their best "
                         "(contention)")
        if why["probe"]:
            parts.append("a probe at full threads of a kernel backed off for "
                         "contention")
        if why["awake"]:
            parts.append(f"held to the {why['awake']} threads still awake: "
                         "waking the rest of the team does not pay for this "
                         "work (the cold table)")
    if why["share"]:
        parts.append(f"a fair share: {why['share']} of {why['usable']} CPUs "
                     f"among {why['callers']} callers")
    if why["limit"]:
        pool = (f", threadpoolctl limit {why['pool_limit']}"
                if why["pool_limit"] else "")
        parts.append(f"capped at {why['limit']} (usable CPUs {why['usable']}, "
                     f"omp_get_max_threads {why['max_threads']}{pool})")
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
    return engine.Grant(k.slot, np.dtype(dtype).num, _work(work))


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
    source : str
        Where its decisions come from now: ``"calibrated"``, ``"default"``,
        ``"estimate"`` or ``"learned"`` (an estimate that has measured both
        choices at some sizes; see :attr:`Decision.source`).
    learned : int
        Sizes (powers of two) at which both choices have been measured.
    explored : int
        Calls that ran the estimate's other choice, to measure it.

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
    source: str = ""
    learned: int = 0
    explored: int = 0


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
    kernel  dtype    source   serial  parallel  threads  back-offs  probes  ...
    ...
    sum     float32  default  1       0         0.0      0          0       ...
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
        head = ("kernel", "dtype", "source", "serial", "parallel", "threads",
                "back-offs", "probes", "parallel s", "serial s")
        rows = [head] + [
            (k, d, s.source, str(s.serial), str(s.parallel), f"{s.mean_threads:.1f}",
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
    for r in engine.stats(reset):
        par = r["parallel"]
        timed = r["serial_timed"]
        serial_s = (r["serial_seconds_timed"] * r["serial"] / timed if timed
                    else 0.0)
        src = _sources.get((r["slot"], engine.DTYPES.index(r["dtype"])))
        kind = src.kind if src is not None else ""
        if r["estimate"] and r["learned"]:
            kind = "learned"
        rows[(engine.slot_name(r["slot"]), r["dtype"])] = KernelStats(
            r["serial"], par, r["thread_sum"] / par if par else 0.0,
            r["most_threads"], r["backoffs"], r["probes"], r["recoveries"],
            r["parallel_seconds"], serial_s, timed, r["backed_off"], kind,
            r["learned"], r["explored"])
    return Stats(rows)
