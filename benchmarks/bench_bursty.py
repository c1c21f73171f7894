"""Calls that come in bursts: lone calls after idle gaps, calibrated and not.

A program seldom calls a kernel in a tight loop: it calls it a few times,
does something else, and calls it again.  Each burst here is 1-4 calls of
one kernel and size after an idle gap of 1-200 ms, the bursts in a random
order of kernel (``exp``, compute-bound; ``sum``, memory-bound), size
(2^16..2^22 doubles) and gap.  Every burst is run by each competitor in
turn, in a random order, each after its own idle gap:

- **breakeven**: dispatched (``breakeven.exp``, ``breakeven.sum``), its
  decisions checked by the calls as they come;
- **serial** and **parallel** (all usable CPUs): the calls forced with
  ``threads(n, exact=True)``;
- **grain**: a fixed rule as PyTorch's, parallel from 32,768 elements.

Two set-ups, each from a fresh start: **calibrated** (a quick calibration
of the two kernels on this host, made first) and **uncalibrated** (their
tables and default removed: the estimate decides).  The first third of the
bursts is a warm-up, not reported.  Figures: per kernel, size and gap, the
mean time of a burst's first call (the lone call, which may find the team
asleep) dispatched, over the better of serial's and parallel's means; and
the whole workload's time under each rule, over the best fixed rule's.
Each figure is the median over ``--runs`` runs (default 3).

    python benchmarks/bench_bursty.py [--quick] [--runs N] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import sys
import time
from collections import defaultdict

import numpy as np
from _common import add_runs_option, runs_option, stamp, strip_defaults, without
from _report import emit, header, row, targets_table
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven import testing
from breakeven._profile import Profile

KERNELS = ("exp", "sum")
SIZES = (16, 18, 20, 22)            # log2 of the work
GAPS_MS = (1, 5, 20, 50, 200)
GRAIN = 32_768                      # PyTorch's internal grain size
RULES = ("breakeven", "serial", "parallel", "grain")
WARM_UP = 1 / 3                     # of the bursts, not reported

TARGETS = {
    "lone calls, max over cells (calibrated)": 1.20,
    "lone calls, max over cells (uncalibrated)": 1.20,
    "workload / best fixed rule (calibrated)": 1.10,
    "workload / best fixed rule (uncalibrated)": 1.10,
}


def rule(name: str, work: int):
    """The context a rule's calls run in."""
    n = be.usable_cpus()
    if name == "serial" or (name == "grain" and work <= GRAIN):
        return be.threads(1, exact=True)
    if name in ("parallel", "grain"):
        return be.threads(n, exact=True)
    return contextlib.nullcontext()


def calibrated() -> Profile:
    """A quick calibration of the kernels measured here (with the host's
    team costs)."""
    return be.calibrate(list(KERNELS), quick=True, dtypes=("float64",),
                        progress=False)


def uncalibrated(p: Profile) -> Profile:
    """``p`` without the kernels measured here, and the built-ins
    registered again without their default: the estimate decides."""
    strip_defaults(KERNELS)
    return without(p, KERNELS)


def workload(per_cell: int, seed: int) -> list[tuple[str, int, float, int]]:
    """Bursts (kernel, log2 size, gap seconds, calls), ``per_cell`` of each
    kernel, size and gap, in a random order."""
    rng = random.Random(seed)
    bursts = [(k, lg, g / 1e3, rng.randint(1, 4)) for k in KERNELS for lg in SIZES
              for g in GAPS_MS for _ in range(per_cell)]
    rng.shuffle(bursts)
    return bursts


