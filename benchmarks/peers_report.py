"""The side-by-side benchmark's record (``bench_peers.py`` measures, this
writes, through the shared writer ``_report``): the header, section 1's
table per kernel and the cells where breakeven is slower than the best peer,
section 2's fixed rules, section 3's scenario tables and every run, the
summary against the targets, and the plots.

The record says what was measured and what the figures themselves show.
Why a cell is slower depends on the host and its load, so it is not
written here: it belongs in the notes of whoever ran the benchmark, or in
the docs.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np
from _common import ratio_range, stamp
from _report import fmt_ratio, fmt_time, table, verdict
from peers_impls import BE, BE_PARALLEL, BE_SERIAL, RULES, numpy_default, peer_names

from breakeven._core.openmp import usable_cpus


def header(libs, blas, quick: bool, repeats: int, min_batch: float,
           command: str) -> list[str]:
    """The lines above the plots: host, versions, threads, run settings."""
    out = [
        "# breakeven side by side: NumPy, numexpr, Numba, scikit-learn", "",
        *stamp(libs.versions),
        f"- NumPy's BLAS at its default: {blas.default} threads; numexpr "
        f"threads: {libs.ne.get_num_threads() if libs.ne else '-'}; Numba "
        f"threading layer: {libs.nb.threading_layer() if libs.numba_fns else '-'}"
        f", threads: {libs.nb.get_num_threads() if libs.nb else '-'}",
        f"- {'quick run' if quick else 'full run'}: median of {repeats} "
        f"interleaved batches of >= {min_batch * 1e3:g} ms per candidate; "
        "ratios are medians of batch-wise ratios [min-max]; float64",
        "- load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        + " (other processes on the cores make every parallel region slow)",
        f"- command: `python benchmarks/bench_peers.py {command}`",
        "",
    ]
    out += [f"- note: {n}" for n in libs.notes]
    if libs.compile_s:
        out.append("")
        out.append("Numba compile time (first call, excluded from every figure): "
                   + ", ".join(f"{k} {a:.2f} s / {b:.2f} s parallel"
                               for k, (a, b) in libs.compile_s.items()) + ".")
    out.append("")
    return out


# ---------------------------------------------------------------------------
# sections 1 and 2
# ---------------------------------------------------------------------------


def peers_section(cells) -> list[str]:
    out = ["## 1. Peers\n"]
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
        lines = []
        for c in rows:
            t, r = c["t"], c["vs_best"]
            cell = f"**{fmt_ratio(r)}**" if r[0] > 1.0 else fmt_ratio(r)
            lines.append((c["label"], fmt_time(t[BE].median),
                          *(fmt_time(t[n].median) for n in cols), c["best"],
                          cell, fmt_ratio(c["vs_numpy"]), c["decision"]))
        out += table(("size", "breakeven", *cols, "best peer", "be/best",
                      "vs NumPy", "decision"), "lr" + "r" * len(cols) + "lrrl",
                     lines)
        out.append("")
    return out


def slower_section(cells) -> list[str]:
    """The cells where breakeven is slower than the best peer, with the
    figures that tell a threshold question from the kernel itself."""
    out = ["### Where breakeven is slower than the best peer\n"]
    flagged = [c for c in cells if c["vs_best"][0] > 1.0]
    if not flagged:
        out.append("Nowhere: breakeven is within 1.00x of the best peer at "
                   "every size measured.\n")
        return out
    out.append("Generated from the data. `forced serial` / `forced parallel`: "
               "breakeven with `threads(1)` / `threads(n, exact=True)`, over the "
               "best peer, same batches. Why a cell is slower, and what would "
               "close the gap, depends on the host and its load: explanations "
               "belong in the notes of whoever ran this benchmark (or in the "
               "docs), not in the generated record.\n")
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
        if c["vs_best"][1] <= 1.0:
            hint += ("; the batch-wise ratios straddle 1 ([min-max] includes "
                     "values below 1): within this run's noise")
        out.append(f"- **{c['kernel']} {c['label']}**: {bp} is faster by "
                   f"{fmt_ratio(c['vs_best'])} (breakeven ran {c['decision']}; "
                   f"forced serial {fs[0]:.2f}, forced parallel {fp[0]:.2f}); "
                   f"data say: {hint}.")
    out.append("")
    return out


def rules_section(cells) -> list[str]:
    out = ["## 2. Thresholds in the wild\n"]
    out.append("A fixed rule's time is breakeven's drop-in call forced serial "
               "(`threads(1)`) or forced parallel (`threads(n, exact=True)`), as "
               "the rule says for the call's work (elements; n*m*d for "
               "nearest), measured in the same interleaved batches as section 1. "
               "Each figure is the rule's time over the calibrated dispatch's: "
               "above 1, what the rule costs on this host. The envelope against "
               "the bare kernels is in `dispatch.md`.\n")
    names = list(RULES)
    summary: dict[str, list[float]] = {r: [] for r in names}
    rows = []
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
            figs.append(fmt_ratio((med, r.min(), r.max())))
        rows.append((c["kernel"], c["label"], *figs))
    out += table(("kernel", "size", *names), "ll" + "r" * len(names), rows)
    out.append("")
    rows = []
    for rname, v in summary.items():
        g = math.exp(float(np.mean(np.log(v))))
        rows.append((rname, f"{max(v):.2f}", f"{g:.3f}",
                     f"{sum(x > 1.10 for x in v)} of {len(v)}"))
    out += table(("rule", "worst", "geometric mean", "cells above 1.10"), "lrrr",
                 rows)
    out.append("")
    return out


# ---------------------------------------------------------------------------
# section 3
# ---------------------------------------------------------------------------


def contention_intro(runs: int) -> list[str]:
    return ["## 3. Contention\n",
            "Each scenario's configurations are interleaved batch by batch; "
            "breakeven is left to decide, the others are fixed. *best*: the "
            "fastest fixed configuration measured. Each scenario starts with "
            "dispatch's state reset, as in a fresh process: a back-off learnt "
            "under one scenario's contention does not carry into the next. The "
            f"scenarios ran {runs} time(s); the tables are the first run's, and "
            "the summary judges each target on the median over the runs.\n"]


def scenario(out, title, t, naive, note=""):
    """A configuration table: breakeven (the first entry) over each; returns
    breakeven / best."""
    ours = next(iter(t))
    others = [n for n in t if n != ours]
    best = min(others, key=lambda n: t[n].median)
    out.append(f"{title}\n")
    if note:
        out.append(note + "\n")
    rows = []
    for n in t:
        tag = " (naive)" if n == naive else " (best)" if n == best else ""
        rows.append((f"{n}{tag}", fmt_time(t[n].median),
                     fmt_ratio(ratio_range(t[ours], t[n]))))
    out += table(("configuration", "median time", "breakeven / this"), "lrr", rows)
    rb = ratio_range(t[ours], t[best])
    rn = ratio_range(t[ours], t[naive])
    out.append("")
    out.append(f"breakeven / best ({best}): {fmt_ratio(rb)}; "
               f"breakeven / naive ({naive}): {fmt_ratio(rn)}.\n")
    return rb


def median_run(rs: list[tuple], higher_is_better: bool = False) -> tuple:
    """Of several runs' (median, min, max): the run whose median is the
    median; for an even count, the worse of the two middle ones."""
    ordered = sorted(rs)
    mid = len(rs) // 2 if not higher_is_better else (len(rs) - 1) // 2
    return ordered[mid]


def every_run(results: dict[str, list[tuple]], runs: int) -> list[str]:
    out = ["### Every run\n",
           "breakeven / best configuration, median of each run's batch-wise "
           "ratios:\n"]
    rows = [(key, *(f"{r[0]:.2f}" for r in rs), f"{median_run(rs)[0]:.2f}")
            for key, rs in results.items()]
    out += table(("scenario", *(f"run {i + 1}" for i in range(runs)), "median"),
                 "l" + "r" * (runs + 1), rows)
    out.append("")
    return out


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------


def _runs(rs) -> str:
    return (" (runs: " + ", ".join(f"{r[0]:.2f}" for r in rs) + ")"
            if len(rs) > 1 else "")


def summary(cells, speed: dict[str, list[tuple]], contention: dict[str, list],
            targets, speed_lg: int, elapsed: float) -> list[str]:
    """The summary: breakeven against the best peer, then each target met or
    not on the median run (``targets`` as ``bench_peers.TARGETS``)."""
    out = ["## Summary\n"]
    worst = max(cells, key=lambda c: c["vs_best"][0])
    # dot's cells are counted apart
    checked = [c for c in cells if c["kernel"] != "dot"]
    slower = [c for c in checked if c["vs_best"][0] > 1.0]
    kernels = list(dict.fromkeys(c["kernel"] for c in checked))
    listed = " and ".join(filter(None, (", ".join(kernels[:-1]), *kernels[-1:])))
    out.append(f"- breakeven / best peer: worst {worst['vs_best'][0]:.2f} "
               f"({worst['kernel']} {worst['label']}, {worst['best']}); "
               f"slower than the best peer in {len(slower)} of {len(checked)} "
               f"cells of {listed} "
               f"({sum(c['vs_best'][0] > 1.0 for c in cells if c['kernel'] == 'dot')}"
               " of dot's), each listed under section 1")
    for name, sps in speed.items():
        if sps:
            sp = median_run(sps, higher_is_better=True)
            bound = targets["speed"][name]
            out.append(f"- {name} at 2^{speed_lg}: {fmt_ratio(sp)}x NumPy's speed"
                       f"{_runs(sps)} (target {bound:g}): {verdict(sp[0] >= bound)}")
    bound = targets["contention"]
    for key, rs in contention.items():
        r = median_run(rs)
        out.append(f"- contention {key}: breakeven / best {fmt_ratio(r)}{_runs(rs)} "
                   f"(target {bound:g}): {verdict(r[0] <= bound)}")
    out.append(f"- run time: {elapsed:.0f} s on {platform.machine()}, "
               f"{usable_cpus()} CPUs; load average at the end: "
               + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    out.append("")
    return out


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
