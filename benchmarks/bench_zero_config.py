"""Kernels nobody calibrated: dispatch's estimate, and what it learns.

For the docs' example library's kernel (``mykernels.logistic``, no default
shipped), three built-ins with their calibrated entries and their default
removed (so that dispatch has no table for them on this host), and three
memory-bound kernels of a user's own (``_userkernels``: an element-wise
relu, an axpy and a 2-D row sum, serial/``prange`` pairs under
``@breakeven.kernel``), over work 2^4..2^22, interleaved:

- dispatched, **after a warm-up** of 1,000 calls spread over the sizes (the
  state a program reaches in its first calls): the estimate from the
  kernel's own serial calls and the host's team costs;
- dispatched **after learning**: after another 10,000 calls, what the
  calls measured decides;
- fixed rules, the choices a library has without breakeven: always serial,
  always parallel (all usable CPUs), PyTorch's grain (parallel from 32,768
  elements, a thread per grain), and a per-thread overhead rule (our
  reading of scikit-learn's pull request 34935: whether the OpenMP threads
  wait actively, then the count that minimises serial time / t plus t
  times a per-thread cost, of a few microseconds if they spin and tens if
  they sleep; the constants are ours, the serial time the measured one).

The calls come in two orders: **runs** of 10 calls of one size, the runs in
a random order (a program's loops), and **random**, every call at a random
size.  (Calls in bursts with idle gaps between them are
``bench_bursty.py``'s.)

Each figure is a ratio to min(serial, parallel): the time of the calls at
one size in a workload of the order the calls came in (a run, or ten calls,
of each size), run dispatched, serially and in parallel in turn
(serial and parallel under ``threads(1, exact=True)`` and ``threads(n,
exact=True)``: forced calls do not teach the estimate), the median of the
ratios over seven such passes; the decisions shown are the last run's.  A
fixed rule's figure is the one of the choice it makes.  Every figure is the
median over ``--runs`` runs (default 3), each from a fresh start (nothing
learnt).

    python benchmarks/bench_zero_config.py [--quick] [--runs N] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time

import _userkernels
import numpy as np
from _common import (
    Stolen,
    add_runs_option,
    runs_option,
    stamp,
    strip_defaults,
    without,
)
from _report import emit, header, row, targets_table
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven import testing
from breakeven.testing import TORCH_GRAIN

BUILTINS = ("sum", "exp", "cumsum")
EXAMPLE = "mykernels.logistic"
USER = ("bench.relu_pair", "zc.axpy", "zc.rowsum")  # memory-bound, a user's own
KERNELS = (*BUILTINS, EXAMPLE, *USER)
ORDERS = ("runs", "random")
WARM_UP = 1000
LEARN = 10_000
RUN = 10  # calls of one size in a row, as a program's loop makes them

# What each figure must meet (the summary says which do).
TARGETS = {
    "after warm-up, max": 1.25,      # dispatched / min(serial, parallel)
    "after warm-up, geometric mean": 1.05,
    "after learning, max": 1.15,
    # the worst kernel and order: its geometric mean over the sizes against
    # the fixed rule best for it
    "after learning / best fixed rule, geometric mean": 1.10,
}


def uncalibrated():
    """The profile in use with no entry for the kernels measured here (the
    host's figures, sleep time and wake-up costs, kept)."""
    return without(testing.profile(), KERNELS)


def calls(name: str, sizes, rng) -> dict[int, tuple]:
    k = be.get_kernel(name)
    return {lg: k.sample(1 << lg, np.dtype("float64"), rng) for lg in sizes}


def spread(name: str, args: dict, n: int, order: str, rng: random.Random) -> None:
    """``n`` dispatched calls spread over the sizes, the same number at each,
    in the order ``order`` (:func:`workload`)."""
    call = be.get_kernel(name).call
    for lg in workload(order, list(args), n // len(args) // RUN, rng):
        call(*args[lg])


def workload(order: str, sizes, runs: int, rng: random.Random) -> list[int]:
    """The sizes of a workload's calls: ``runs`` runs of RUN calls of each
    size, the runs in a random order; or as many calls, each at a random
    size."""
    run = RUN if order == "runs" else 1
    seq = [lg for lg in sizes for _ in range(runs * RUN // run)]
    rng.shuffle(seq)
    return [lg for lg in seq for _ in range(run)]


def measure(name: str, args: dict, order: str, passes: int,
            rng: random.Random) -> dict[int, tuple]:
    """Per size: (dispatched, serial, parallel) / min(serial, parallel), and
    the serial call's mean seconds: the time of the calls at that size in a
    workload of the order the calls came in while learning (so that a size
    meets the caches it meets there), each pass a new workload run the
    three ways in turn (the first of them rotating), the ratios their
    medians over the passes.  (Forced calls do not teach dispatch; the
    dispatched ones go on learning.)"""
    call = be.get_kernel(name).call
    n = be.usable_cpus()
    how = {"dispatched": contextlib.nullcontext,
           "serial": lambda: be.threads(1, exact=True),
           "parallel": lambda: be.threads(n, exact=True)}
    took = {m: {lg: [] for lg in args} for m in how}
    count = 0
    for p in range(passes):
        seq = workload(order, list(args), 1, rng)
        count = len(seq) // len(args)
        ways = list(how)
        for m in ways[p % 3:] + ways[:p % 3]:
            total = dict.fromkeys(args, 0.0)
            with how[m]():
                for lg in seq:
                    t0 = time.perf_counter()
                    call(*args[lg])
                    total[lg] += time.perf_counter() - t0
            for lg in args:
                took[m][lg].append(total[lg])
    out = {}
    for lg in args:
        s, p = np.array(took["serial"][lg]), np.array(took["parallel"][lg])
        best = np.minimum(s, p)
        out[lg] = (*(float(np.median(np.array(took[m][lg]) / best)) for m in how),
                   float(np.median(s)) / count)
    return out


def threads_spin() -> bool:
    """Whether the OpenMP threads wait actively between regions (libgomp's
    and LLVM's default), as the environment says."""
    env = os.environ
    return not (env.get("OMP_WAIT_POLICY", "").lower() == "passive"
                or env.get("GOMP_SPINCOUNT") == "0"
                or env.get("KMP_BLOCKTIME") == "0")


def rules(cpus: int) -> dict:
    """The fixed rules: (work, serial seconds) -> threads."""
    per_thread = 3e-6 if threads_spin() else 30e-6

    def overhead(work, ts):
        return min(range(1, cpus + 1),
                   key=lambda t: ts / t + (t * per_thread if t > 1 else 0))

    return {"always serial": lambda w, ts: 1,
            "always parallel": lambda w, ts: cpus,
            f"grain {TORCH_GRAIN}": lambda w, ts: (
                1 if w < TORCH_GRAIN else min(cpus, -(-w // TORCH_GRAIN))),
            "per-thread overhead": overhead}


def one_run(sizes, passes, seed, kernels=KERNELS):
    """{(order, kernel, lg): (after warm-up, after learning, serial,
    parallel, serial seconds)} and the decisions, from a fresh start."""
    rng = np.random.default_rng(seed)
    shuffle = random.Random(seed)
    cells, decisions = {}, {}
    for order in ORDERS:
        for name in kernels:
            testing.reset(uncalibrated())
            testing.idle(-3600)  # calls in a loop: the hot path
            args = calls(name, sizes, rng)
            spread(name, args, WARM_UP, order, shuffle)
            first = {lg: be.decide(name, 1 << lg, idle=0) for lg in sizes}
            warm = measure(name, args, order, passes, shuffle)
            spread(name, args, LEARN, order, shuffle)
            last = {lg: be.decide(name, 1 << lg, idle=0) for lg in sizes}
            learned = measure(name, args, order, passes, shuffle)
            for lg in sizes:
                cells[(order, name, lg)] = (warm[lg][0], *learned[lg])
                decisions[(order, name, lg)] = (first[lg], last[lg])
            print(f"  {order}: {name} done", file=sys.stderr, flush=True)
    return cells, decisions


def _how(d) -> str:
    t = f"{d.threads} " if d.variant == "parallel" else ""
    return f"{d.variant} {t}({d.source})"


def geomean(v) -> float:
    return math.exp(float(np.mean(np.log(v))))


def rule_ratios(cells: dict, cpus: int) -> dict[str, dict]:
    """Each fixed rule's ratio per cell: the serial or the parallel one, as
    it chooses (on more than two CPUs, a count between is not measured:
    such a choice counts as parallel's)."""
    out = {}
    for rule, pick in rules(cpus).items():
        out[rule] = {key: (c[2] if pick(1 << key[2], c[4]) == 1 else c[3])
                     for key, c in cells.items()}
    return out


def summary(cells: dict, by_rule: dict) -> tuple[dict, list[str]]:
    """The targets' figures, and the table of the rules and dispatch per
    order (geometric means and maxima over kernels and sizes)."""
    def worst_vs_best_rule():
        worst = 0.0
        for order in ORDERS:
            for name in {k[1] for k in cells}:
                keys = [k for k in cells if k[0] == order and k[1] == name]
                mine = geomean([cells[k][1] for k in keys])
                best = min(geomean([r[k] for k in keys]) for r in by_rule.values())
                worst = max(worst, mine / best)
        return worst

    warm = [c[0] for c in cells.values()]
    learned = [c[1] for c in cells.values()]
    figures = {"after warm-up, max": max(warm),
               "after warm-up, geometric mean": geomean(warm),
               "after learning, max": max(learned),
               "after learning / best fixed rule, geometric mean":
                   worst_vs_best_rule()}
    lines = header(("choice", *(f"{o}: geometric mean" for o in ORDERS),
                    *(f"{o}: max" for o in ORDERS)), "lrrrr")
    columns = {"dispatched, after warm-up": {k: c[0] for k, c in cells.items()},
               "dispatched, after learning": {k: c[1] for k, c in cells.items()},
               **by_rule}
    for label, per in columns.items():
        vals = {o: [v for k, v in per.items() if k[0] == o] for o in ORDERS}
        lines.append(row((label, *(f"{geomean(vals[o]):.2f}" for o in ORDERS),
                          *(f"{max(vals[o]):.2f}" for o in ORDERS))))
    return figures, lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    ap.add_argument("--kernels", nargs="+", choices=KERNELS, default=KERNELS,
                    metavar="NAME", help="only these kernels (default: all; "
                    "the targets are for all)")
    add_runs_option(ap, "every kernel is measured from a fresh start", 3)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 3)
    _userkernels.load_example()
    _userkernels.load()
    strip_defaults(BUILTINS)
    sizes = range(4, 21, 4) if args.quick else range(4, 23, 2)
    # (passes: a small size's calls take microseconds, on a host whose
    # second CPU is often taken for longer: its figure is a median of many)
    passes = 3 if args.quick else 7
    out = ["# Kernels nobody calibrated: the estimate and what it learns", ""]
    out += stamp()
    out += [f"- kernels: {EXAMPLE} (the docs' example library, no default), "
            f"{', '.join(BUILTINS)} (their entries and default removed) and "
            f"{', '.join(USER)} (memory-bound kernels of one's own: element-wise, "
            "axpy, 2-D row sum); warm-up "
            f"{WARM_UP} calls spread over the sizes, learning {LEARN} more; "
            f"orders: runs of {RUN} calls of one size, or every call at a random "
            "size", "- ratios: time / min(serial, parallel) of the calls at each size "
            f"in a workload of the same order, medians over {passes} passes; each cell "
            "the median over "
            f"{runs} run(s) from a fresh start; a fixed rule's cell is the one "
            "of its choice", ""]
    if tuple(args.kernels) != KERNELS:
        out[-1:-1] = [f"- measured here: {', '.join(args.kernels)} only (the "
                      "targets are for all the kernels)"]
    per_run, stolen = [], []
    with ThreadpoolController().limit(limits=1, user_api="blas"):
        for run in range(runs):
            with Stolen() as st:
                per_run.append(one_run(sizes, passes, run, tuple(args.kernels)))
            stolen.append(st.share)
            print(f"run {run + 1} of {runs} done", file=sys.stderr, flush=True)
    if None not in stolen:
        out[-1:-1] = ["- CPU time the hypervisor gave other guests during each run "
                      "(steal: not the noise of a core shared with another guest): "
                      + ", ".join(f"{s:.1%}" for s in stolen)]
    cells = {key: tuple(float(np.median([r[0][key][i] for r in per_run]))
                        for i in range(5)) for key in per_run[0][0]}
    decisions = per_run[-1][1]
    by_rule = rule_ratios(cells, be.usable_cpus())
    for order in ORDERS:
        out += [f"## Calls in {order} order", ""]
        out += header(("kernel", "work", "after warm-up", "after learning",
                       "always serial", "always parallel", "decision after warm-up",
                       "after learning", "after warm-up / learning, each run"),
                      "lrrrrrlll")
        for (o, name, lg), (w, le, s, p, _) in cells.items():
            if o != order:
                continue
            first, last = decisions[(o, name, lg)]
            each = ", ".join(f"{r[0][(o, name, lg)][0]:.2f}/"
                             f"{r[0][(o, name, lg)][1]:.2f}" for r in per_run)
            out.append(row((name, 1 << lg, f"{w:.2f}", f"{le:.2f}", f"{s:.2f}",
                            f"{p:.2f}", _how(first), _how(last), each)))
        out.append("")
    figures, lines = summary(cells, by_rule)
    out += targets_table(figures, TARGETS)
    out += ["Dispatched and the fixed rules, over every kernel and size:", ""]
    out += lines
    out.append("")
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
