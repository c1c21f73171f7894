"""How good is the calibration?  Its thresholds against an independent
measurement of the crossover, their spread over repeated runs, and the
calibration's wall time.

1. ``breakeven calibrate`` is run ``--runs`` times in a row (default mode,
   each into its own file), plus once with ``--quick``; the wall time of each
   is recorded.
2. Independently of the calibration code (no breakeven timing engine: a
   plain ``time.perf_counter`` loop alternating serial and parallel calls),
   the serial/parallel gain of sum, axpy and exp (float64) is measured on a
   grid of ratio sqrt(2) up to 2^22, and the crossover located two ways:
   strictly (the smallest size from which parallel is faster at every
   larger size) and smoothed (where an isotonic fit of the log gain crosses
   0); and the regret of each calibrated threshold (the most time its
   choice loses at any grid size) is computed from the same gains.  The
   calls are the public ones a user makes (``breakeven.sum(x)``, ...) with
   the thread count forced by ``breakeven.threads``, so, like the
   calibration, the crossover includes what dispatch itself costs per call;
   the bare kernels' (smoothed) crossover is shown beside it.
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
from _report import emit, header, row

import breakeven
from breakeven._core.openmp import usable_cpus
from breakeven._kernels.registry import KERNELS
from breakeven._profile import load_profile

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


def independent_gains(name: str, threads: int, rounds: int = 15,
                      bare: bool = False) -> tuple[list[int], list[float]]:
    """Grid sizes and the median gain serial time / parallel time at each."""
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
    return sizes, gains


def first_above(sizes, gains, limit: float) -> int | None:
    """The smallest size from which parallel wins by ``limit`` at every
    larger size (strict: one noisy size near 1 moves it far)."""
    for i in range(len(sizes)):
        if all(g > limit for g in gains[i:]):
            return sizes[i]
    return None


def isotonic(values: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in least squares
    (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] \
                > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out += [s / c] * c
    return out


def smooth_crossover(sizes, gains) -> int | None:
    """Where a non-decreasing fit of log gain against size crosses 0,
    interpolated in log size: the crossover with the noise of single sizes
    averaged out (gain grows with size as the team's cost is amortised)."""
    fit = isotonic([math.log(g) for g in gains])
    for i, f in enumerate(fit):
        if f > 0:
            if i == 0:
                return sizes[0]
            f0 = fit[i - 1]
            la, lb = math.log(sizes[i - 1]), math.log(sizes[i])
            return int(round(math.exp(la + (lb - la) * (-f0) / (f - f0))))
    return None


def regret(sizes, gains, threshold: int | None) -> float:
    """The worst, over the grid, of the time a threshold's choice takes
    against the faster of serial and parallel, from the independent gains."""
    worst = 1.0
    for n, g in zip(sizes, gains, strict=True):
        parallel = threshold is not None and n >= threshold
        worst = max(worst, 1 / g if parallel else g)
    return worst


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

    lines += header(("kernel (float64)", "independent crossover: strict",
                     "... at 5% gain", "... smoothed", "bare kernels' (smoothed)",
                     "calibrated hot thresholds", "spread max/min",
                     "worst ratio to strict", "... to smoothed", "worst regret"),
                    "lrrrrlrrrr")

    details: list[str] = []

    def worst(ts, ref):
        if not ref or not all(ts):
            return math.inf
        return max(max(t / ref, ref / t) for t in ts)

    for name in CHECKED:
        sizes, gains = independent_gains(name, threads)
        cross, cross5 = first_above(sizes, gains, 1.0), first_above(sizes, gains, 1.05)
        smooth = smooth_crossover(sizes, gains)
        bare = smooth_crossover(*independent_gains(name, threads, bare=True))
        thr = [p.threshold(name, "float64") for p in profiles]
        known = [t for t in thr if t]
        spread = (max(known) / min(known) if len(known) == len(thr) and known
                  else math.inf)
        lost = max(regret(sizes, gains, t) for t in thr)
        line = row((name, cross, cross5, smooth, bare,
                    ", ".join(str(t) for t in thr), f"{spread:.2f}",
                    f"{worst(thr, cross):.2f}", f"{worst(thr, smooth):.2f}",
                    f"{lost:.2f}"))
        details.append(f"- {name}: gain serial/parallel by size: " + ", ".join(
            f"{n}: {g:.2f}" for n, g in zip(sizes, gains, strict=True)))
        lines.append(line)
        print(line, file=sys.stderr)
    lines += ["", "Strict: the smallest grid size from which parallel is faster at "
              "every larger size. Smoothed: where a non-decreasing (isotonic) fit "
              "of log gain crosses 0, interpolated. Worst regret: the most time "
              "any run's threshold costs at a grid size against the faster "
              "variant there, from the independent gains below.", "", *details,
              "", "All kernels, each run (hot threshold, float64 / float32):", "",
              *header(("kernel", *(f"run {i + 1}" for i in range(args.runs)),
                       "spread"), "l" * (args.runs + 2))]
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
        lines.append(row((name, *(f"{cells[0][i]} / {cells[1][i]}"
                                   for i in range(args.runs)), spread)))
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
