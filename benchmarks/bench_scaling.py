"""Speed-up against threads on this host, and the calibrated table against
the best thread count measured.

For each built-in kernel (float64) and work 2^16, 2^18, ..., 2^26, the bare
serial kernel and the bare parallel kernel at every thread count
calibration would try here (powers of two, the physical cores, one NUMA
node, all usable CPUs; and the count the profile's hot table gives) are
timed interleaved, batch by batch.  The record gives each count's speed-up
over serial (median of the paired batch ratios [min-max]), the fastest
count, the table's count, and the table's loss against the fastest (its
regret).  On a 2-CPU host the only choice is 1 or 2; on a big one this is
the run that shows where the kernels stop scaling.

    python benchmarks/bench_scaling.py [--output benchmarks/results/scaling-<host>.md]
        [--plot ...png] [--quick] [--max-exp 26]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from _common import ratio_range, stamp
from _report import emit, fmt_ratio, fmt_time, header, row

import breakeven as be
from breakeven import testing
from breakeven._calibrate import thread_candidates
from breakeven._calibrate.timing import time_interleaved
from breakeven._cpu import topology
from breakeven._kernels.registry import BUILTINS
from breakeven._profile.steps import threads_for


def host_label() -> str:
    """``<cpu model>-<n>cpu``, lower case, for the record's file name."""
    fp = testing.profile().fingerprint
    model = re.sub(r"[^a-z0-9]+", "-", fp.cpu.lower()).strip("-")[:40] or "cpu"
    return f"{model}-{be.usable_cpus()}cpu"


def measure(kernel, work: int, counts: list[int], repeats: int, batch: float):
    args = kernel.sample(work, np.float64, np.random.default_rng(work))
    cands = {"1": lambda: kernel.serial(*args)}
    for t in counts:
        if t > 1:
            cands[str(t)] = lambda t=t: kernel.parallel(*args, t)
    return int(kernel.work(*args)), time_interleaved(cands, repeats=repeats,
                                                     min_batch_time=batch)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=None,
                    help="default benchmarks/results/scaling-<host>.md")
    ap.add_argument("--plot", default=None, help="default: the output, as .png")
    ap.add_argument("--quick", action="store_true",
                    help="sizes up to 2^20, 3 batches (a smoke run)")
    ap.add_argument("--max-exp", type=int, default=26)
    args = ap.parse_args(argv)
    top = 20 if args.quick else args.max_exp
    if not 16 <= top <= 30:
        ap.error("--max-exp must be between 16 and 30")
    repeats, batch = (3, 0.005) if args.quick else (5, 0.02)
    out = Path(args.output or f"benchmarks/results/scaling-{host_label()}.md")
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")

    usable = be.usable_cpus()
    counts = thread_candidates(usable, topology())
    prof = testing.profile()
    works = [1 << e for e in range(16, top + 1, 2)]
    lines = ["# Speed-up against threads on this host", "", *stamp(),
             f"- command: `python benchmarks/bench_scaling.py"
             f"{' --quick' if args.quick else ''}` (`make bench-scaling`)",
             f"- thread counts timed: {', '.join(map(str, counts))} (and the "
             "table's, if another); bare kernels, float64, interleaved batches, "
             f"{repeats} per count", ""]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    regrets = []
    for name in BUILTINS:
        k = be.get_kernel(name)
        steps = prof.steps(name, "float64", "hot") if name in prof.tables else ((0, 1),)
        lines += [f"## {name}", "",
                  *header(("work", "serial", *(f"{t} threads" for t in counts[1:]),
                           "fastest", "table", "table's loss"),
                          "r" * (len(counts) + 4))]
        curves[name] = {}
        for w in works:
            print(f"{name} {w} ...", file=sys.stderr, flush=True)
            table_t = min(threads_for(steps, w), usable)
            timed = sorted(set(counts) | {table_t})
            work, tm = measure(k, w, timed, repeats, batch)
            med = {t: tm[str(t)].median for t in timed}
            speed = {t: ratio_range(tm["1"], tm[str(t)]) for t in timed}
            curves[name][work] = {t: speed[t][0] for t in timed}
            best = min(timed, key=lambda t: (med[t], t))
            loss = med[table_t] / med[best] - 1
            regrets.append(loss)
            lines.append(row((work, fmt_time(med[1]),
                              *(fmt_ratio(speed[t]) for t in counts[1:]),
                              best, table_t, f"{100 * loss:.0f}%")))
        lines.append("")
    lines += ["## Summary", "",
              f"- the table's loss against the fastest count measured: median "
              f"{100 * float(np.median(regrets)):.1f}%, mean "
              f"{100 * float(np.mean(regrets)):.1f}%, worst "
              f"{100 * max(regrets):.0f}% over {len(regrets)} kernel sizes",
              f"- profile: {prof.source}", ""]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(curves), figsize=(3 * len(curves), 3),
                                 sharey=True)
        for ax, (name, by_work) in zip(axes, curves.items(), strict=True):
            for work, sp in by_work.items():
                ts = sorted(sp)
                ax.plot(ts, [sp[t] for t in ts], marker="o", label=f"{work:.0e}")
            ax.plot([1, usable], [1, usable], color="0.7", ls=":")
            ax.set_xscale("log", base=2)
            ax.set_title(name)
            ax.set_xlabel("threads")
        axes[0].set_ylabel("speed-up over serial")
        axes[-1].legend(fontsize=6, title="work")
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        lines += [f"![speed-up against threads]({plot.name})", ""]
    except ImportError:
        lines += ["(matplotlib not installed: no plot)", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    emit(lines, str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
