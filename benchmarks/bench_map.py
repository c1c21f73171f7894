"""breakeven.map against fixed ways of running a batch, in one run, interleaved.

Three batches, for ``sum`` and ``exp`` (float64):

- small: 10^4 arrays of 2^8 elements;
- large: 4 arrays of 2^22 elements;
- mixed: 2000 x 2^8, 200 x 2^14 and 4 x 2^20 elements, shuffled.

Each is run by

- ``breakeven.map`` (its own plan, shown);
- always-inner: ``[breakeven.f(x) for x in items]``, each call dispatched;
- always-outer: the items in 4 batches per worker over joblib's threading
  backend with every usable CPU a worker, each call serial;
- a plain Python loop of NumPy's function.

    python benchmarks/bench_map.py [--quick] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys

import numpy as np
from _report import emit, fmt_ratio, header, row
from joblib import Parallel, delayed

import breakeven as be
from breakeven import testing
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.openmp import usable_cpus

# The target: map's worst median ratio to the better fixed plan, at most.
TARGET = 1.15
NUMPY = {"sum": np.sum, "exp": np.exp}


def batches(rng, quick: bool) -> dict[str, list]:
    scale = 4 if quick else 1
    small = [rng.standard_normal(2 ** 8) for _ in range(10_000 // scale)]
    large = [rng.standard_normal(2 ** 22 // scale) for _ in range(4)]
    mixed = ([rng.standard_normal(2 ** 8) for _ in range(2000 // scale)]
             + [rng.standard_normal(2 ** 14) for _ in range(200 // scale)]
             + [rng.standard_normal(2 ** 20 // scale) for _ in range(4)])
    order = rng.permutation(len(mixed))
    return {"small (10^4 x 2^8)": small, "large (4 x 2^22)": large,
            "mixed": [mixed[i] for i in order]}


def _serial_batch(func, items):
    with be.threads(1):
        return [func(x) for x in items]


def always_outer(func, items, workers):
    tasks = min(len(items), 4 * workers)
    n = len(items)
    parts = Parallel(n_jobs=workers, backend="threading")(
        delayed(_serial_batch)(func, items[i * n // tasks:(i + 1) * n // tasks])
        for i in range(tasks))
    return [r for p in parts for r in p]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    args = ap.parse_args(argv)
    workers = usable_cpus()
    prof = testing.profile()
    rng = np.random.default_rng(8)
    reps = 5 if args.quick else 21
    out = [
        "# breakeven.map against fixed ways of running a batch",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.machine()}, {workers} usable CPUs; breakeven "
        f"{be.__version__}, numpy {np.__version__}",
        f"- profile: {prof.source} (host {prof.fingerprint.key}); joblib "
        f"overhead in it: {prof.batch or 'not calibrated'}",
        f"- medians of {reps} interleaved timings of each batch (each timing "
        "repeats the batch for at least 50 ms, garbage collection off as in "
        "timeit); ratios to the better of always-inner and always-outer, "
        "median [min-max] of timing-wise ratios",
        "",
        *header(("kernel", "batch", "map's plan", "map", "always-inner",
                 "always-outer", "NumPy loop", "map / better"), "lllrrrrr"),
    ]
    worst = 0.0
    for name in ("sum", "exp"):
        func, ref = getattr(be, name), NUMPY[name]
        for label, items in batches(rng, args.quick).items():
            print(f"{name} {label} ...", file=sys.stderr)
            plan = be.explain(be.map, func, items)
            cands = {
                "map": lambda f=func, it=items: be.map(f, it),
                "inner": lambda f=func, it=items: [f(x) for x in it],
                "outer": lambda f=func, it=items: always_outer(f, it, workers),
                "numpy": lambda f=ref, it=items: [f(x) for x in it],
            }
            # as timeit does: no garbage collection while timing (a batch of
            # 10^4 results triggers collections at arbitrary points, and
            # which candidate pays for them is chance)
            gc.collect()
            gc.disable()
            try:
                t = time_interleaved(cands, repeats=reps,
                                     min_batch_time=0.01 if args.quick else 0.05)
            finally:
                gc.enable()
            runs = [min(i, o) for i, o in zip(t["inner"].samples,
                                              t["outer"].samples, strict=True)]
            ratios = sorted(m / b for m, b in zip(t["map"].samples, runs,
                                                  strict=True))
            med = ratios[len(ratios) // 2]
            worst = max(worst, med)
            shown = plan.variant if plan.variant == "inner" else \
                f"{plan.variant} {plan.workers}x{plan.threads}"
            out.append(row((name, label, shown, *(
                f"{t[c].median * 1e3:.2f} ms" for c in ("map", "inner", "outer",
                                                        "numpy")),
                fmt_ratio((med, ratios[0], ratios[-1])))))
    out += ["", f"Worst median ratio of map to the better fixed plan: {worst:.2f} "
            f"(target {TARGET:g}).", ""]
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
