"""How good is the calibration?  Its thresholds against an independent
measurement of the crossover, their spread over repeated runs, and the
calibration's wall time.

1. ``breakeven calibrate`` is run ``--runs`` times in a row (default mode,
   each into its own file), plus once with ``--quick``; the wall time of each
   is recorded.
2. Independently of the calibration code (no breakeven timing engine: a
   plain ``time.perf_counter`` loop alternating serial and parallel calls),
   the serial/parallel crossover of sum, axpy and exp (float64) is located
   on a grid of ratio sqrt(2): the smallest size from which parallel is
   faster at every larger grid size up to 2^22.  The calls are the public
   ones a user makes (``breakeven.sum(x)``, ...) with the thread count
   forced by ``breakeven.threads``, so, like the calibration, the crossover
   includes what dispatch itself costs per call; the bare kernels' crossover
   is shown beside it.
3. The table gives, per kernel, the independent crossover, each run's
   hot threshold, the spread (max/min) and the worst ratio to the crossover.

    python benchmarks/bench_calibration.py [--runs 3] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import breakeven
from breakeven._profile import load_profile
from breakeven._registry import KERNELS
from breakeven._threads import usable_cpus

CHECKED = ("sum", "axpy", "exp")


def run_calibration(args: list[str], out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "breakeven", "calibrate", "--no-progress",
                    "--output", str(out), *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def per_call(fn, min_time=0.002) -> float:
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n
        n *= 2


PUBLIC = {
    "sum": lambda a: breakeven.sum(a[0]),
    "axpy": lambda a: breakeven.axpy(a[0], a[1], a[2]),
    "exp": lambda a: breakeven.exp(a[0], out=a[1]),
}


def forced(fn, n):
    def call():
        with breakeven.threads(n, exact=True):
            for _ in range(16):
                fn()
    return call


def bare_calls(k, args, threads):
    return (lambda: k.serial(*args)), (lambda: k.parallel(*args, threads))


def independent_crossover(name: str, threads: int, rounds: int = 15,
                          bare: bool = False) -> tuple[int | None, int | None]:
    k = KERNELS[name]
    rng = np.random.default_rng(1)
    sizes = sorted({int(round(2 ** (e / 2))) for e in range(16, 45)})  # 2^8..2^22
    gains = []
    for n in sizes:
        args = k.sample(n, np.dtype("float64"), rng)
        if bare:
            ser_fn, par_fn = bare_calls(k, args, threads)
        else:  # 16 public calls per timed call: the context is paid once
            ser_fn = forced(lambda a=args: PUBLIC[name](a), 1)
            par_fn = forced(lambda a=args: PUBLIC[name](a), threads)
        ser, par = [], []
        for _ in range(rounds):  # alternate, so noise hits both alike
            ser.append(per_call(ser_fn))
            par.append(per_call(par_fn))
        gains.append(statistics.median(ser) / statistics.median(par))

    def first(limit):
        for i in range(len(sizes)):
            if all(g > limit for g in gains[i:]):
                return sizes[i]
        return None
    # plain break-even, and where parallel is at least 5% faster (the margin
    # the calibration asks of an extra thread rank)
    return first(1.0), first(1.05)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--output", help="also write the Markdown report here")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each run's profile and raw sweeps in DIR")
    args = ap.parse_args(argv)
    threads = usable_cpus()
    lines = [
        "# Calibration quality",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.machine()}, {threads} usable CPUs; breakeven "
        f"{breakeven.__version__}, numpy {np.__version__}",
        f"- {args.runs} default calibrations in a row, one --quick; independent "
        "crossover from a plain perf_counter loop (grid ratio sqrt 2, 2^8..2^22)",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        walls, profiles = [], []
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.toml"
            walls.append(run_calibration([], out))
            profiles.append(load_profile(out))
            print(f"calibration {i + 1}: {walls[-1]:.1f} s", file=sys.stderr)
        quick = run_calibration(["--quick"], Path(tmp) / "quick.toml")
    lines += [f"Wall time: default {', '.join(f'{w:.1f} s' for w in walls)}; "
              f"--quick {quick:.1f} s.", ""]

    lines += ["| kernel (float64) | independent crossover | ... at 5% gain "
              "| bare kernels' crossover | calibrated hot thresholds "
              "| spread max/min | worst ratio to crossover "
              "| ... to 5% crossover |",
              "|---|---:|---:|---:|---|---:|---:|---:|"]

    def worst(ts, ref):
        if not ref or not all(ts):
            return math.inf
        return max(max(t / ref, ref / t) for t in ts)

    for name in CHECKED:
        cross, cross5 = independent_crossover(name, threads)
        bare, _ = independent_crossover(name, threads, bare=True)
        thr = [p.threshold(name, "float64") for p in profiles]
        known = [t for t in thr if t]
        spread = (max(known) / min(known) if len(known) == len(thr) and known
                  else math.inf)
        row = (f"| {name} | {cross} | {cross5} | {bare} | "
               f"{', '.join(str(t) for t in thr)} | "
               f"{spread:.2f} | {worst(thr, cross):.2f} | {worst(thr, cross5):.2f} |")
        lines.append(row)
        print(row, file=sys.stderr)
    lines += ["", "All kernels, each run (hot threshold, float64 / float32):", "",
              "| kernel | " + " | ".join(f"run {i + 1}" for i in range(args.runs))
              + " | spread |", "|---|" + "---|" * (args.runs + 1)]
    for name in KERNELS:
        cells, ratios = [], []
        for dt in ("float64", "float32"):
            thr = [p.threshold(name, dt) for p in profiles]
            if all(thr):
                ratios.append(max(thr) / min(thr))
            elif any(thr):  # parallel in some runs, never in others
                ratios.append(math.inf)
            cells.append(thr)
        spread = f"{max(ratios):.2f}" if ratios else "n/a"
        lines.append(f"| {name} | " + " | ".join(
            f"{cells[0][i]} / {cells[1][i]}" for i in range(args.runs))
            + f" | {spread} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
