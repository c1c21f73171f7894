"""Kernels nobody calibrated: dispatch's estimate, and what it learns.

For the docs' example library's kernel (``mykernels.logistic``, no default
shipped) and for three built-ins with their calibrated entries and their
default removed (so that dispatch has no table for them on this host), over
work 2^4..2^24, interleaved:

- dispatched, **after a warm-up** of at most 1,000 calls spread over the
  sizes (runs of 10 calls of one size, in a random order: the state a
  program reaches in its first calls): the estimate from the kernel's own
  serial calls and the host's team costs;
- dispatched **after learning**: after another 10,000 calls spread over the
  sizes, what the calls measured decides;
- always serial and always parallel (all usable CPUs): the choices a
  library has without breakeven.

Each is a ratio to min(serial, parallel) measured in the same batch
rotation (the decisions shown are the last run's, at its end); serial and
parallel are the kernel's call under
``threads(1, exact=True)`` and ``threads(n, exact=True)`` (forced calls do
not teach the estimate).  Every figure is the median over ``--runs`` runs
(default 3), each from a fresh start (nothing learnt).

    python benchmarks/bench_zero_config.py [--quick] [--runs N] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import math
import random
import sys

import _userkernels
import numpy as np
from _common import add_runs_option, runs_option, stamp, strip_defaults, without
from _report import emit, header, row, targets_table
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven import testing

BUILTINS = ("sum", "exp", "cumsum")
EXAMPLE = "mykernels.logistic"
WARM_UP = 1000
LEARN = 10_000

# What each figure must meet (the summary says which do).
TARGETS = {
    "after warm-up, max": 1.30,      # dispatched / min(serial, parallel)
    "after warm-up, geometric mean": 1.10,
    "after learning, max": 1.15,
}


def uncalibrated():
    """The profile in use with no entry for the kernels measured here (the
    host's figures, sleep time and wake-up costs, kept)."""
    return without(testing.profile(), (*BUILTINS, EXAMPLE))


def calls(name: str, sizes, rng) -> dict[int, tuple]:
    k = be.get_kernel(name)
    return {lg: k.sample(1 << lg, np.dtype("float64"), rng) for lg in sizes}


RUN = 10  # calls of one size in a row, as a program's loop makes them


def spread(name: str, args: dict, n: int, rng: random.Random) -> None:
    """``n`` dispatched calls spread over the sizes: runs of RUN calls of
    one size, the runs in a random order, the same number at each size."""
    call = be.get_kernel(name).call
    order = [lg for lg in args for _ in range(n // len(args) // RUN)]
    rng.shuffle(order)
    for lg in order:
        for _ in range(RUN):
            call(*args[lg])


def measure(name: str, args: dict, repeats: int) -> dict[int, tuple]:
    """Per size: (dispatched, serial, parallel) / min(serial, parallel)."""
    from breakeven._calibrate.timing import time_interleaved

    call = be.get_kernel(name).call
    n = be.usable_cpus()
    out = {}
    for lg, a in args.items():
        def run(a=a):
            call(*a)

        t = time_interleaved(
            {"dispatched": run, "serial": run, "parallel": run},
            around={"serial": lambda: be.threads(1, exact=True),
                    "parallel": lambda: be.threads(n, exact=True)},
            repeats=repeats, min_batch_time=0.004)
        s, p = np.array(t["serial"].samples), np.array(t["parallel"].samples)
        best = np.minimum(s, p)
        out[lg] = tuple(float(np.median(np.array(t[c].samples) / best))
                        for c in ("dispatched", "serial", "parallel"))
    return out


def one_run(sizes, repeats, seed):
    """{(kernel, lg): (after warm-up, after learning, serial, parallel)} and
    the decisions, from a fresh start."""
    rng = np.random.default_rng(seed)
    shuffle = random.Random(seed)
    cells, decisions = {}, {}
    for name in (*BUILTINS, EXAMPLE):
        testing.reset(uncalibrated())
        testing.idle(-3600)  # calls in a loop: the hot path
        args = calls(name, sizes, rng)
        spread(name, args, WARM_UP, shuffle)
        warm = measure(name, args, repeats)
        first = {lg: be.decide(name, 1 << lg, idle=0) for lg in sizes}
        spread(name, args, LEARN, shuffle)
        learned = measure(name, args, repeats)
        for lg in sizes:
            cells[(name, lg)] = (warm[lg][0], learned[lg][0], learned[lg][1],
                                 learned[lg][2])
            d = be.decide(name, 1 << lg, idle=0)
            decisions[(name, lg)] = (first[lg], d)
        print(f"  {name} done", file=sys.stderr, flush=True)
    return cells, decisions


def _how(d) -> str:
    t = f"{d.threads} " if d.variant == "parallel" else ""
    return f"{d.variant} {t}({d.source})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    add_runs_option(ap, "every kernel is measured from a fresh start", 3)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 3)
    _userkernels.load_example()
    strip_defaults(BUILTINS)
    sizes = range(4, 25, 4) if args.quick else range(4, 25, 2)
    repeats = 5 if args.quick else 7
    out = ["# Kernels nobody calibrated: the estimate and what it learns", ""]
    out += stamp()
    out += [f"- kernels: {EXAMPLE} (the docs' example library, no default) and "
            f"{', '.join(BUILTINS)} (their entries and default removed); "
            f"warm-up {WARM_UP} calls spread over the sizes, learning "
            f"{LEARN} more", "- ratios: time / min(serial, parallel), "
            "medians of batch-wise ratios; each cell the median over "
            f"{runs} run(s) from a fresh start", ""]
    per_run = []
    with ThreadpoolController().limit(limits=1, user_api="blas"):
        for run in range(runs):
            per_run.append(one_run(sizes, repeats, run))
            print(f"run {run + 1} of {runs} done", file=sys.stderr, flush=True)
    cells = {key: tuple(float(np.median([r[0][key][i] for r in per_run]))
                        for i in range(4)) for key in per_run[0][0]}
    decisions = per_run[-1][1]
    out += header(("kernel", "work", "after warm-up", "after learning",
                   "always serial", "always parallel", "decision after warm-up",
                   "after learning", "after warm-up / learning, each run"),
                  "lrrrrrlll")
    for (name, lg), (w, le, s, p) in cells.items():
        first, last = decisions[(name, lg)]
        each = ", ".join(f"{r[0][(name, lg)][0]:.2f}/{r[0][(name, lg)][1]:.2f}"
                         for r in per_run)
        out.append(row((name, 1 << lg, f"{w:.2f}", f"{le:.2f}", f"{s:.2f}",
                        f"{p:.2f}", _how(first), _how(last), each)))
    out.append("")

    def stats(i):
        v = [c[i] for c in cells.values()]
        return max(v), math.exp(float(np.mean(np.log(v))))

    figures = {"after warm-up, max": stats(0)[0],
               "after warm-up, geometric mean": stats(0)[1],
               "after learning, max": stats(1)[0]}
    out += targets_table(figures, TARGETS)
    out.append("Beside them, the choices without breakeven, over the same cells: "
               f"always serial max {stats(2)[0]:.2f}, geometric mean "
               f"{stats(2)[1]:.2f}; always parallel max {stats(3)[0]:.2f}, "
               f"geometric mean {stats(3)[1]:.2f}; after learning, geometric "
               f"mean {stats(1)[1]:.2f}.")
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
