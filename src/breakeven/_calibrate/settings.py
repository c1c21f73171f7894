"""What a calibration measures: the sizes of a sweep and how thoroughly each
is timed (:class:`Settings`), and the thread counts it times
(:func:`thread_candidates`, from :mod:`breakeven._cpu`: dispatch's
estimate chooses among the same counts)."""

from __future__ import annotations

from dataclasses import dataclass

from breakeven._core.engine import MARGIN
from breakeven._cpu import thread_candidates

__all__ = ["Settings", "thread_candidates"]


@dataclass(frozen=True)
class Settings:
    """How thoroughly to measure."""

    min_work: int = 1 << 8
    max_work: int = 1 << 24
    factor: int = 2  # geometric step of the sweep
    repeats: int = 7  # batches per candidate and size
    min_batch_time: float = 0.002  # seconds
    settle: int = 3  # sizes the most threads must win in a row to stop
    budget: float = 60.0  # seconds, the whole run
    margin: float = MARGIN

    @classmethod
    def quick(cls) -> Settings:
        return cls(max_work=1 << 22, factor=2, repeats=5, min_batch_time=0.001,
                   settle=2, budget=9.0)  # 10 s with start-up and saving

    # On a host of many CPUs, the sizes where the last thread counts pay (and
    # the data outgrows all their caches) lie further up: the sweep goes on
    # to this many elements per usable CPU, up to ``most_work``.
    work_per_cpu: int = 1 << 18
    most_work: int = 1 << 26

    def works(self, usable: int = 1) -> list[int]:
        """The sizes a sweep measures on a host of ``usable`` CPUs."""
        top = max(self.max_work, min(self.most_work, self.work_per_cpu * usable))
        out, w = [], self.min_work
        while w <= top:
            out.append(w)
            w *= self.factor
        return out
