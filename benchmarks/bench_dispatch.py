"""Dispatch against fixed rules, in one run, interleaved.

(a) The envelope: for every built-in over work 2^4..2^24, the dispatched
    drop-in function against the serial kernel, the parallel kernel at all
    usable CPUs, and a fixed grain size of 32768 (PyTorch's): each as a
    ratio to min(serial, parallel) measured in the same batch rotation.
    Every cell is measured in each of ``--runs`` runs (default 5) and shown
    as the median over them, beside each run's figure.
(b) The alternating loop: a 200x200 ``A @ B`` and a 64k-element ``exp`` in a
    loop, with the exp serial or parallel and BLAS at 1 or at its default
    threads, against ``breakeven.exp`` left to itself (BLAS at its default);
    each batch after 150 ms idle, so none inherits another's spinning threads.
(c) Overhead at n=16: ``breakeven.sum`` against a direct call of the serial
    kernel and against ``np.sum``.

    python benchmarks/bench_dispatch.py [--quick] [--runs N] [--output FILE.md]

The decisions come from the profile dispatch would use (``breakeven show``);
the header names it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time

import numpy as np
from _common import Staged, add_runs_option, dropin, emit, runs_option
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven import _dispatch
from breakeven._registry import KERNELS
from breakeven._threads import usable_cpus
from breakeven._timing import time_interleaved

GRAIN = 32768
# idle seconds before each batch of the alternating loop (see alternating)
SETTLE = 0.15


def envelope(sizes, repeats, out, runs=1):
    """(a), measured ``runs`` times over every cell; each cell's figures are
    the medians over the runs of its per-run ratios."""
    threads = usable_cpus()
    rng = np.random.default_rng(0)
    cells = {}  # (name, lg) -> (args, work)
    for name in KERNELS:
        for lg in sizes:
            args = KERNELS[name].sample(1 << lg, np.dtype("float64"), rng)
            cells[(name, lg)] = (args, KERNELS[name].work(*args))
    per_run: dict = {key: [] for key in cells}
    blas = ThreadpoolController().limit(limits=1, user_api="blas")
    with blas:
        for run in range(runs):
            for (name, lg), (args, _work) in cells.items():
                k = KERNELS[name]
                t = time_interleaved({
                    "dispatched": dropin(name, args),
                    "serial": lambda k=k, a=args: k.serial(*a),
                    "parallel": lambda k=k, a=args: k.parallel(*a, threads),
                }, repeats=repeats, min_batch_time=0.005)
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
    out.append("| kernel | work | dispatched | always serial | always parallel "
               f"| grain {GRAIN} | decision |"
               + (" dispatched, each run |" if runs > 1 else ""))
    out.append("|---|---:|---:|---:|---:|---:|---|" + ("---|" if runs > 1 else ""))
    ratios, worst_single = [], 0.0
    for (name, lg), (_args, work) in cells.items():
        rs = per_run[(name, lg)]
        r_d, r_s, r_p = (float(np.median([r[i] for r in rs])) for i in range(3))
        r_g = r_p if work >= GRAIN else r_s
        d = _dispatch.decide(name, "float64", work, KERNELS[name].uses_blas)
        ratios.append(r_d)
        worst_single = max(worst_single, max(r[0] for r in rs))
        how = f"{d.variant} {d.threads}" if d.variant == "parallel" else d.variant
        each = (" " + ", ".join(f"{r[0]:.2f}" for r in rs) + " |"
                if runs > 1 else "")
        out.append(f"| {name} | {work} | {r_d:.2f} | {r_s:.2f} | {r_p:.2f} | "
                   f"{r_g:.2f} | {how} |{each}")
    gmean = math.exp(float(np.mean(np.log(ratios))))
    out.append("")
    out.append(f"Dispatched / min(serial, parallel) over {len(ratios)} points: "
               f"max {max(ratios):.2f}, geometric mean {gmean:.3f}"
               + (f" (medians over {runs} runs; the worst single run's cell: "
                  f"{worst_single:.2f})." if runs > 1 else "."))
    out.append("")
    return max(ratios), gmean


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
    out.append("| configuration | time per iteration | vs best fixed "
               "| vs parts alone |")
    out.append("|---|---:|---:|---:|")
    for name, v in t.items():
        per = v.median / iters
        out.append(f"| {name} | {per * 1e6:.0f} us | {v.median / best:.2f} "
                   f"| {per / (t_mm + t_exp):.2f} |")
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
    from breakeven._reductions import sum_serial

    x = np.random.default_rng(2).standard_normal(16)
    t = time_interleaved({"breakeven.sum": lambda: be.sum(x),
                          "sum_serial (kernel)": lambda: sum_serial(x),
                          "np.sum": lambda: np.sum(x)}, repeats=repeats,
                         min_batch_time=0.01)
    base = t["sum_serial (kernel)"].median
    out.append("## (c) Overhead at n=16\n")
    out.append("| call | median | vs kernel |")
    out.append("|---|---:|---:|")
    for name, v in t.items():
        out.append(f"| {name} | {v.median * 1e9:.0f} ns | {v.median / base:.2f} |")
    out.append("")
    return t["breakeven.sum"].median / base, \
        t["breakeven.sum"].median / t["np.sum"].median


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output")
    add_runs_option(ap, "the envelope and the alternating loop are measured; "
                        "each figure is the median over the runs", 5)
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 5)
    prof = _dispatch.profile()
    out = [
        "# Dispatch against fixed rules",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.machine()}, {usable_cpus()} usable CPUs; breakeven "
        f"{be.__version__}, numpy {np.__version__}",
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
    ov_kernel, ov_np = overhead(reps * 2, out)
    out.append("## Summary\n")
    out.append(f"- envelope: max {mx:.2f}, geometric mean {gm:.3f}")
    out.append(f"- alternating loop: breakeven.exp / best fixed configuration "
               f"{alt:.2f}" + (f" (median of {runs} runs)" if runs > 1 else ""))
    out.append(f"- n=16 overhead: {ov_kernel:.2f}x the serial kernel, "
               f"{ov_np:.2f}x np.sum")
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
