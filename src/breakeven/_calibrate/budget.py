"""The run's time: one budget, shared out among the passes, and the
deadlines every measurement is held to.

Every pass divides what is left of its part of the budget equally among
the sweeps it has still to look at (:meth:`Budget.share`), so a pass that
starts late, or a sweep that overran, leaves the rest their time; a
measurement is started only if it would end before its deadline
(:meth:`Deadline.allows`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Budget", "Deadline"]


@dataclass(frozen=True)
class Deadline:
    """A time on ``clock`` that measuring must not run past."""

    at: float
    clock: Callable[[], float] = time.perf_counter

    def reached(self) -> bool:
        return self.clock() >= self.at

    def allows(self, seconds: float) -> bool:
        """``seconds`` more of measuring, started now, end before it."""
        return self.clock() + seconds < self.at

    def left(self) -> float:
        """Seconds from now to the deadline (negative once past)."""
        return self.at - self.clock()


NEVER = Deadline(math.inf)


@dataclass(frozen=True)
class Budget:
    """The ``seconds`` a whole run may take, from ``start`` on ``clock``."""

    seconds: float
    clock: Callable[[], float]
    start: float

    @classmethod
    def from_now(cls, seconds: float,
                 clock: Callable[[], float] = time.perf_counter) -> Budget:
        return cls(seconds, clock, clock())

    @property
    def end(self) -> Deadline:
        """The run's own deadline."""
        return Deadline(self.start + self.seconds, self.clock)

    def elapsed(self) -> float:
        return self.clock() - self.start

    def share(self, part: float, sweeps_left: int,
              least: float = 0.0) -> Deadline | None:
        """The deadline of the next of ``sweeps_left`` sweeps to look at in
        the first ``part`` of the budget: an equal share of what is left of
        it, at least ``least`` seconds, never past the run's end.  None when
        that part of the budget is spent (and no least share is due)."""
        now = self.clock()
        left = self.seconds * part - (now - self.start)
        if left <= 0 and least <= 0:
            return None
        return Deadline(min(now + max(left / sweeps_left, least),
                            self.start + self.seconds), self.clock)
