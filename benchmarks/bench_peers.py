"""breakeven side by side with NumPy, numexpr, Numba and scikit-learn.

Every figure is a ratio of times measured in one run, with the competitors
interleaved batch by batch (``breakeven._calibrate.timing.time_interleaved``): the
median of the batch-wise ratios, with their min and max.

1. Peers.  For every built-in and size (work 2^4..2^24; for ``nearest``, X of
   n rows x 16 against 32 centres, work n*32*16): breakeven's drop-in function
   against NumPy (BLAS at 1 thread and at its default for the kernels NumPy
   computes with BLAS: ``dot``, ``nearest``), numexpr at its default threads
   where the operation is an expression (``sum``, ``axpy``, ``exp``), Numba
   ``@njit`` and ``@njit(parallel=True)`` loops (``peers_numba.py``; compile
   time excluded, reported apart) and, for ``nearest``, scikit-learn's
   ``pairwise_distances_argmin``: the table ``peers_impls.PEERS``.  Per size:
   the best peer and breakeven's ratio to it; cells where breakeven is slower
   are listed with their figures.
2. Thresholds in the wild.  In the same interleaved run, the drop-in
   function forced serial (``threads(1)``) and forced parallel
   (``threads(n, exact=True)``): a fixed rule's time is the one of these its
   rule picks (PyTorch's grain size 32768, numexpr's 2048-element cut-off,
   always parallel, always serial: ``peers_impls.RULES``), compared with the
   calibrated dispatch.  (``bench_dispatch.py`` compares dispatch with the
   bare kernels instead.)
3. Contention (``peers_contention.py``): alternating A @ B and a parallel
   exp; ``nearest`` with BLAS uncapped and capped; Python threads calling a
   parallel kernel at once; joblib workers; lone calls after an idle gap.
   Each against the naive choice and the best configuration measured.

The record is written by ``peers_report.py``; the targets it is judged on are
:data:`TARGETS`, below.  Calibration quality is ``bench_calibration.py``'s.
Optional peers that are not installed are skipped with a note
(``pip install .[bench]``).

    python benchmarks/bench_peers.py [--quick] [--output FILE.md]
                                     [--kernels sum,exp] [--sizes 10,16,22]

Writes FILE.md and, beside it, FILE-time.png and FILE-speedup.png.  Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import peers_report as report
from _common import Blas, add_runs_option, log, runs_option
from _report import emit
from peers_contention import contention
from peers_impls import ORDER, Libraries, measure_cells

# The targets, judged in the summary on the median of --runs runs:
# - speed: breakeven's speed over NumPy's (BLAS at its default) at work
#   2^SPEED_LG, at least, for each kernel named;
# - contention: breakeven's time over the best fixed configuration, at most,
#   in every scenario of section 3.
SPEED_LG = 22
TARGETS = {"speed": {"exp": 1.8, "nearest": 1.8}, "contention": 1.2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a few sizes and batches (smoke run)")
    ap.add_argument("--output", default="benchmarks/results/peers.md")
    ap.add_argument("--kernels", help="comma-separated (default: all)")
    ap.add_argument("--sizes", help="comma-separated log2 works")
    ap.add_argument("--no-contention", action="store_true")
    add_runs_option(ap, f"the contention scenarios and the 2^{SPEED_LG} target "
                        "cells are measured; targets are judged on the median "
                        "run", 3)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 3)
    t_start = time.perf_counter()
    names = args.kernels.split(",") if args.kernels else list(ORDER)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        ([4, 10, 16, 22] if args.quick else list(range(4, 25, 2)))
    repeats = 5 if args.quick else 9
    min_batch = 0.002 if args.quick else 0.005
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    log("peers: loading and compiling")
    libs = Libraries()
    blas = Blas()
    libs.compile_numba(names)
    out = report.header(libs, blas, args.quick, repeats, min_batch, " ".join(
        argv if argv is not None else sys.argv[1:]))

    cells = measure_cells(names, sizes, repeats, min_batch, libs, blas)
    body = report.peers_section(cells) + report.slower_section(cells) \
        + report.rules_section(cells)

    results: dict[str, list[tuple]] = {}
    speed = {name: [c["vs_numpy"] for c in cells
                    if c["kernel"] == name and c["work"] == 1 << SPEED_LG]
             for name in TARGETS["speed"]}
    if not args.no_contention:
        body += report.contention_intro(runs)
        t0 = time.perf_counter()
        for run in range(runs):
            shown = body if run == 0 else []
            found: dict[str, tuple] = {}
            contention(args.quick, repeats, shown, found, blas)
            for key, r in found.items():
                results.setdefault(key, []).append(r)
            if run > 0:  # the target cells again, between contention runs
                for c in measure_cells([n for n in speed if n in names],
                                       [SPEED_LG], repeats, min_batch, libs, blas):
                    speed[c["kernel"]].append(c["vs_numpy"])
        log(f"contention: {time.perf_counter() - t0:.1f} s")
        if runs > 1:
            body += report.every_run(results, runs)

    elapsed = time.perf_counter() - t_start
    body += report.summary(cells, speed, results, TARGETS, SPEED_LG, elapsed)
    if libs.plt is not None:
        pngs = report.plots(cells, libs.plt, out_path.with_suffix(""))
        out += [" ".join(f"![{p}]({p})" for p in pngs), ""]
    emit(out + body, out_path, echo=False)
    log(f"written to {out_path} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