def one_setup(profile: Profile, bursts, seed: int):
    """Times per (rule, kernel, lg, gap): (first calls, every call), after
    the warm-up."""
    testing.reset(profile)
    rng = np.random.default_rng(seed)
    order = random.Random(seed)
    data = {(k, lg): be.get_kernel(k).sample(1 << lg, np.dtype("float64"), rng)
            for k in KERNELS for lg in SIZES}
    first, every = defaultdict(list), defaultdict(float)
    skip = int(len(bursts) * WARM_UP)
    for i, (name, lg, gap, calls) in enumerate(bursts):
        call, args = be.get_kernel(name).call, data[(name, lg)]
        rules = list(RULES)
        order.shuffle(rules)
        for r in rules:
            time.sleep(gap)
            with rule(r, 1 << lg):
                for j in range(calls):
                    t0 = time.perf_counter()
                    call(*args)
                    t = time.perf_counter() - t0
                    if i >= skip:
                        every[r] += t
                        if j == 0:
                            first[(r, name, lg, gap)].append(t)
    return first, every


def figures(first, every):
    """Per cell, dispatched's mean lone call / the better fixed variant's;
    the workload under each rule / the best fixed rule's."""
    cells = {}
    for name in KERNELS:
        for lg in SIZES:
            for g in GAPS_MS:
                mean = {r: float(np.mean(first[(r, name, lg, g / 1e3)])) for r in RULES}
                cells[(name, lg, g)] = mean["breakeven"] / min(mean["serial"],
                                                              mean["parallel"])
    best = min(every[r] for r in RULES if r != "breakeven")
    return cells, {r: every[r] / best for r in RULES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    add_runs_option(ap, "each set-up from a fresh start", 3)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 3)
    per_cell = 3 if args.quick else 9
    out = ["# Calls in bursts: lone calls after idle gaps", ""]
    out += stamp()
    results = {"calibrated": [], "uncalibrated": []}
    with ThreadpoolController().limit(limits=1, user_api="blas"):
        cal = calibrated()
        wake = ", ".join(f"{g / 1e3:g} ms: {s * 1e3:.2f} ms" for g, t, s in cal.wake
                         if t == max(t for _, t, _ in cal.wake))
        out += [f"- the quick calibration: the team sleeps after "
                f"{(cal.sleep_after_us or 0) / 1e3:g} ms idle; wake-up (mean) "
                f"after {wake or 'no idle time measured'}",
                f"- bursts of 1-4 calls, {per_cell} per kernel, size and gap "
                f"({len(KERNELS) * len(SIZES) * len(GAPS_MS) * per_cell} in all), the "
                f"first third a warm-up; each figure the median over {runs} run(s)",
                ""]
        setups = {"calibrated": cal, "uncalibrated": uncalibrated(cal)}
        for run in range(runs):
            bursts = workload(per_cell, run)
            for name, p in setups.items():
                results[name].append(figures(*one_setup(p, bursts, run)))
                print(f"run {run + 1}: {name} done", file=sys.stderr, flush=True)
    testing.reset()
    summary = {}
    for name, per_run in results.items():
        cells = {key: float(np.median([r[0][key] for r in per_run]))
                 for key in per_run[0][0]}
        totals = {r: float(np.median([x[1][r] for x in per_run])) for r in RULES}
        out += [f"## {name.capitalize()}", "",
                "Lone calls (a burst's first), dispatched mean / the better of "
                "serial's and parallel's means:", ""]
        out += header(("kernel", "work", *(f"after {g} ms" for g in GAPS_MS)),
                      "lr" + "r" * len(GAPS_MS))
        for k in KERNELS:
            for lg in SIZES:
                out.append(row((k, 1 << lg, *(f"{cells[(k, lg, g)]:.2f}"
                                               for g in GAPS_MS))))
        out += ["", "The whole workload's time, over the best fixed rule's:", ""]
        out += header(RULES, "r" * len(RULES))
        out += [row(f"{totals[r]:.2f}" for r in RULES), ""]
        summary[f"lone calls, max over cells ({name})"] = max(cells.values())
        summary[f"workload / best fixed rule ({name})"] = totals["breakeven"]
        summary[f"lone calls, geometric mean ({name})"] = math.exp(
            float(np.mean(np.log(list(cells.values())))))
    out += targets_table({k: v for k, v in summary.items() if k in TARGETS}, TARGETS)
    out.append("Geometric means of the lone-call cells: " + "; ".join(
        f"{name} {summary[f'lone calls, geometric mean ({name})']:.2f}"
        for name in results) + ".")
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
