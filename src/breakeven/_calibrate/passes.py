"""The run's passes over every sweep, each in its part of the budget.

1. :func:`first_pass`: every kernel and dtype swept (:func:`first_look`),
   in the first ``FIRST_PASS`` of the budget;
2. :func:`second_pass`: every sweep's sizes measured again
   (:func:`look_again`), many seconds after the first time, up to the last
   ``THIRD_PASS`` of the budget;
3. :func:`third_pass`: the sweeps with ``SUSPECT`` of their sizes still
   measured busy looked at once more, after waiting for the cores;
4. :func:`polish_pass`: in what is left, but for ``RESERVE``, up to
   ``POLISH_ROUNDS`` rounds of looks around each hot step (:func:`polish`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from breakeven._calibrate.budget import Budget
from breakeven._calibrate.measure import probe_for
from breakeven._calibrate.sweeps import Job, first_look, look_again, polish
from breakeven._profile.steps import Point

__all__ = ["FIRST_PASS", "POLISH_ROUNDS", "RESERVE", "SUSPECT", "THIRD_PASS",
           "first_pass", "polish_pass", "second_pass", "third_pass"]

# The share of the budget for the first sweep of every kernel; the rest is for
# measuring each sweep's sizes a second time (second_pass).
FIRST_PASS = 0.7
# The budget kept for a third look at sweeps with at least SUSPECT of their
# sizes still measured busy after two.
THIRD_PASS = 0.15
SUSPECT = 0.25
# Rounds of more looks at the sizes around each hot step, in what is left,
# but for this share of the budget: a last measurement that another process
# slows takes several times what it was expected to.
POLISH_ROUNDS = 3
RESERVE = 0.01

Sweeps = list[list[Point]]


def first_pass(jobs: Sequence[Job], budget: Budget,
               done: Callable[[str], object]) -> Sweeps:
    """Every job's points.  Each sweep gets an equal share of what is left
    of the first pass's time, and at least half an even share (one slow
    sweep must not starve the rest).  ``done`` is told of each job."""
    swept = []
    for i, job in enumerate(jobs):
        deadline = budget.share(FIRST_PASS, len(jobs) - i,
                                least=budget.seconds * FIRST_PASS / len(jobs) / 2)
        swept.append(first_look(job, deadline))
        done(job.label)
    return swept


def second_pass(jobs: Sequence[Job], swept: Sweeps, budget: Budget,
                done: Callable[[str], object]) -> None:
    """Every sweep's sizes measured once more, each sweep in an equal share
    of what is left before the third pass's part of the budget.  ``done``
    is told of each job."""
    for i, job in enumerate(jobs):
        deadline = budget.share(1 - THIRD_PASS, len(jobs) - i)
        if deadline is not None:
            swept[i] = look_again(job, swept[i], deadline)
        done(f"{job.label}, again")


def _busy_share(points: Sequence[Point]) -> float:
    return sum(p.busy for p in points) / max(1, len(points))


def third_pass(jobs: Sequence[Job], swept: Sweeps, budget: Budget) -> list[str]:
    """A third look, in what is left of the budget, at the sweeps whose
    sizes were still measured busy in both passes (the cores taken for
    seconds), the busiest first, each after waiting a while for the cores
    to be free.  The labels of the sweeps looked at."""
    suspects = sorted((i for i, pts in enumerate(swept)
                       if _busy_share(pts) >= SUSPECT),
                      key=lambda i: -_busy_share(swept[i]))
    looked = []
    for n, i in enumerate(suspects):
        deadline = budget.share(1.0, len(suspects) - n)
        if deadline is None:
            break
        probe = probe_for(max(jobs[i].threads))
        if probe is not None:
            probe.wait(min(1.0, deadline.left() / 4))
        swept[i] = look_again(jobs[i], swept[i], deadline)
        looked.append(jobs[i].label)
    return looked


def polish_pass(jobs: Sequence[Job], swept: Sweeps, budget: Budget) -> None:
    """What is left of the budget goes to more looks at the sizes that
    place each hot step: a threshold then rests on three or more
    measurements, tens of seconds apart, of the sizes either side of it."""
    for _ in range(POLISH_ROUNDS):
        for i, job in enumerate(jobs):
            deadline = budget.share(1 - RESERVE, len(jobs) - i)
            if deadline is None:
                return
            swept[i] = polish(job, swept[i], deadline)
