"""Calibration on simulated many-core hosts: regret and calibration time.

For each preset host of :data:`breakeven.testing.HOSTS` (8 to 192 cores),
a default calibration runs in simulated time (the cost model of
:mod:`breakeven.testing`, its noise, bursts and interference included), and
each calibrated hot table is judged against the model's best thread count
at every work from 2^8 to 2^26 (four sizes per octave):

- integrated regret: the mean over those sizes of time(table) / time(best) - 1;
- max regret: the largest of them;

beside the same regrets of fixed rules (every CPU always, as OpenMP's and
scikit-learn's default; every physical core; PyTorch's fixed grain).
Each host is calibrated with several noise seeds; the tables give the
worst seed.  No wall-clock time is measured: the figures are the model's.

    python benchmarks/bench_simulated.py [--output benchmarks/results/simulated.md]
        [--seeds 3] [--plot benchmarks/results/simulated.png]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
from _report import emit, header, row, table

import breakeven as be
from breakeven import testing
from breakeven._calibrate import Settings, thread_candidates

# Targets, judged below: every preset's calibrated tables lose at most this
# much time integrated over the sizes, for each class of kernel; a default
# calibration keeps to its budget in simulated time.
TARGET_REGRET = 0.05
TARGET_SECONDS = Settings().budget
# The kernel that stands for each class in the summary.
CLASSES = {"memory-bound": "sum", "compute-bound": "exp", "BLAS-calling": "nearest"}
GRAIN = f"grain {testing.TORCH_GRAIN}"  # PyTorch's rule, by its name in fixed_rules


def judge(host, profile) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """{(kernel, dtype): {rule: (integrated, max)}} for the calibrated tables
    and the fixed rules."""
    out = {}
    rules = testing.fixed_rules(host)
    for (name, dtype) in sorted(profile.sweeps):
        model = testing.KERNEL_MODELS[name]
        steps = profile.steps(name, dtype, "hot")
        rule = testing.table_rule(steps)
        row = {"calibrated": testing.regret(host, model, rule, dtype)}
        for rule, f in rules.items():
            row[rule] = testing.regret(host, model, f, dtype)
        out[(name, dtype)] = row
    return out


def run_host(host, seeds: int):
    worst: dict = {}
    seconds, points, example = [], [], None
    for seed in range(seeds):
        sim = testing.Simulation(host, seed=seed)
        profile = sim.calibrate()
        seconds.append(profile.elapsed)
        points.append(sim.points)
        if example is None:
            example = profile
        for key, regrets in judge(host, profile).items():
            cur = worst.setdefault(key, regrets)
            if regrets["calibrated"][0] > cur["calibrated"][0]:
                worst[key] = regrets
    return worst, seconds, points, example


def fmt(r: tuple[float, float]) -> str:
    return f"{100 * r[0]:.1f}% / {100 * r[1]:.0f}%"


def plot(path: Path, host, profile) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    works = [int(round(2 ** (e / 4))) for e in range(32, 105)]
    fig, axes = plt.subplots(1, len(CLASSES), figsize=(12, 3.6), sharey=True)
    for ax, (cls, name) in zip(axes, CLASSES.items(), strict=True):
        model = testing.KERNEL_MODELS[name]
        best = [host.best(model, w)[0] for w in works]
        rule = testing.table_rule(profile.steps(name, "float64", "hot"))
        ax.step(works, best, where="post", label="model's best", color="0.6", lw=3)
        ax.step(works, [rule(w) for w in works], where="post",
                label="calibrated table", color="C0")
        grain = testing.fixed_rules(host)[GRAIN]
        ax.step(works, [grain(w) for w in works], where="post",
                label=GRAIN, color="C3", ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(f"{name} ({cls}), float64")
        ax.set_xlabel("work (elements)")
    axes[0].set_ylabel("threads")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"simulated {host.name}: {host.cores} cores, {host.nodes} "
                 f"NUMA node(s), {host.cpus} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path,
                    default=Path("benchmarks/results/simulated.md"))
    ap.add_argument("--plot", type=Path,
                    default=Path("benchmarks/results/simulated.png"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one seed")
    args = ap.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    if seeds < 1:
        ap.error("--seeds must be at least 1")

    hosts = list(testing.HOSTS.values())
    lines = [
        "# Calibration on simulated many-core hosts",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- breakeven {be.__version__}, numpy {np.__version__}",
        f"- command: `python benchmarks/bench_simulated.py --seeds {seeds}` "
        "(`make bench-scaling` runs it)",
        "- a cost model, not a measurement: figures are the model's "
        "(breakeven.testing.SimulatedHost); regret is judged over work "
        "2^8..2^26, four sizes per octave, the worst of "
        f"{seeds} noise seed(s)",
        "",
        "## Hosts",
        "",
        *table(("host", "cores", "NUMA nodes", "SMT", "CPUs", "candidates timed",
                "figures from"), "lrrrrll",
               [(h.name, h.cores, h.nodes, h.smt, h.cpus,
                 ", ".join(map(str, thread_candidates(h.cpus, h.topology()))),
                 h.source) for h in hosts]),
    ]
    results = {}
    for h in hosts:
        print(f"{h.name} ...", file=sys.stderr, flush=True)
        results[h.name] = run_host(h, seeds)

    fails = []
    lines += ["", "## Regret by class of kernel (float64)", "",
              "Integrated / max regret of each rule; the calibrated table's "
              f"target is at most {100 * TARGET_REGRET:.0f}% integrated.", "",
              *header(("host", "class (kernel)", "calibrated", "all CPUs",
                       "all cores", str(GRAIN)), "llrrrr")]
    for h in hosts:
        worst = results[h.name][0]
        for cls, name in CLASSES.items():
            regrets = worst[(name, "float64")]
            lines.append(row((h.name, f"{cls} ({name})", *(
                fmt(regrets[rule]) for rule in ("calibrated", "all CPUs",
                                                "all cores", GRAIN)))))
    lines += ["", "## Every kernel and dtype", "",
              "Integrated / max regret of the calibrated table.", "",
              *header(("kernel", "dtype", *(h.name for h in hosts)),
                      "ll" + "r" * len(hosts))]
    for key in sorted(results[hosts[0].name][0]):
        cells = []
        for h in hosts:
            r = results[h.name][0][key]["calibrated"]
            cells.append(fmt(r))
            if r[0] > TARGET_REGRET:
                fails.append(f"{h.name} {key[0]} {key[1]}: integrated regret "
                             f"{100 * r[0]:.1f}%")
        lines.append(row((key[0], key[1], *cells)))
    lines += ["", "## Calibration time (simulated seconds)", "",
              f"Target: at most {TARGET_SECONDS:.0f} s, the default budget.", "",
              *header(("host", "seconds (each seed)", "sizes measured (each seed)"),
                      "lll")]
    for h in hosts:
        _, seconds, points, _ = results[h.name]
        lines.append(row((h.name, ", ".join(f"{s:.1f}" for s in seconds),
                          ", ".join(map(str, points)))))
        if max(seconds) > TARGET_SECONDS:
            fails.append(f"{h.name}: calibration took {max(seconds):.1f} s")
    if args.plot:
        big = hosts[-1]
        plot(args.plot, big, results[big.name][3])
        lines += ["", f"![chosen threads against the model's best on {big.name}]"
                  f"({args.plot.name})"]
    lines += ["", "## Targets", ""]
    lines += [f"- FAIL: {f}" for f in fails] or [
        f"- PASS: integrated regret at most {100 * TARGET_REGRET:.0f}% for every "
        f"host, kernel and dtype; every calibration within {TARGET_SECONDS:.0f} s"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    emit(lines, args.output)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
