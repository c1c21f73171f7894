"""Dispatch against fixed rules, in one run, interleaved.

(a) The envelope: for every built-in and the docs' example library's kernel
    (``mykernels.logistic``, one prange body asking the Cython API; it is
    calibrated first, in a short run, and added to the profile in use) over
    work 2^4..2^24, the dispatched call against the serial kernel, the
    parallel kernel at all usable CPUs, and a fixed grain size of 32768
    (PyTorch's): each as a ratio to min(serial, parallel) measured in the
    same batch rotation (for the one-body kernel, serial and parallel are
    its call under ``threads(1, exact=True)`` and ``threads(n, exact=True)``).
    Every cell is measured in each of ``--runs`` runs (default 5) and shown
    as the median over them, beside each run's figure.
(b) The alternating loop: a 200x200 ``A @ B`` and a 64k-element ``exp`` in a
    loop, with the exp serial or parallel and BLAS at 1 or at its default
    threads, against ``breakeven.exp`` left to itself (BLAS at its default);
    each batch after 150 ms idle, so none inherits another's spinning threads.
(c) Overhead at n=16: ``breakeven.sum`` against a direct call of the serial
    kernel and against ``np.sum``; a user's relu (``_userkernels``, calibrated
    first) through ``@breakeven.kernel`` and as one body asking the Cython
    API, against a direct call of its serial kernel; and the Cython API's
    begin/end pair alone, timed by a loop in C (and for a kernel without a
    table, decided by the estimate).
(d) The controls: ``with breakeven.threads(2):`` and ``with
    breakeven.section():`` entered and left, beside a small call they may
    wrap.

    python benchmarks/bench_dispatch.py [--quick] [--runs N] [--output FILE.md]

The targets each figure is judged by are declared in ``TARGETS`` below.

The decisions come from the profile dispatch would use (``breakeven show``);
the header names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import platform
import sys
import time

import _userkernels
import numpy as np
from _common import Staged, add_runs_option, dropin, ratio_range, runs_option
from _report import emit, fmt_ratio, header, row, table, targets_table
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven import testing
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.openmp import usable_cpus
from breakeven._kernels.registry import BUILTINS, KERNELS

GRAIN = testing.TORCH_GRAIN
# idle seconds before each batch of the alternating loop (see alternating)
SETTLE = 0.15
# The example library's kernel, in the envelope beside the built-ins.
EXAMPLE = "mykernels.logistic"

# What each figure must meet (the summary says which do).
TARGETS = {
    "envelope max": 1.10,          # dispatched / min(serial, parallel)
    "envelope geometric mean": 1.03,
    "alternating loop": 1.20,      # breakeven.exp / best fixed configuration
    "decorator n=16": 1.10,        # @breakeven.kernel relu / its serial kernel
    "begin/end pair ns": 50.0,     # the Cython API's pair, in a C loop
    # breakeven.sum of 16 elements / its serial kernel called from Python:
    # 0.22 (114 / 526 ns) in the record of the dispatch this core replaced
    "sum n=16 / kernel": 0.25,
    "threads() us": 0.5,           # `with breakeven.threads(2): pass`
    "section() us": 15.0,          # `with breakeven.section(): pass`
}



def envelope(sizes, repeats, out, runs=1):
    """(a), measured ``runs`` times over every cell; each cell's figures are
    the medians over the runs of its per-run ratios."""
    threads = usable_cpus()
    rng = np.random.default_rng(0)
    names = [n for n in KERNELS if n in BUILTINS] + [EXAMPLE]
    cells = {}  # (name, lg) -> (args, work)
    for name in names:
        for lg in sizes:
            args = KERNELS[name].sample(1 << lg, np.dtype("float64"), rng)
            cells[(name, lg)] = (args, KERNELS[name].work(*args))
    per_run: dict = {key: [] for key in cells}
    blas = ThreadpoolController().limit(limits=1, user_api="blas")
    with blas:
        for run in range(runs):
            for (name, lg), (args, _work) in cells.items():
                cands, around = _candidates(name, args, threads)
                t = time_interleaved(cands, around=around, repeats=repeats,
                                     min_batch_time=0.005)
                s = np.array(t["serial"].samples)
                p = np.array(t["parallel"].samples)
                best = np.minimum(s, p)
                r_d = float(np.median(np.array(t["dispatched"].samples) / best))
                r_s = float(np.median(s / best))
                r_p = float(np.median(p / best))
                per_run[(name, lg)].append((r_d, r_s, r_p))
            print(f"envelope run {run + 1} of {runs} done", file=sys.stderr,
                  flush=True)
    title = "## (a) Envelope: time / min(serial, parallel), hot loop"
    out.append(title + (f", median over {runs} runs\n" if runs > 1 else "\n"))
    out += header(("kernel", "work", "dispatched", "always serial",
                   "always parallel", f"grain {GRAIN}", "decision",
                   *(["dispatched, each run"] if runs > 1 else [])),
                  "lrrrrrl" + ("l" if runs > 1 else ""))
    ratios, worst_single = [], 0.0
    for (name, lg), (_args, work) in cells.items():
        rs = per_run[(name, lg)]
        r_d, r_s, r_p = (float(np.median([r[i] for r in rs])) for i in range(3))
        r_g = r_p if work >= GRAIN else r_s
        d = be.decide(name, work, idle=0)
        ratios.append(r_d)
        worst_single = max(worst_single, max(r[0] for r in rs))
        how = f"{d.variant} {d.threads}" if d.variant == "parallel" else d.variant
        each = [", ".join(f"{r[0]:.2f}" for r in rs)] if runs > 1 else []
        out.append(row((name, work, f"{r_d:.2f}", f"{r_s:.2f}", f"{r_p:.2f}",
                        f"{r_g:.2f}", how, *each)))
    gmean = math.exp(float(np.mean(np.log(ratios))))
    out.append("")
    out.append(f"Dispatched / min(serial, parallel) over {len(ratios)} points: "
               f"max {max(ratios):.2f}, geometric mean {gmean:.3f}"
               + (f" (medians over {runs} runs; the worst single run's cell: "
                  f"{worst_single:.2f})." if runs > 1 else "."))
    out.append("")
    return max(ratios), gmean


def _candidates(name, args, threads):
    """(candidates, around) for one envelope cell: the dispatched call, and
    the kernel serial and parallel at all usable CPUs."""
    k = KERNELS[name]
    if k.serial is not None:  # a built-in: its bare variants
        return {"dispatched": dropin(name, args),
                "serial": lambda k=k, a=args: k.serial(*a),
                "parallel": lambda k=k, a=args: k.parallel(*a, threads)}, None
    # one body: its call at the forced counts (dispatch's cost in all three)

    def call(f=k.call, a=args):
        return f(*a)

    return ({"dispatched": call, "serial": call, "parallel": call},
            {"serial": lambda: be.threads(1, exact=True),
             "parallel": lambda: be.threads(threads, exact=True)})


def calibrate_kernels(budget: float, out) -> None:
    """Calibrate the kernels of other libraries measured here (the example
    library's, the user's relu of (c)) and add them to the profile in use,
    as ``breakeven calibrate --module ...`` would: they are measured with
    tables, as the built-ins are."""
    _userkernels.load_example()
    _userkernels.load()
    names = [EXAMPLE] + [n for n in KERNELS if n.startswith("bench.")]
    prof = testing.profile()
    cal = be.calibrate(names, budget=budget, quick=True, progress=False,
                       dtypes=["float64"])
    merged = dataclasses.replace(prof, tables={**prof.tables, **cal.tables})
    be.use_profile(merged)
    out.append(f"- {', '.join(names)}: calibrated here first ({budget:g} s "
               f"budget, {cal.elapsed:.1f} s); {EXAMPLE}'s hot table "
               f"{list(cal.steps(EXAMPLE, 'float64', 'hot'))}")


def alternating(iters, repeats, out, details=None):
    """(b) A @ B then exp, in a loop.  ``details``, a dict, receives the
    timings (``timings``, ``naive``: the name of both libraries at their
    defaults, ``best``: the best fixed configuration's name)."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 200))
    B = rng.standard_normal((200, 200))
    x = rng.uniform(-5, 5, 1 << 16)
    o = np.empty_like(x)
    threads = usable_cpus()
    k = KERNELS["exp"]
    ctl = ThreadpoolController()
    default_blas = max(lib.num_threads for lib in ctl.select(user_api="blas")
                       .lib_controllers)

    def loop(exp_call, blas_threads):
        def run():
            with ctl.limit(limits=blas_threads, user_api="blas"):
                for _ in range(iters):
                    A @ B
                    exp_call()
        return run

    configs = {
        "serial exp, BLAS 1": loop(lambda: k.serial(x, o), 1),
        f"serial exp, BLAS {default_blas}": loop(lambda: k.serial(x, o),
                                                  default_blas),
        "parallel exp, BLAS 1": loop(lambda: k.parallel(x, o, threads), 1),
        f"parallel exp, BLAS {default_blas}": loop(lambda: k.parallel(x, o, threads),
                                                    default_blas),
        f"breakeven.exp, BLAS {default_blas}": loop(lambda: be.exp(x, out=o),
                                                     default_blas),
    }
    # the parts alone, for the slowdown figure
    t_mm = min(_time(lambda: A @ B, 200) for _ in range(5))
    t_exp = min(_time(lambda: k.parallel(x, o, threads), 200) for _ in range(5))
    # Each batch starts after SETTLE seconds idle, outside the timed region,
    # so that no configuration inherits the threads another left spinning
    # (OpenBLAS's workers spin ~0.1 s after a call).
    def settle():
        time.sleep(SETTLE)

    staged = Staged({name: (fn, settle, None) for name, fn in configs.items()})
    with staged:
        t = time_interleaved(staged, repeats=repeats, min_batch_time=0.0)
    best = min(v.median for name, v in t.items() if not name.startswith("breakeven"))
    out.append(f"## (b) Alternating 200x200 A @ B and 64k exp, {iters} iterations\n")
    out.append(f"Parts alone: A @ B {t_mm * 1e6:.0f} us, parallel exp "
               f"{t_exp * 1e6:.0f} us per call.\n")
    out += table(("configuration", "time per iteration", "vs best fixed",
                  "vs parts alone"), "lrrr",
                 [(name, f"{v.median / iters * 1e6:.0f} us",
                   f"{v.median / best:.2f}",
                   f"{v.median / iters / (t_mm + t_exp):.2f}")
                  for name, v in t.items()])
    out.append("")
    ours = next(v.median for n, v in t.items() if n.startswith("breakeven"))
    if details is not None:
        details["timings"] = t
        details["naive"] = f"parallel exp, BLAS {default_blas}"
        details["best"] = min((n for n in t if not n.startswith("breakeven")),
                              key=lambda n: t[n].median)
    return ours / best


def _time(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def overhead(repeats, out):
    """(c): the figures, as a dict."""
    from breakeven._kernels.reductions import sum_serial

    m = _userkernels.load()
    x = np.random.default_rng(2).standard_normal(16)
    o = np.empty_like(x)
    t = time_interleaved({
        "breakeven.sum": lambda: be.sum(x),
        "sum_serial (kernel)": lambda: sum_serial(x),
        "np.sum": lambda: np.sum(x),
        "relu_serial (kernel, float32/float64)": lambda: m.relu_serial(x, o),
        "@kernel relu, work=0": lambda: m.relu_pair(x, o),
        "@kernel relu, work=lambda": lambda: m.relu_pair_fn(x, o),
        "one body relu, plain serial loop": lambda: m.relu_branch(x, o),
        "one body relu, use_threads_if": lambda: m.relu(x, o),
        "relu64_serial (kernel, float64 only)": lambda: m.relu64_serial(x, o),
        "@kernel relu64, work=0": lambda: m.relu64_pair(x, o),
    }, repeats=repeats, min_batch_time=0.01)
    base = {"breakeven.sum": "sum_serial (kernel)", "np.sum": "sum_serial (kernel)",
            "@kernel relu64, work=0": "relu64_serial (kernel, float64 only)"}
    out.append("## (c) Overhead at n=16\n")
    out += header(("call", "median", "vs its kernel [min-max of batch ratios]"),
                  "lrr")
    ratios = {}
    for name, v in t.items():
        ref = base.get(name, "relu_serial (kernel, float32/float64)")
        r = ratio_range(v, t[ref]) if ref != name and "(kernel" not in name \
            else None
        ratios[name] = r
        out.append(row((name, f"{v.median * 1e9:.0f} ns",
                        fmt_ratio(r) if r else "(the kernel)")))
    ns = [m.begin_end_ns(be.get_kernel("bench.relu").slot, 16, 2_000_000)
          for _ in range(repeats)]
    pair = float(np.median(ns))
    # the same for a kernel without a table: the estimate decides each call
    be.register("bench.estimated", m.relu, work=0, sample=be.get_kernel(
        "bench.relu").sample)
    est = [m.begin_end_ns(be.get_kernel("bench.estimated").slot, 16, 2_000_000)
           for _ in range(repeats)]
    out.append("")
    out.append(f"The Cython API's begin/end pair alone (a call below its "
               f"threshold, in a C loop): {pair:.1f} ns (median of {len(ns)} "
               f"loops of 2,000,000; {min(ns):.1f}-{max(ns):.1f}); for a kernel "
               f"with no table, decided by the estimate: {np.median(est):.1f} ns "
               f"({min(est):.1f}-{max(est):.1f}).")
    out.append("")
    return {"sum n=16 ns": t["breakeven.sum"].median * 1e9,
            "sum n=16 / kernel": ratios["breakeven.sum"][0],
            "sum / np.sum": t["breakeven.sum"].median / t["np.sum"].median,
            "decorator n=16": ratios["@kernel relu, work=0"][0],
            "decorator64 n=16": ratios["@kernel relu64, work=0"][0],
            "one body n=16": ratios["one body relu, plain serial loop"][0],
            "begin/end pair ns": pair}


def controls(repeats, out):
    """(d): entering and leaving threads() and section()."""
    x = np.ones(16)

    def threads_block():
        with be.threads(2):
            pass

    def section_block():
        with be.section():
            pass

    t = time_interleaved({"with breakeven.threads(2): pass": threads_block,
                          "with breakeven.section(): pass": section_block,
                          "breakeven.sum of 16 elements": lambda: be.sum(x)},
                         repeats=repeats, min_batch_time=0.01)
    out.append("## (d) The controls, entered and left\n")
    out += table(("block", "median", "min"), "lrr",
                 [(name, f"{v.median * 1e6:.3f} us", f"{v.min * 1e6:.3f} us")
                  for name, v in t.items()])
    out.append("")
    return {"threads() us": t["with breakeven.threads(2): pass"].median * 1e6,
            "section() us": t["with breakeven.section(): pass"].median * 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    add_runs_option(ap, "the envelope and the alternating loop are measured; "
                        "each figure is the median over the runs", 5)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 5)
    out = [
        "# Dispatch against fixed rules",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.machine()}, {usable_cpus()} usable CPUs; breakeven "
        f"{be.__version__}, numpy {np.__version__}",
    ]
    calibrate_kernels(10.0 if args.quick else 30.0, out)
    prof = testing.profile()
    out += [
        f"- profile: {prof.source} (host {prof.fingerprint.key})",
        "- medians of interleaved batches; ratios are medians of batch-wise ratios",
        "",
    ]
    sizes = range(4, 25, 4) if args.quick else range(4, 25, 2)
    reps = 5 if args.quick else 9
    mx, gm = envelope(sizes, reps, out, runs)
    # the alternating loop too: the table is the first run's, the figure the
    # median over the runs
    alts = [alternating(20 if args.quick else 100, 3 if args.quick else 5,
                        out if run == 0 else [])
            for run in range(runs)]
    alt = float(np.median(alts))
    if runs > 1:
        out.append(f"breakeven.exp / best fixed configuration in each of {runs} "
                   "runs: " + ", ".join(f"{a:.2f}" for a in alts)
                   + f"; median {alt:.2f}.\n")
    figures = {"envelope max": mx, "envelope geometric mean": gm,
               "alternating loop": alt}
    figures.update(overhead(reps * 2, out))
    figures.update(controls(reps * 2, out))
    out += targets_table(figures, TARGETS)
    out.append(f"- n=16: breakeven.sum {figures['sum n=16 ns']:.0f} ns, "
               f"{figures['sum / np.sum']:.2f}x np.sum; a float64-only "
               f"relu through @kernel {figures['decorator64 n=16']:.2f}x its "
               f"kernel; one body (plain serial loop) "
               f"{figures['one body n=16']:.2f}x the fused serial kernel")
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
