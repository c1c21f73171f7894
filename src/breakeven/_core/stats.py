"""What the calls did: the core's counters per kernel and dtype."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from breakeven._core import engine
from breakeven._core.host import HostBudget, host_budget
from breakeven._core.tables import origin_of

__all__ = ["KernelStats", "Stats", "stats"]



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
        Time in the serial calls: those timed to measure their size, to
        explore or backed off, as timed; the others estimated from a sample
        of them (one in 16 is timed; a clock read costs as much as a small
        call).
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
    waits : int
        Calls that found too few cores free and waited for them (where
        waiting for a call in flight to end was expected to beat running
        serially).
    wait_seconds : float
        How long they waited in all.

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
    waits: int = 0
    wait_seconds: float = 0.0


class Stats(Mapping):
    """Per ``(kernel, dtype)``: a :class:`KernelStats`.  ``str()`` gives a
    table.

    Parameters
    ----------
    rows : dict
        ``{(kernel, dtype): KernelStats}``.
    host : HostBudget, optional
        The core budget in force (:func:`host_budget`), printed after the
        table.

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

    def __init__(self, rows: dict[tuple[str, str], KernelStats],
                 host: HostBudget | None = None):
        self._rows = rows
        #: The core budget the calls took their cores from (see
        #: :func:`breakeven.host_budget`): the processes sharing it, the
        #: cores each holds, the calls that found it short and the waits.
        self.host = host

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
        if self.host is not None:
            lines += ["", str(self.host)]
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
        timed = r["serial_timed"] + r["serial_sampled"]
        serial_s = _serial_seconds(r)
        src = origin_of(r["slot"], engine.DTYPES.index(r["dtype"]))
        kind = src.kind if src is not None else ""
        if r["estimate"] and r["learned"]:
            kind = "learned"
        rows[(engine.slot_name(r["slot"]), r["dtype"])] = KernelStats(
            r["serial"], par, r["thread_sum"] / par if par else 0.0,
            r["most_threads"], r["backoffs"], r["probes"], r["recoveries"],
            r["parallel_seconds"], serial_s, timed, r["backed_off"], kind,
            r["learned"], r["explored"], r["waits"], r["wait_seconds"])
    return Stats(rows, host_budget())


def _serial_seconds(r: dict) -> float:
    """The serial calls' time: those timed for a purpose (to measure a size,
    to explore, backed off), as timed; the others from a sample of them
    (one in 16), its mean times how many there were.  (Not all from the
    timed calls' mean: the calls timed for a purpose are the large ones.)"""
    rest = r["serial"] - r["serial_timed"]
    mean = (r["serial_seconds_sampled"] / r["serial_sampled"]
            if r["serial_sampled"] else 0.0)
    return r["serial_seconds_timed"] + mean * rest
