"""Section 3 of the side-by-side benchmark (``bench_peers.py``): breakeven
under contention, each scenario against the naive choice and the best fixed
configuration measured, interleaved batch by batch.

(a) ``bench_dispatch.alternating``: A @ B and a parallel exp in a loop;
(b) ``nearest`` with BLAS uncapped and capped;
(c) two and four Python threads calling a parallel kernel at once, with the
    core budget (breakeven) and without it (the bare parallel kernel in
    every thread);
(d) breakeven inside ``joblib.Parallel`` workers, loky and threading;
(e) lone calls after an idle gap (cold OpenMP team) and back-to-back calls.

Each scenario writes its prose and tables (``peers_report.scenario``) into
``out`` and its breakeven / best ratio into ``results``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _common import Staged, exp_job, log, threads_stage
from peers_impls import BE, F64, SETTLE_BLAS, size_label
from peers_report import scenario

import breakeven as be
from breakeven import testing
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.openmp import usable_cpus
from breakeven._kernels.registry import KERNELS


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


def contention_alternating(quick, out, results):
    import bench_dispatch

    log("contention (a): alternating A @ B and exp")
    sub: list[str] = []
    details: dict = {}
    iters = 20 if quick else 100
    bench_dispatch.alternating(iters, 3 if quick else 5, sub, details)
    t = details["timings"]
    ours = next(n for n in t if n.startswith("breakeven"))
    t = {ours: t[ours], **{n: v for n, v in t.items() if n != ours}}
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
        X, C = KERNELS["nearest"].sample(1 << lg, F64, rng)
        label = size_label("nearest", (X, C))
        t = _nearest_case(X, C, n, repeats, blas)
        results[f"(b) nearest {label}"] = scenario(
            out, f"nearest, X {label} (work 2^{lg}):", t,
            "parallel kernel, BLAS uncapped")


def _nearest_case(X, C, n, repeats, blas):
    k = KERNELS["nearest"]
    settle = (lambda: time.sleep(SETTLE_BLAS)) if blas.default > 1 else None
    cap = (lambda: blas.set(1), lambda: blas.set(None))
    with Staged({
        BE: lambda: be.nearest(X, C),
        "parallel kernel, BLAS uncapped": (lambda: k.parallel(X, C, n), None,
                                           settle),
        "parallel kernel, BLAS 1": (lambda: k.parallel(X, C, n), *cap),
        "serial kernel, BLAS uncapped": (lambda: k.serial(X, C), None, settle),
        "serial kernel, BLAS 1": (lambda: k.serial(X, C), *cap),
        "numpy, BLAS uncapped": (lambda: k.reference(X, C), None, settle),
        "numpy, BLAS 1": (lambda: k.reference(X, C), *cap),
    }) as staged:  # closed: the last candidate's BLAS cap is undone
        return time_interleaved(staged, repeats=repeats, min_batch_time=0.01)


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
        "the dispatcher asks for, which the dispatch core (`breakeven._core.engine`) "
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

    # (each Staged closed at the end: the last candidate's forced thread
    # count must not outlive its batches, or every later call is forced)
    with Staged({
        BE: idle(None), "forced serial": idle(threads_stage(1)),
        "forced parallel": idle(threads_stage(n, exact=True)),
    }) as staged:
        cold = time_interleaved(staged, repeats=repeats * 5, min_batch_time=0.0)
    with Staged({
        BE: call, "forced serial": (call, *threads_stage(1)),
        "forced parallel": (call, *threads_stage(n, exact=True)),
    }) as staged:
        hot = time_interleaved(staged, repeats=repeats, min_batch_time=0.005)
    return cold, hot

