"""Serial and parallel kernels against their NumPy equivalent, side by side.

For each kernel and size, the three candidates are timed in the same run,
interleaved batch by batch (see breakeven._calibrate.timing), and the table reports
median per-call times and ratios, with the ratio's min-max over batches.
BLAS is capped to one thread for the whole run: NumPy's equivalents are then
single-threaded (the fair serial baseline), and the parallel nearest kernel
needs it anyway (it calls gemm inside its parallel loop).

    python benchmarks/bench_kernels.py [--quick] [--sizes 10,16,20,24]
                                       [--kernels sum,exp] [--dtype float64]
                                       [--output results/kernels.md]

To compare against NumPy's own BLAS kernel rather than the one picked by
OPENBLAS_CORETYPE, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this
command; the header prints the kernel threadpoolctl reports.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

import numpy as np
from _common import blas_info, ratio_range
from _report import emit, fmt_ratio, fmt_time, header, row
from threadpoolctl import ThreadpoolController

import breakeven
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.openmp import usable_cpus
from breakeven._kernels.registry import KERNELS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and batches")
    p.add_argument("--sizes", help="comma-separated log2 sizes (default 10,16,20,24)")
    p.add_argument("--kernels", help="comma-separated kernels (default: all)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--output", help="also write the table as Markdown here")
    args = p.parse_args(argv)

    sizes = [int(s) for s in (args.sizes or ("10,16,20" if args.quick
                                             else "10,16,20,24")).split(",")]
    names = args.kernels.split(",") if args.kernels else list(KERNELS)
    repeats = args.repeats or (5 if args.quick else 11)
    dtype = np.dtype(args.dtype)
    threads = usable_cpus()
    rng = np.random.default_rng(0)

    head = [
        f"# Kernels: serial and parallel against NumPy ({dtype})",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.processor() or platform.machine()}, "
        f"{usable_cpus()} usable CPUs, {platform.platform()}",
        f"- breakeven {breakeven.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}",
        f"- BLAS (capped to 1 thread for the run): {blas_info()}",
        f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
        f"- parallel = all {threads} usable CPUs; median of {repeats} interleaved "
        "batches; ratios are medians of batch-wise ratios [min-max]",
        "",
        *header(("kernel", "work", "numpy", "serial", "parallel", "serial/numpy",
                 "parallel/serial"), "lrrrrrr"),
    ]
    print("\n".join(head), flush=True)
    rows = []
    with ThreadpoolController().limit(limits=1, user_api="blas"):
        for name in names:
            k = KERNELS[name]
            for lg in sizes:
                a = k.sample(1 << lg, dtype, rng)
                t = time_interleaved({
                    "numpy": lambda k=k, a=a: k.reference(*a),
                    "serial": lambda k=k, a=a: k.serial(*a),
                    "parallel": lambda k=k, a=a: k.parallel(*a, threads),
                }, repeats=repeats, min_batch_time=0.01 if not args.quick else 0.004)
                sn = ratio_range(t["serial"], t["numpy"])
                ps = ratio_range(t["parallel"], t["serial"])
                line = row((name, f"2^{lg}", fmt_time(t["numpy"].median),
                            fmt_time(t["serial"].median),
                            fmt_time(t["parallel"].median), fmt_ratio(sn),
                            fmt_ratio(ps)))
                rows.append(line)
                print(line, flush=True)
    if args.output:
        emit(head + rows, args.output, echo=False)
        print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
