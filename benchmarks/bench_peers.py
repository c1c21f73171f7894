"""breakeven side by side with NumPy, numexpr, Numba and scikit-learn.

Every figure is a ratio of times measured in one run, with the competitors
interleaved batch by batch (``breakeven._timing.time_interleaved``): the
median of the batch-wise ratios, with their min and max.

1. Peers.  For every built-in and size (work 2^4..2^24; for ``nearest``, X of
   n rows x 16 against 32 centres, work n*32*16): breakeven's drop-in function
   against NumPy (BLAS at 1 thread and at its default for the kernels NumPy
   computes with BLAS: ``dot``, ``nearest``), numexpr at its default threads
   where the operation is an expression (``sum``, ``axpy``, ``exp``), Numba
   ``@njit`` and ``@njit(parallel=True)`` loops written here (compile time
   excluded, reported apart) and, for ``nearest``, scikit-learn's
   ``pairwise_distances_argmin``.  Per size: the best peer and breakeven's
   ratio to it; cells where breakeven is slower are listed for explanation.
2. Thresholds in the wild.  In the same interleaved run, the drop-in
   function forced serial (``threads(1)``) and forced parallel
   (``threads(n, exact=True)``): a fixed rule's time is the one of these its
   rule picks (PyTorch's grain size 32768, numexpr's 2048-element cut-off,
   always parallel, always serial), compared with the calibrated dispatch.
   (``bench_dispatch.py`` compares dispatch with the bare kernels instead.)
3. Contention: (a) ``bench_dispatch.alternating`` (A @ B and a parallel exp
   in a loop); (b) ``nearest`` with BLAS uncapped and capped; (c) two and four
   Python threads calling a parallel kernel at once, with the core budget
   (breakeven) and without it (the bare parallel kernel in every thread);
   (d) breakeven inside ``joblib.Parallel`` workers, loky and threading;
   (e) lone calls after an idle gap (cold OpenMP team) and back-to-back calls.
   Each against the naive choice and the best configuration measured.

Calibration quality is ``bench_calibration.py``'s.  Optional peers that are
not installed are skipped with a note (``pip install .[bench]``).

    python benchmarks/bench_peers.py [--quick] [--output FILE.md]
                                     [--kernels sum,exp] [--sizes 10,16,22]

Writes FILE.md and, beside it, FILE-time.png and FILE-speedup.png.  Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import (
    Blas,
    Staged,
    add_runs_option,
    dropin,
    exp_job,
    fmt_ratio,
    fmt_time,
    ratio_range,
    runs_option,
    stamp,
    threads_stage,
)

import breakeven as be
from breakeven import testing
from breakeven._registry import KERNELS, NEAREST_D, NEAREST_M
from breakeven._threads import usable_cpus
from breakeven._timing import time_interleaved

ORDER = ("sum", "dot", "axpy", "exp", "cumsum", "histogram", "nearest")
BLAS_KERNELS = ("dot", "nearest")  # NumPy computes these with BLAS
NUMEXPR_EXPR = {"sum": "sum(x)", "axpy": "y + a * x", "exp": "exp(x)"}
GRAIN_TORCH = testing.TORCH_GRAIN
CUTOFF_NUMEXPR = 2048
# After a call at its default threads, OpenBLAS's workers spin ~0.1 s before
# they sleep (measured here: ~20 ms of CPU per 20 ms for 105 ms); an OpenMP
# team from another runtime spins up to ~10 ms.  A candidate that leaves
# threads spinning is followed by this much idle time, outside the timed
# batches, so that it does not slow down whichever candidate comes next.
SETTLE_BLAS = 0.12
SETTLE_OMP = 0.02

BE = "breakeven"
BE_SERIAL = "breakeven forced serial"
BE_PARALLEL = "breakeven forced parallel"
OURS = (BE, BE_SERIAL, BE_PARALLEL)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# optional peers
# ---------------------------------------------------------------------------


class Peers:
    """The optional libraries, and notes on the ones missing."""

    def __init__(self):
        self.notes: list[str] = []
        self.versions: dict[str, str] = {}
        self.ne = self.nb = self.sk_argmin = self.plt = None
        try:
            import numexpr

            self.ne = numexpr
            self.versions["numexpr"] = numexpr.__version__
        except ImportError:
            self.notes.append("numexpr is not installed: its columns are skipped")
        try:
            import numba

            self.nb = numba
            self.versions["numba"] = numba.__version__
        except ImportError:
            self.notes.append("numba is not installed: its columns are skipped")
        try:
            import sklearn
            from sklearn.metrics import pairwise_distances_argmin

            self.sk_argmin = pairwise_distances_argmin
            self.versions["scikit-learn"] = sklearn.__version__
        except ImportError:
            self.notes.append("scikit-learn is not installed: its nearest column is "
                              "skipped")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            self.plt = plt
            self.versions["matplotlib"] = matplotlib.__version__
        except ImportError:
            self.notes.append("matplotlib is not installed: no plots")
        import joblib
        import threadpoolctl

        self.versions["joblib"] = joblib.__version__
        self.versions["threadpoolctl"] = threadpoolctl.__version__
        self.numba_fns: dict[str, tuple] = {}
        self.compile_s: dict[str, tuple[float, float]] = {}

    def compile_numba(self, names) -> None:
        """JIT-compile the Numba loops for float64 (timed: first call on a
        tiny input, so compile time stays out of the comparison)."""
        if self.nb is None:
            return
        fns = numba_kernels(self.nb)
        rng = np.random.default_rng(9)
        for name in names:
            args = small_args(name, rng)
            times = []
            for fn in fns[name]:
                t0 = time.perf_counter()
                fn(*args)
                times.append(time.perf_counter() - t0)
            self.numba_fns[name] = fns[name]
            self.compile_s[name] = (times[0], times[1])
            log(f"  numba {name}: compiled in {times[0]:.2f} s / "
                f"{times[1]:.2f} s (parallel)")


def small_args(name, rng):
    args = KERNELS[name].sample(1024, np.dtype("float64"), rng)
    return numba_args(name, args)


def numba_args(name, args):
    """The Numba loops' arguments, from the registry's sample."""
    if name == "histogram":
        x, bins, lo, hi = args
        return (x, int(bins), float(lo), float(hi))
    if name == "axpy":
        return (float(args[0]), args[1], args[2])
    return args


def numba_kernels(nb):
    """Straightforward Numba loops: (serial @njit, parallel @njit with
    prange) per kernel.  No fastmath: like breakeven's kernels, these keep
    IEEE semantics, so a serial sum or dot is one dependent add chain."""
    njit, prange = nb.njit, nb.prange

    @njit
    def sum_s(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i]
        return s

    @njit(parallel=True)
    def sum_p(x):
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i]
        return s

    @njit
    def dot_s(x, y):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * y[i]
        return s

    @njit(parallel=True)
    def dot_p(x, y):
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i] * y[i]
        return s

    @njit
    def axpy_s(a, x, y):
        for i in range(x.shape[0]):
            y[i] += a * x[i]
        return y

    @njit(parallel=True)
    def axpy_p(a, x, y):
        for i in prange(x.shape[0]):
            y[i] += a * x[i]
        return y

    @njit
    def exp_s(x, out):
        for i in range(x.shape[0]):
            out[i] = math.exp(x[i])
        return out

    @njit(parallel=True)
    def exp_p(x, out):
        for i in prange(x.shape[0]):
            out[i] = math.exp(x[i])
        return out

    @njit
    def cumsum_s(x, out):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i]
            out[i] = s
        return out

    @njit(parallel=True)
    def cumsum_p(x, out):
        # two passes over blocks: scan each block, then add the carries
        n = x.shape[0]
        nb_ = nb.get_num_threads()
        chunk = (n + nb_ - 1) // nb_
        totals = np.zeros(nb_)
        for b in prange(nb_):
            s = 0.0
            for i in range(b * chunk, min(n, (b + 1) * chunk)):
                s += x[i]
                out[i] = s
            totals[b] = s
        carry = np.zeros(nb_)
        for b in range(1, nb_):
            carry[b] = carry[b - 1] + totals[b - 1]
        for b in prange(1, nb_):
            c = carry[b]
            for i in range(b * chunk, min(n, (b + 1) * chunk)):
                out[i] += c
        return out

    @njit
    def hist_s(x, bins, lo, hi):
        counts = np.zeros(bins, np.int64)
        scale = bins / (hi - lo)
        for i in range(x.shape[0]):
            v = x[i]
            if v >= lo and v <= hi:
                b = int((v - lo) * scale)
                if b >= bins:
                    b = bins - 1
                counts[b] += 1
        return counts

    @njit(parallel=True)
    def hist_p(x, bins, lo, hi):
        # per-thread private counts, merged at the end
        n = x.shape[0]
        nt = nb.get_num_threads()
        chunk = (n + nt - 1) // nt
        counts = np.zeros((nt, bins), np.int64)
        scale = bins / (hi - lo)
        for t in prange(nt):
            for i in range(t * chunk, min(n, (t + 1) * chunk)):
                v = x[i]
                if v >= lo and v <= hi:
                    b = int((v - lo) * scale)
                    if b >= bins:
                        b = bins - 1
                    counts[t, b] += 1
        return counts.sum(axis=0)

    @njit
    def near_row(X, C, i):
        best = np.inf
        arg = 0
        for j in range(C.shape[0]):
            s = 0.0
            for k in range(X.shape[1]):
                t = X[i, k] - C[j, k]
                s += t * t
            if s < best:
                best = s
                arg = j
        return arg

    @njit
    def near_s(X, C):
        out = np.empty(X.shape[0], np.intp)
        for i in range(X.shape[0]):
            out[i] = near_row(X, C, i)
        return out

    @njit(parallel=True)
    def near_p(X, C):
        out = np.empty(X.shape[0], np.intp)
        for i in prange(X.shape[0]):
            out[i] = near_row(X, C, i)
        return out

    return {"sum": (sum_s, sum_p), "dot": (dot_s, dot_p), "axpy": (axpy_s, axpy_p),
            "exp": (exp_s, exp_p), "cumsum": (cumsum_s, cumsum_p),
            "histogram": (hist_s, hist_p), "nearest": (near_s, near_p)}


# ---------------------------------------------------------------------------
# 1 and 2: peers, and fixed rules, in one interleaved run per cell
# ---------------------------------------------------------------------------


def nearest_sample(lg, rng):
    """X of n = max(1, 2^lg / (32*16)) rows x 16, C of 32 x 16."""
    n = max(1, (1 << lg) // (NEAREST_M * NEAREST_D))
    X = rng.standard_normal((n, NEAREST_D))
    C = rng.standard_normal((NEAREST_M, NEAREST_D))
    return (X, C)


def size_label(name, args):
    if name == "nearest":
        X, C = args
        return f"{X.shape[0]}x{C.shape[0]}x{X.shape[1]}"
    work = KERNELS[name].work(*args)
    lg = int(round(math.log2(work)))
    return f"2^{lg}" if 1 << lg == work else str(work)


def cell_candidates(name, args, peers: Peers, blas: Blas) -> Staged:
    """Everything timed for one kernel and size, in the order of the table."""
    k = KERNELS[name]
    n = usable_cpus()
    c: dict[str, object] = {
        BE: dropin(name, args),
        BE_SERIAL: (dropin(name, args), *threads_stage(1)),
        BE_PARALLEL: (dropin(name, args), *threads_stage(n, exact=True)),
    }
    ref = (lambda: k.reference(*args)) if name != "histogram" else \
        (lambda: np.histogram(args[0], args[1], (args[2], args[3])))
    if name in BLAS_KERNELS:
        c["numpy, BLAS 1"] = (ref, lambda: blas.set(1), lambda: blas.set(None))
        c[f"numpy, BLAS {blas.default}"] = (
            ref, None, lambda: time.sleep(SETTLE_BLAS) if blas.default > 1 else None)
    else:
        c["numpy"] = ref
    if peers.ne is not None and name in NUMEXPR_EXPR:
        ev = peers.ne.evaluate
        if name == "sum":
            x = args[0]
            c["numexpr"] = lambda: ev("sum(x)", local_dict={"x": x})
        elif name == "axpy":
            a, x, y = args
            c["numexpr"] = lambda: ev("y + a * x",
                                      local_dict={"a": a, "x": x, "y": y}, out=y)
        else:
            x, o = args
            c["numexpr"] = lambda: ev("exp(x)", local_dict={"x": x}, out=o)
    if name in peers.numba_fns:
        s, p = peers.numba_fns[name]
        na = numba_args(name, args)
        c["numba"] = lambda: s(*na)
        c["numba parallel"] = lambda: p(*na)
    if peers.sk_argmin is not None and name == "nearest":
        X, C = args
        c["scikit-learn"] = (lambda: peers.sk_argmin(X, C), None,
                             lambda: time.sleep(SETTLE_OMP))
    return Staged(c)


def check_peers(name, peers, blas) -> None:
    """Every candidate computes what NumPy does (on a small input)."""
    rng = np.random.default_rng(5)
    args = nearest_sample(14, rng) if name == "nearest" else \
        KERNELS[name].sample(4096, np.dtype("float64"), rng)
    fresh = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    cands = cell_candidates(name, fresh, peers, blas)
    want = None
    for cname in cands:
        if name == "axpy":
            fresh[2][:] = args[2]
        got = cands[cname]()
        cands.close()
        if name == "axpy":
            got = fresh[2].copy()
        elif name in ("exp", "cumsum"):
            got = fresh[1].copy()
        elif name == "histogram" and isinstance(got, tuple):
            got = got[0]
        got = np.asarray(got)
        if want is None:
            want = got
        elif not np.allclose(got, want, rtol=1e-9, atol=1e-9):
            raise AssertionError(f"{name}: {cname} disagrees with breakeven")


def measure_cells(names, sizes, repeats, min_batch, peers, blas):
    cells = []
    rng = np.random.default_rng(0)
    for name in names:
        check_peers(name, peers, blas)
        seen = set()
        t_kernel = time.perf_counter()
        for lg in sizes:
            if name == "nearest":
                args = nearest_sample(lg, rng)
            else:
                args = KERNELS[name].sample(1 << lg, np.dtype("float64"), rng)
            label = size_label(name, args)
            if label in seen:
                continue
            seen.add(label)
            work = KERNELS[name].work(*args)
            t0 = time.perf_counter()
            with cell_candidates(name, args, peers, blas) as cands:
                t = time_interleaved(cands, repeats=repeats,
                                     min_batch_time=min_batch)
            d = be.decide(name, work)
            cells.append({"kernel": name, "label": label, "work": work, "t": t,
                          "decision": f"{d.variant} {d.threads}"
                          if d.variant == "parallel" else d.variant})
            log(f"  {name} {label}: {time.perf_counter() - t0:.1f} s")
            del args
        log(f"{name}: {time.perf_counter() - t_kernel:.1f} s")
    return cells


def peer_names(t):
    return [n for n in t if n not in OURS]


def best_peer(t):
    return min(peer_names(t), key=lambda n: t[n].median)


def numpy_default(t):
    """The NumPy a user runs: BLAS at its default threads."""
    names = [n for n in t if n.startswith("numpy")]
    return names[-1]


def peers_section(cells, out, flagged):
    out.append("## 1. Peers\n")
    out.append("Median time per call of each candidate; `be/best` is breakeven's "
               "time over the best peer's (the peer with the lowest median), the "
               "median of batch-wise ratios [min-max]: below 1 breakeven is "
               "faster. `vs NumPy` is NumPy's time (BLAS at its default) over "
               "breakeven's. **Bold**: breakeven slower than the best peer. NumPy "
               "computes only dot and nearest with BLAS, so the other kernels "
               "have one NumPy column. `decision`: what dispatch decides for a "
               "call of this work in a loop, asked right after the cell "
               "(a back-off for contention shows here).\n")
    by_kernel: dict[str, list] = {}
    for c in cells:
        by_kernel.setdefault(c["kernel"], []).append(c)
    for name, rows in by_kernel.items():
        cols = peer_names(rows[0]["t"])
        out.append(f"### {name}\n")
        out.append("| size | breakeven | " + " | ".join(cols) +
                   " | best peer | be/best | vs NumPy | decision |")
        out.append("|---|---:|" + "---:|" * len(cols) + "---|---:|---:|---|")
        for c in rows:
            t = c["t"]
            bp = best_peer(t)
            r = ratio_range(t[BE], t[bp])
            sp = ratio_range(t[numpy_default(t)], t[BE])
            c["vs_best"], c["best"], c["vs_numpy"] = r, bp, sp
            cell = fmt_ratio(r)
            if r[0] > 1.0:
                cell = f"**{cell}**"
                flagged.append(c)
            times = " | ".join(fmt_time(t[n].median) for n in cols)
            out.append(f"| {c['label']} | {fmt_time(t[BE].median)} | {times} | "
                       f"{bp} | {cell} | {fmt_ratio(sp)} | {c['decision']} |")
        out.append("")


def explanations(flagged, out):
    out.append("### Where breakeven is slower than the best peer\n")
    if not flagged:
        out.append("Nowhere: breakeven is within 1.00x of the best peer at "
                   "every size measured.\n")
        return
    out.append("Generated from the data; each cell needs an explanation of why, "
               "and what would close the gap. `forced serial` / `forced "
               "parallel`: breakeven with `threads(1)` / "
               "`threads(n, exact=True)`, over the best peer, same batches.\n")
    for c in flagged:
        t = c["t"]
        bp = c["best"]
        fs = ratio_range(t[BE_SERIAL], t[bp])
        fp = ratio_range(t[BE_PARALLEL], t[bp])
        other = min(fs[0], fp[0])
        own = ratio_range(t[BE], t[BE_SERIAL] if fs[0] <= fp[0] else t[BE_PARALLEL])
        if other <= 1.0:
            hint = ("the other thread choice would have matched the peer: "
                    "a threshold question")
        elif own[0] > 1.05:
            hint = (f"dispatch itself costs {own[0]:.2f}x the better forced "
                    "variant here")
        else:
            hint = "both of breakeven's variants are slower: the kernel itself"
        out.append(f"- **{c['kernel']} {c['label']}**: {bp} is faster by "
                   f"{fmt_ratio(c['vs_best'])} (breakeven ran {c['decision']}; "
                   f"forced serial {fs[0]:.2f}, forced parallel {fp[0]:.2f}); "
                   f"data say: {hint}. Why: {why(c, bp)}")
    out.append("")


# Why breakeven loses a cell, and what would close the gap: written from the
# kernels' and peers' code and from the forced-variant figures, keyed by
# kernel, peer and size (log2 of the work).
WHY_NOISE = ("the batch-wise ratios straddle 1 ([min-max] includes values "
             "below 1): parity within this host's noise, not a measured loss.")
WHY = [
    ("dot", "numpy", 17, 99,
     "NumPy's dot is OpenBLAS's ddot, the same memory-bound loop; from 2^17 "
     "elements both run at the memory bandwidth the two vCPUs share (they "
     "behave as SMT siblings of one core), so neither can pull ahead. "
     "Closing it: nothing on this host; a host with more memory bandwidth "
     "per core lets the parallel kernel gain."),
    ("axpy", "numba parallel", 16, 99,
     "Numba's parallel loop and breakeven's parallel kernel are the same "
     "streaming loop on two threads, bound by memory bandwidth from 2^16 "
     "elements: parity. Closing it: nothing on this host."),
    ("histogram", "numba", 0, 15,
     "Numba's loop bins a value as int((v - lo) * scale) and skips NumPy's "
     "check against the edges, so its counts can differ from np.histogram's "
     "for values near a bin boundary; breakeven reproduces NumPy's bins bit "
     "for bit (edges computed as NumPy computes them, a check against them "
     "for values near a boundary), which costs the difference in these "
     "cells. Closing it: a vectorised (AVX-512) bin estimate with a masked "
     "boundary check."),
    ("histogram", "numba parallel", 16, 99,
     "both count into per-thread private rows over halves of the input and "
     "merge them; Numba's loop skips NumPy's check against the edges (see "
     "the 2^10-2^14 cells), which shows wherever the two threads are not "
     "held back by memory. Closing it: as for the serial cells."),
    ("nearest", "numba", 0, 99,
     "for 1-8 rows breakeven's fixed cost (argument checks, the output "
     "allocation, the |c|^2 pass over C, a BLAS gemm call) exceeds Numba's "
     "three nested loops. A direct loop without gemm was tried and gave no "
     "gain, the fixed cost being outside the product; closing it needs a C "
     "entry from the dispatch path that skips the Python-level kernel call."),
]


def why(c, peer: str) -> str:
    lg = int(round(math.log2(max(c["work"], 1))))
    ratio = ratio_range(c["t"][BE], c["t"][peer])
    for kernel, prefix, lo, hi, text in WHY:
        if kernel == c["kernel"] and peer.split(",")[0] == prefix and lo <= lg <= hi:
            if ratio[1] <= 1.0:
                return WHY_NOISE + " " + text
            return text
    if ratio[1] <= 1.0:
        return WHY_NOISE
    return "_not yet explained_ (a new loss: look at the forced variants)."


RULES = {
    "always serial": lambda work: False,
    "always parallel": lambda work: True,
    f"grain {GRAIN_TORCH} (PyTorch)": lambda work: work >= GRAIN_TORCH,
    f"cut-off {CUTOFF_NUMEXPR} (numexpr)": lambda work: work >= CUTOFF_NUMEXPR,
}


def rules_section(cells, out):
    out.append("## 2. Thresholds in the wild\n")
    out.append("A fixed rule's time is breakeven's drop-in call forced serial "
               "(`threads(1)`) or forced parallel (`threads(n, exact=True)`), as "
               "the rule says for the call's work (elements; n*m*d for "
               "nearest), measured in the same interleaved batches as section 1. "
               "Each figure is the rule's time over the calibrated dispatch's: "
               "above 1, what the rule costs on this host. The envelope against "
               "the bare kernels is in `dispatch.md`.\n")
    names = list(RULES)
    out.append("| kernel | size | " + " | ".join(names) + " |")
    out.append("|---|---|" + "---:|" * len(names))
    summary = {r: [] for r in names}
    for c in cells:
        t = c["t"]
        s = np.array(t[BE_SERIAL].samples)
        p = np.array(t[BE_PARALLEL].samples)
        d = np.array(t[BE].samples)
        figs = []
        for rname, rule in RULES.items():
            r = (p if rule(c["work"]) else s) / d
            med = float(np.median(r))
            summary[rname].append(med)
            figs.append(f"{med:.2f} [{r.min():.2f}-{r.max():.2f}]")
        out.append(f"| {c['kernel']} | {c['label']} | " + " | ".join(figs) + " |")
    out.append("")
    out.append("| rule | worst | geometric mean | cells above 1.10 |")
    out.append("|---|---:|---:|---:|")
    for rname, v in summary.items():
        g = math.exp(float(np.mean(np.log(v))))
        out.append(f"| {rname} | {max(v):.2f} | {g:.3f} | "
                   f"{sum(x > 1.10 for x in v)} of {len(v)} |")
    out.append("")


# ---------------------------------------------------------------------------
# 3: contention
# ---------------------------------------------------------------------------


def scenario(out, title, t, naive, note=""):
    """A configuration table: breakeven (the first entry) over each."""
    ours = next(iter(t))
    others = [n for n in t if n != ours]
    best = min(others, key=lambda n: t[n].median)
    out.append(f"{title}\n")
    if note:
        out.append(note + "\n")
    out.append("| configuration | median time | breakeven / this |")
    out.append("|---|---:|---:|")
    for n in t:
        tag = " (naive)" if n == naive else " (best)" if n == best else ""
        out.append(f"| {n}{tag} | {fmt_time(t[n].median)} | "
                   f"{fmt_ratio(ratio_range(t[ours], t[n]))} |")
    rb = ratio_range(t[ours], t[best])
    rn = ratio_range(t[ours], t[naive])
    out.append("")
    out.append(f"breakeven / best ({best}): {fmt_ratio(rb)}; "
               f"breakeven / naive ({naive}): {fmt_ratio(rn)}.\n")
    return rb


def contention_alternating(quick, out, results):
    import bench_dispatch

    log("contention (a): alternating A @ B and exp")
    sub: list[str] = []
    details: dict = {}
    bench_dispatch.alternating(20 if quick else 100, 3 if quick else 5, sub,
                               details)
    t = details["timings"]
    ours = next(n for n in t if n.startswith("breakeven"))
    t = {ours: t[ours], **{n: v for n, v in t.items() if n != ours}}
    iters = 20 if quick else 100
    parts = next((line for line in sub if line.startswith("Parts alone")), "")
    out.append("### (a) Alternating A @ B and a parallel kernel\n")
    out.append("`bench_dispatch.alternating` (a 200x200 `A @ B`, then `exp` of "
               f"2^16 elements, {iters} times per batch; see `dispatch.md`), run "
               f"here. {parts.strip()}\n")
    results["(a) alternating A @ B / exp"] = scenario(
        out, f"Time per batch of {iters} iterations:", t, details["naive"])


def contention_nearest(lgs, repeats, out, results, blas):
    log("contention (b): nearest, BLAS capped and uncapped")
    n = usable_cpus()
    rng = np.random.default_rng(3)
    out.append("### (b) nearest with BLAS uncapped and capped\n")
    out.append(f"The parallel kernel calls gemm from each of its {n} threads; "
               f"with BLAS at its default ({blas.default} threads) every gemm "
               "would start BLAS threads of its own. breakeven caps BLAS around "
               "its parallel calls itself (BLAS left at its default here).\n")
    for lg in lgs:
        X, C = nearest_sample(lg, rng)
        label = size_label("nearest", (X, C))
        t = _nearest_case(X, C, n, repeats, blas)
        results[f"(b) nearest {label}"] = scenario(
            out, f"nearest, X {label} (work 2^{lg}):", t,
            "parallel kernel, BLAS uncapped")


def _nearest_case(X, C, n, repeats, blas):
    k = KERNELS["nearest"]
    settle = (lambda: time.sleep(SETTLE_BLAS)) if blas.default > 1 else None
    cap = (lambda: blas.set(1), lambda: blas.set(None))
    return time_interleaved(Staged({
        BE: lambda: be.nearest(X, C),
        "parallel kernel, BLAS uncapped": (lambda: k.parallel(X, C, n), None,
                                           settle),
        "parallel kernel, BLAS 1": (lambda: k.parallel(X, C, n), *cap),
        "serial kernel, BLAS uncapped": (lambda: k.serial(X, C), None, settle),
        "serial kernel, BLAS 1": (lambda: k.serial(X, C), *cap),
        "numpy, BLAS uncapped": (lambda: k.reference(X, C), None, settle),
        "numpy, BLAS 1": (lambda: k.reference(X, C), *cap),
    }), repeats=repeats, min_batch_time=0.01)


def contention_threads(lgs, calls, repeats, out, results):
    log("contention (c): concurrent Python threads")
    n = usable_cpus()
    out.append("### (c) Python threads calling a parallel kernel at once\n")
    out.append(
        "Each of T Python threads makes the same number of `exp` calls on its own "
        "array; the figure is the wall time until all are done. *With the "
        "budget*: `breakeven.exp`, whose calls share the process-wide core "
        f"budget ({n} cores: a call takes its threads from it, and runs serially "
        "if fewer than 2 are free). *Without the budget*: the bare parallel "
        f"kernel at {n} threads in every Python thread (T x {n} OpenMP threads on "
        f"{n} cores), what each thread deciding alone would do. "
        "`threads(n, exact=True)` does not bypass the budget: it fixes the count "
        "the dispatcher asks for, which the dispatch core (`breakeven._core`) "
        "still takes from the core budget (fewer if fewer are free, serial if "
        "fewer than 2 are); only a direct call of the kernel goes around it.\n")
    naive = "parallel kernel in every thread (no budget)"
    for T in (2, 4):
        with ThreadPoolExecutor(T) as pool:
            for lg in lgs:
                t = _threads_case(pool, T, lg, calls, repeats, naive)
                results[f"(c) {T} threads, exp 2^{lg}"] = scenario(
                    out, f"{T} Python threads x {calls} calls of exp 2^{lg}:", t,
                    naive)


def _threads_case(pool, T, lg, calls, repeats, naive):
    def run(mode):
        def go():
            list(pool.map(lambda _: exp_job(mode, lg, calls), range(T)))
        return go
    return time_interleaved({
        BE + " (budget)": run("breakeven"),
        naive: run("parallel"),
        "serial kernel in every thread": run("serial"),
    }, repeats=repeats, min_batch_time=0.0)


def contention_joblib(lg, calls, repeats, out, results):
    import joblib

    log("contention (d): joblib workers")
    n = usable_cpus()
    tasks = 2 * n
    out.append("### (d) breakeven inside joblib.Parallel workers\n")
    out.append(
        f"`joblib.Parallel(n_jobs={n})` runs {tasks} tasks of {calls} `exp` calls "
        f"on 2^{lg} elements each. loky sets `OMP_NUM_THREADS` in its workers to "
        "cores / n_jobs, which breakeven obeys (`omp_get_max_threads()`); in the "
        "threading backend the core budget applies. *parallel kernel* calls the "
        f"bare parallel kernel at {n} threads in every worker.\n")
    for backend in ("loky", "threading"):
        par = joblib.Parallel(n_jobs=n, backend=backend)

        def run(mode, par=par):
            def go():
                par(joblib.delayed(exp_job)(mode, lg, calls) for _ in range(tasks))
            return go
        t = time_interleaved({
            BE: run("breakeven"),
            "parallel kernel in every worker": run("parallel"),
            "serial kernel in every worker": run("serial"),
        }, repeats=repeats, min_batch_time=0.0)
        results[f"(d) joblib {backend}"] = scenario(
            out, f"backend `{backend}`:", t, "parallel kernel in every worker")


def contention_idle(lgs, repeats, out, results):
    log("contention (e): idle gaps")
    prof = testing.profile()
    sleep_s = (prof.sleep_after_us or 10000) / 1e6
    gap = max(0.03, 3 * sleep_s)
    n = usable_cpus()
    rng = np.random.default_rng(4)
    out.append("### (e) Lone calls after idle gaps, and back-to-back calls\n")
    out.append(
        f"`exp` calls, each after {gap * 1e3:.0f} ms idle (the profile's OpenMP "
        f"team sleeps after {sleep_s * 1e3:g} ms; one call per batch, the gap "
        "outside the timed region), and the same calls back to back. *naive*: "
        "the thread count a tight timing loop picks (the hot table: parallel at "
        "these sizes) used for every call.\n")
    for lg in lgs:
        x = rng.uniform(-10, 10, 1 << lg)
        cold, hot = _idle_case(x, np.empty_like(x), n, gap, repeats)
        results[f"(e) exp 2^{lg}, lone calls"] = scenario(
            out, f"exp 2^{lg}, lone calls after {gap * 1e3:.0f} ms idle:", cold,
            "forced parallel")
        results[f"(e) exp 2^{lg}, back to back"] = scenario(
            out, f"exp 2^{lg}, back to back:", hot, "forced parallel")


def _idle_case(x, o, n, gap, repeats):
    def call():
        be.exp(x, out=o)

    def idle(stage):
        def setup():
            # A forced candidate's thread controls are set before the gap:
            # set after it, their few microseconds of Python right before
            # the call warm the core, and the call ran 20% faster than the
            # same call without them (measured: the same serial path).
            if stage:
                stage[0]()
            time.sleep(gap)
            # the same Python work after the gap for every candidate, so the
            # core is equally awake when the timed call starts
            busy = time.perf_counter() + 2e-4
            while time.perf_counter() < busy:
                pass
        return (call, setup, stage[1] if stage else None)

    cold = time_interleaved(Staged({
        BE: idle(None), "forced serial": idle(threads_stage(1)),
        "forced parallel": idle(threads_stage(n, exact=True)),
    }), repeats=repeats * 5, min_batch_time=0.0)
    hot = time_interleaved(Staged({
        BE: call, "forced serial": (call, *threads_stage(1)),
        "forced parallel": (call, *threads_stage(n, exact=True)),
    }), repeats=repeats, min_batch_time=0.005)
    return cold, hot


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------


COLORS = {"numpy": "C0", "numexpr": "C1", "numba": "C2", "numba parallel": "C3",
          "scikit-learn": "C4"}


def line_style(cand: str) -> dict:
    """The same colour for a competitor in every panel; NumPy at BLAS's
    default threads dashed."""
    if cand.startswith("numpy"):
        return {"color": "C0", "ls": ":" if cand.endswith(" 1") else "--"} \
            if "BLAS" in cand else {"color": "C0"}
    return {"color": COLORS.get(cand, "C7")}


def plots(cells, plt, stem: Path) -> list[str]:
    kernels = list(dict.fromkeys(c["kernel"] for c in cells))
    cols = 4 if len(kernels) > 4 else len(kernels)
    rows = (len(kernels) + cols - 1) // cols
    written = []
    for kind in ("time", "speedup"):
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows),
                                 squeeze=False)
        for ax, name in zip(axes.flat, kernels, strict=False):
            rows_k = [c for c in cells if c["kernel"] == name]
            work = [c["work"] for c in rows_k]
            names = [n for n in rows_k[0]["t"] if n not in (BE_SERIAL, BE_PARALLEL)]
            for cand in names:
                y = np.array([c["t"][cand].median for c in rows_k])
                if kind == "speedup":
                    y = np.array([c["t"][numpy_default(c["t"])].median
                                  for c in rows_k]) / y
                style = dict(lw=2.4, color="k") if cand == BE else \
                    dict(lw=1.2, **line_style(cand))
                ax.plot(work, y, marker=".", label=cand, **style)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            if kind == "speedup":
                ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.set_title(name)
            ax.set_xlabel("work" if name != "nearest" else "work (n x 32 x 16)")
            ax.set_ylabel("seconds per call" if kind == "time"
                          else "speed-up over NumPy")
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(kernels):]:
            ax.set_visible(False)
        fig.suptitle("time per call" if kind == "time" else
                     "speed-up over NumPy (BLAS at its default)")
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}-{kind}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


# ---------------------------------------------------------------------------


def contention(quick, repeats, out, results, blas):
    """Every contention scenario once, each from a reset dispatch state."""
    testing.reset()
    contention_alternating(quick, out, results)
    testing.reset()
    contention_nearest([16, 22] if quick else [16, 20, 23],
                       repeats, out, results, blas)
    testing.reset()
    contention_threads([20] if quick else [17, 20],
                       10 if quick else 20, repeats, out, results)
    testing.reset()
    contention_joblib(18, 10 if quick else 20, repeats, out, results)
    testing.reset()
    contention_idle([16] if quick else [16, 18], repeats, out, results)


def _median_run(rs: list[tuple], higher_is_better: bool = False) -> tuple:
    """Of several runs' (median, min, max): the run whose median is the
    median; for an even count, the worse of the two middle ones."""
    ordered = sorted(rs)
    mid = len(rs) // 2 if not higher_is_better else (len(rs) - 1) // 2
    return ordered[mid]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="a few sizes and batches (smoke run)")
    ap.add_argument("--output", default="benchmarks/results/peers.md")
    ap.add_argument("--kernels", help="comma-separated (default: all)")
    ap.add_argument("--sizes", help="comma-separated log2 works")
    ap.add_argument("--no-contention", action="store_true")
    add_runs_option(ap, "the contention scenarios and the 2^22 target cells "
                        "are measured; targets are judged on the median run", 3)
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
    peers = Peers()
    blas = Blas()
    peers.compile_numba(names)
    blas_default = blas.default
    out = [
        "# breakeven side by side: NumPy, numexpr, Numba, scikit-learn", "",
        *stamp(peers.versions),
        f"- NumPy's BLAS at its default: {blas_default} threads; numexpr "
        f"threads: {peers.ne.get_num_threads() if peers.ne else '-'}; Numba "
        f"threading layer: {peers.nb.threading_layer() if peers.numba_fns else '-'}"
        f", threads: {peers.nb.get_num_threads() if peers.nb else '-'}",
        f"- {'quick run' if args.quick else 'full run'}: median of {repeats} "
        f"interleaved batches of >= {min_batch * 1e3:g} ms per candidate; "
        "ratios are medians of batch-wise ratios [min-max]; float64",
        "- load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        + " (other processes on the cores make every parallel region slow)",
        f"- command: `python benchmarks/bench_peers.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
    ]
    out += [f"- note: {n}" for n in peers.notes]
    if peers.compile_s:
        out.append("")
        out.append("Numba compile time (first call, excluded from every figure): "
                   + ", ".join(f"{k} {a:.2f} s / {b:.2f} s parallel"
                               for k, (a, b) in peers.compile_s.items()) + ".")
    out.append("")
    plot_at = len(out)

    cells = measure_cells(names, sizes, repeats, min_batch, peers, blas)
    flagged: list = []
    body: list[str] = []
    peers_section(cells, body, flagged)
    explanations(flagged, body)
    rules_section(cells, body)

    results: dict[str, list[tuple]] = {}
    targets = {name: [c["vs_numpy"] for c in cells
                      if c["kernel"] == name and c["work"] == 1 << 22]
               for name in ("exp", "nearest")}
    if not args.no_contention:
        body.append("## 3. Contention\n")
        body.append("Each scenario's configurations are interleaved batch by "
                    "batch; breakeven is left to decide, the others are fixed. "
                    "*best*: the fastest fixed configuration measured. Each "
                    "scenario starts with dispatch's state reset, as in a fresh "
                    "process: a back-off learnt under one scenario's contention "
                    f"does not carry into the next. The scenarios ran {runs} "
                    "time(s); the tables are the first run's, and the summary "
                    "judges each target on the median over the runs.\n")
        t0 = time.perf_counter()
        for run in range(runs):
            shown = body if run == 0 else []
            found: dict[str, tuple] = {}
            contention(args.quick, repeats, shown, found, blas)
            for key, r in found.items():
                results.setdefault(key, []).append(r)
            if run > 0:  # the target cells again, between contention runs
                for c in measure_cells([n for n in targets if n in names], [22],
                                       repeats, min_batch, peers, blas):
                    t = c["t"]
                    targets[c["kernel"]].append(
                        ratio_range(t[numpy_default(t)], t[BE]))
        log(f"contention: {time.perf_counter() - t0:.1f} s")
        if runs > 1:
            body.append("### Every run\n")
            body.append("breakeven / best configuration, median of each run's "
                        "batch-wise ratios:\n")
            body.append("| scenario | " + " | ".join(f"run {i + 1}"
                                                    for i in range(runs))
                        + " | median |")
            body.append("|---|" + "---:|" * (runs + 1))
            for key, rs in results.items():
                body.append(f"| {key} | " + " | ".join(f"{r[0]:.2f}" for r in rs)
                            + f" | {_median_run(rs)[0]:.2f} |")
            body.append("")

    body.append("## Summary\n")
    worst = max(cells, key=lambda c: c["vs_best"][0])
    checked = [c for c in cells if c["kernel"] != "dot"]
    slower = [c for c in checked if c["vs_best"][0] > 1.0]
    body.append(f"- breakeven / best peer: worst {worst['vs_best'][0]:.2f} "
                f"({worst['kernel']} {worst['label']}, {worst['best']}); "
                f"slower than the best peer in {len(slower)} of {len(checked)} "
                "cells of sum, axpy, exp, cumsum, histogram and nearest "
                f"({sum(c['vs_best'][0] > 1.0 for c in cells if c['kernel'] == 'dot')}"
                " of dot's), each listed under section 1")
    for name, sps in targets.items():
        if sps:
            sp = _median_run(sps, higher_is_better=True)
            each = (" (runs: " + ", ".join(f"{r[0]:.2f}" for r in sps) + ")"
                    if len(sps) > 1 else "")
            body.append(f"- {name} at 2^22: {fmt_ratio(sp)}x NumPy's speed"
                        f"{each} (target 1.8): "
                        f"{'met' if sp[0] >= 1.8 else 'NOT met'}")
    for key, rs in results.items():
        r = _median_run(rs)
        each = (" (runs: " + ", ".join(f"{x[0]:.2f}" for x in rs) + ")"
                if len(rs) > 1 else "")
        body.append(f"- contention {key}: breakeven / best {fmt_ratio(r)}{each} "
                    f"(target 1.2): {'met' if r[0] <= 1.2 else 'NOT met'}")
    elapsed = time.perf_counter() - t_start
    body.append(f"- run time: {elapsed:.0f} s on {platform.machine()}, "
                f"{usable_cpus()} CPUs; load average at the end: "
                + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    body.append("")

    if peers.plt is not None:
        pngs = plots(cells, peers.plt, out_path.with_suffix(""))
        out[plot_at:plot_at] = [" ".join(f"![{p}]({p})" for p in pngs), ""]
    text = "\n".join(out + body) + "\n"
    out_path.write_text(text)
    log(f"written to {out_path} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
