"""Decisions from Python: the core's choice as a :class:`Decision`, with its
reason in words, for :func:`breakeven.explain`, :func:`decide` and
:func:`grant`.

Every decision is made by the dispatch core (:mod:`breakeven._core.engine`,
whose docstring states the rule); here the record of its choice becomes
words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from breakeven._core import engine, openmp, runtimes
from breakeven._core.tables import TableOrigin, origin_of, profile
from breakeven._kernels import registry
from breakeven._profile import Profile
from breakeven._text import duration

__all__ = ["Decision", "decide", "decision", "grant"]


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
    if why["corrected"]:
        why["evidence"] = engine.evidence(slot, d, work)
    name = engine.slot_name(slot)
    dtype = engine.DTYPES[d]
    src = origin_of(slot, d) or TableOrigin("estimate")
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


def _words(why: dict, kernel: str, dtype: str, work: int, threads: int,
           p: Profile, src: TableOrigin) -> str:
    """The reason for a decision in words, from the record of the core's
    choice (``why``): what decided it, then each step that lowered it."""
    if not openmp.OPENMP and engine.max_threads() <= 1:
        return openmp.NO_OPENMP  # (a simulated host still gets its words)
    team = runtimes.teams()[why["team"]] if why["team"] else None
    if why["table"] == "forked":
        return (f"in a forked child: {(team or runtimes.running()).name}'s "
                "thread pool does not survive fork, so this kernel runs serially")
    first, final = _table_words(why, kernel, dtype, work, threads, p, src)
    if team is not None:  # its loops run on another runtime's threads
        first += (f"; its loops run on another OpenMP runtime, {team}, whose "
                  "threads wake and sleep apart from breakeven's team")
    if final:
        return first
    parts = [first]
    if why["table"] != "forced":
        parts += _kernel_limits(why)
    parts += _host_limits(why, threads)
    if threads > 1:
        pools = runtimes.other_pools()
        if pools:
            parts.append(
                f"{len(pools) + 1} OpenMP runtimes have thread pools in this "
                f"process (also {', '.join(str(r) for r in pools)}): their idle "
                "threads may spin on the cores this call runs on")
    return "; ".join(parts)


def _lone_words(why: dict) -> str:
    return (" (a lone call: no dispatched call within the team's "
            f"{duration(why['sleep_after'], digits=6)} sleep time, so the OpenMP team "
            "would have to wake up)")


def _table_words(why: dict, kernel: str, dtype: str, work: int, threads: int,
                 p: Profile, src: TableOrigin) -> tuple[str, bool]:
    """What decided (a table, the estimate, forced threads), and whether
    that is the whole reason (a serial decision says nothing more)."""
    table = why["table"]
    if table == "forced":
        return f"threads({why['forced']}, exact=True)", False
    if table == "none":
        how = ("breakeven calibrate" if kernel in registry.BUILTINS
               else "breakeven calibrate --module ...")
        return (f"{kernel} {dtype} is not calibrated in profile {p.source} and "
                f"has no default (run `{how}`)"), True
    if table == "learned":
        return (f"{'parallel' if why['table_threads'] > 1 else 'serial'} "
                "measured faster at this size, by this process's calls "
                "(learned; no table)"), False
    if table == "estimate":
        if not why["serial_ns"]:
            return ("no table, and too few serial calls of this size timed "
                    "yet to estimate from: serial (this call is timed)"), True
        est = (f"estimated from its calls: serial {duration(why['serial_ns'] / 1e9)}"
               f", parallel {duration(why['parallel_ns'] / 1e9)} (no table)"
               + (_lone_words(why) if why["idle"] else ""))
        if why["explore"]:
            est += "; trying the other choice, to measure it"
        return est, threads <= 1 and not why["explore"]
    thr = why["threshold"]
    cold = (_lone_words(why)[:-1] + "; the table for this idle time)"
            if table == "cold" else "")
    if why["table_threads"] <= 1:
        below = (f"work {work} < {thr}" if thr is not None
                 else "parallel never paid for this kernel")
        said = f"{below} in the {table} table of {src.words()}{cold}"
    else:
        said = f"work {work} >= {thr} in the {table} table of {src.words()}{cold}"
    if why["corrected"]:
        return f"{said}; {_corrected_words(why, threads)}", threads <= 1
    return said, why["table_threads"] <= 1


def _corrected_words(why: dict, threads: int) -> str:
    """How this process's calls corrected a table (the online check)."""
    choice = "parallel" if threads > 1 else "serial"
    if why["corrected"] == 2:
        assumed = (f"where the profile says {duration(why['assumed_wake'], digits=3)}"
                   if why["assumed_wake"] else "where the table assumes it awake")
        return (f"serial: this process's calls measured waking the team after "
                f"such an idle time at {duration(why['wake_seen'], digits=3)} on "
                f"average, {assumed}; a hot call's "
                f"{duration(why['parallel_ns'] / 1e9 - why['wake_seen'], digits=3)} "
                "plus that wake-up does not beat serial's "
                f"{duration(why['serial_ns'] / 1e9, digits=3)}")
    return (f"corrected to {choice} by this process's calls, which measured this "
            f"size at {duration(why['serial_ns'] / 1e9, digits=3)} serially and "
            f"{duration(why['parallel_ns'] / 1e9, digits=3)} in parallel, the means "
            f"of {why['evidence'][0][2]} and {why['evidence'][1][2]} calls (a "
            "difference beyond their noise)")


def _kernel_limits(why: dict) -> list[str]:
    """Step 4 and the partly awake team, in words."""
    parts = []
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
    return parts


def _host_limits(why: dict, threads: int) -> list[str]:
    """Steps 5-7 (the host's limits, fair share and cores), in words."""
    parts = []
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
        shared = " in the host's budget" if engine.host_joined() else ""
        parts.append(f"{max(why['free'], 0)} of {why['usable']} CPUs free{shared}")
        if why["wait"] is not None:
            parts.append(
                "it would wait for the call in flight, due to end in "
                f"{duration(why['wait'], digits=3)}, for at most "
                f"{duration(why['wait_most'], digits=3)}: waiting and running in "
                "parallel beats running serially")
    return parts


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
