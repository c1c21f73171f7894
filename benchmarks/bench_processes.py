"""Processes sharing the cores: the host's core budget against a static split.

1 to 4 worker processes on this host each run bursts of calls (4 calls of
``exp``, compute-bound, or ``sum``, memory-bound, on 2^20 doubles), then
idle; the duty cycle (25%, 50%, 100%) is the time a worker's burst would
take serially over the burst plus its idle time (the idle time is fixed:
a faster burst leaves the worker idle for longer).  All workers run the
same policy at once, for a window of ``--window`` seconds, and the policies
are measured in turn, in a rotating order:

- **all cores**: every call forced to all usable CPUs, each process on its
  own (oversubscribed when several run at once);
- **serial**: every call forced to one thread;
- **static split**: every call forced to ``usable // processes`` threads
  (at least one): what ``OMP_NUM_THREADS`` per worker, or joblib's
  ``inner_max_num_threads``, does;
- **breakeven, own budget**: dispatched, each process with its own core
  budget (``use_host_budget(False)``: the library before the host budget);
- **breakeven, host budget**: dispatched, the processes sharing one budget.

For each: throughput (calls per second, all workers), and the mean and p90
call time.  Each figure is the median of ``--runs`` runs (default 3).
Then the same in simulation (``breakeven.testing.run_processes``): 8
processes on a 64-CPU host, the host budget against a static split.  The
kernels are calibrated first (the workers dispatch with that profile); the
record also gives the cost of a parallel call's bookkeeping with each
budget.  How long an idle OpenMP team spins on its cores decides much here
(GNU libgomp's default: some milliseconds): run it again with
``GOMP_SPINCOUNT`` set to compare.

    python benchmarks/bench_processes.py [--quick] [--runs N] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from _common import add_runs_option, log, runs_option, stamp
from _report import emit, table, verdict

import breakeven as be

N = 1 << 20
BURST = 4
KERNELS = ("exp", "sum")
DUTIES = (0.25, 0.5, 1.0)
POLICIES = ("all cores", "serial", "static split", "breakeven, own budget",
            "breakeven, host budget")
BASELINES = POLICIES[:4]
OURS = POLICIES[4]


def _worker(conn, index: int, kernels) -> None:
    """A worker process: measures windows of bursts as told, reports the
    call times."""
    import breakeven as be

    x = np.random.default_rng(index).random(N) + 0.5
    out = np.empty_like(x)
    calls = {"exp": lambda: be.exp(x, out=out), "sum": lambda: be.sum(x)}
    usable = be.usable_cpus()
    serial_burst = {}
    for name in kernels:  # the serial burst's time: the idle unit
        f = calls[name]
        with be.threads(1, exact=True):
            f()
            ts = []
            for _ in range(20):
                t0 = time.perf_counter()
                for _ in range(BURST):
                    f()
                ts.append(time.perf_counter() - t0)
        serial_burst[name] = float(np.median(ts))
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kernel, duty, policy, n_procs, start_at, stop_at = msg
        f = calls[kernel]
        be.use_host_budget(policy == OURS)
        forced = {"all cores": usable, "serial": 1,
                  "static split": max(1, usable // n_procs)}.get(policy)
        idle = serial_burst[kernel] * (1 - duty) / duty
        times = []
        ctx = be.threads(forced, exact=True) if forced else _nothing()
        with ctx:
            f()  # warm (the team, the pages)
            while time.monotonic() < start_at:
                time.sleep(0.0005)
            while time.monotonic() < stop_at:
                for _ in range(BURST):
                    t0 = time.perf_counter()
                    f()
                    times.append(time.perf_counter() - t0)
                if idle > 0:
                    time.sleep(idle)
        conn.send(times)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class Pool:
    """``n`` worker processes (spawned: they join the host's budget as any
    new process does)."""

    def __init__(self, n: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for i in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(b, i, KERNELS), daemon=True)
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        for c in self.conns:
            assert c.recv() == "ready"

    def window(self, kernel: str, duty: float, policy: str, seconds: float):
        start = time.monotonic() + 0.3  # every worker set up first
        for c in self.conns:
            c.send((kernel, duty, policy, len(self.conns), start, start + seconds))
        times = [c.recv() for c in self.conns]
        every = np.concatenate([np.asarray(t) for t in times])
        return {"throughput": len(every) / seconds, "mean": float(every.mean()),
                "p90": float(np.percentile(every, 90))}

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=10)


def measure(runs: int, counts, seconds: float) -> dict:
    """{(processes, kernel, duty, policy): [per run {throughput, mean, p90}]}"""
    got: dict = {}
    for r in range(runs):
        for n in counts:
            pool = Pool(n)
            try:
                for kernel in KERNELS:
                    for duty in DUTIES:
                        log(f"run {r + 1}/{runs}: {n} processes, {kernel}, "
                            f"duty {duty:.0%}")
                        k = (r + n + KERNELS.index(kernel) + DUTIES.index(duty)) \
                            % len(POLICIES)
                        for policy in POLICIES[k:] + POLICIES[:k]:  # rotated
                            got.setdefault((n, kernel, duty, policy), []).append(
                                pool.window(kernel, duty, policy, seconds))
            finally:
                pool.close()
    return got


FAST_PAIRS = 200_000

# The simulation: 8 processes on a 64-CPU host (the 64-core workstation of
# the simulated hosts, SMT off), calls of 2^22 elements, 0.2 s simulated.
SIM_PROCESSES = 8
SIM_WORK = 1 << 22
SIM_SECONDS = 0.2


def simulated() -> list[tuple]:
    """Per kernel and duty: (kernel, duty, throughput shared / static,
    mean shared / static, the shared run's log, the static run's log)."""
    from breakeven import testing

    sim = dataclasses.replace(testing.HOSTS["workstation-64"], smt=1,
                              name="workstation-64, SMT off")
    profile = testing.Simulation(sim, seed=0).calibrate(list(KERNELS),
                                                        dtypes=("float64",))
    rows = []
    for kernel in KERNELS:
        for duty in DUTIES:
            logs = {}
            for shared in (True, False):
                with testing.simulated_cpus(sim.cpus), \
                        testing.simulated_clock() as clock:
                    testing.reset(profile)
                    logs[shared] = testing.run_processes(
                        sim, kernel, SIM_WORK, SIM_PROCESSES, duty, SIM_SECONDS,
                        clock, shared=shared)
            a, b = logs[True], logs[False]
            rows.append((kernel, duty, a.throughput / b.throughput, a.mean / b.mean,
                         a, b))
    testing.reset()
    return rows, sim


def fast_path(repeats: int, pairs: int = FAST_PAIRS) -> dict[str, list[float]]:
    """ns per begin/end pair of a parallel call (the rule, the cores taken
    and given back, the clock reads and the contention check; no kernel
    runs), with the process's own budget and with the host's, interleaved."""
    from breakeven import testing

    usable = be.usable_cpus()
    got: dict[str, list[float]] = {"own budget": [], "host budget": []}
    with be.threads(max(2, usable), exact=True):
        for _ in range(repeats):
            for name in got:
                be.use_host_budget(name == "host budget")
                t0 = time.perf_counter()
                testing.hammer("exp", N, pairs)
                got[name].append((time.perf_counter() - t0) / pairs * 1e9)
    be.use_host_budget(True)
    return got


def report(got: dict, counts, runs: int, seconds: float, fast: dict,
           sim_rows: list, sim) -> list[str]:
    def med(key, field):
        return float(np.median([m[field] for m in got[key]]))

    lines = ["# Processes sharing the cores: the host's core budget", "",
             *stamp(), f"- {runs} runs, windows of {seconds:g} s; bursts of "
             f"{BURST} calls on {N} float64; duty = a serial burst's time over "
             "the burst and its idle time",
             f"- GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '(unset)')}, "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}: how "
             "long an idle team spins on its cores", "",
             "Throughput is calls per second, all processes together; times "
             "are per call. Each figure is the median of the runs.", "",
             "## The fast path", "",
             "A parallel call's begin/end pair alone (the rule, the cores taken "
             "and given back, clock reads, the contention check; no kernel runs), "
             f"in a C loop of {FAST_PAIRS:,} pairs, {len(fast['own budget'])} "
             "times each, interleaved:", "",
             *table(("budget", "ns per pair, median", "min", "max"), "lrrr",
                    [(name, f"{np.median(v):.1f}", f"{min(v):.1f}", f"{max(v):.1f}")
                     for name, v in fast.items()]), ""]
    worst_tp, worst_mean = np.inf, 0.0
    summary = []
    for kernel in KERNELS:
        for n in counts:
            for duty in DUTIES:
                def m(p, field, n=n, duty=duty, kernel=kernel):
                    return med((n, kernel, duty, p), field)
                best = max(m(p, "throughput") for p in BASELINES)
                tp = m(OURS, "throughput") / best
                vs_split = m(OURS, "mean") / m("static split", "mean")
                worst_tp = min(worst_tp, tp)
                if duty == 0.5:
                    worst_mean = max(worst_mean, vs_split)
                summary.append((f"{kernel}, {n} process{'es' if n > 1 else ''}, "
                                f"{duty:.0%}", f"{tp:.2f}", f"{vs_split:.2f}",
                                f"{m(OURS, 'mean') / m(BASELINES[3], 'mean'):.2f}",
                                f"{m(OURS, 'p90') / m('static split', 'p90'):.2f}"))
    lines += ["## The host budget against the others", "",
              "Ratios of medians: throughput against the best baseline's "
              "(higher is better), mean and p90 call time against the static "
              "split's and against breakeven's without the host budget (lower "
              "is better).", "",
              *table(("case", "throughput / best baseline", "mean / static split",
                      "mean / own budget", "p90 / static split"), "lrrrr", summary),
              ""]
    for kernel in KERNELS:
        lines += [f"## {kernel}", ""]
        rows = []
        for n in counts:
            for duty in DUTIES:
                best = max(med((n, kernel, duty, p), "throughput") for p in BASELINES)
                for p in POLICIES:
                    key = (n, kernel, duty, p)
                    rows.append((n, f"{duty:.0%}", p, f"{med(key, 'throughput'):.0f}",
                                 f"{med(key, 'mean') * 1e3:.3f}",
                                 f"{med(key, 'p90') * 1e3:.3f}",
                                 f"{med(key, 'throughput') / best:.2f}"))
        lines += table(("processes", "duty", "policy", "calls/s", "mean ms",
                        "p90 ms", "throughput / best baseline"), "rrlrrrr", rows)
        lines.append("")
    lines += [f"## Simulated: {SIM_PROCESSES} processes on {sim.cpus} CPUs", "",
              f"The cost model of {sim.name} (`breakeven.testing.HOSTS`), in "
              f"simulated time: {SIM_PROCESSES} processes each running bursts of "
              f"{BURST} calls on {SIM_WORK} float64, sharing one host budget "
              "(the core's own code, a slot each; every call asks for the "
              "host's best thread count) or a static split "
              f"({sim.cpus // SIM_PROCESSES} threads each), for {SIM_SECONDS:g} s. "
              "The model has no spinning idle teams, and a call that finds "
              "too few cores runs serially (waiting needs the real clock).", "",
              *table(("case", "throughput / static split", "mean / static split",
                      "mean ms, shared", "mean ms, static split"), "lrrrr",
                     [(f"{k}, {d:.0%}", f"{tp:.2f}", f"{m:.2f}",
                       f"{a.mean * 1e3:.3f}", f"{b.mean * 1e3:.3f}")
                      for k, d, tp, m, a, b in sim_rows]), ""]
    sim_tp = min(tp for k, d, tp, *_ in sim_rows if d == 0.5)
    lines += ["## Summary", "",
              *table(("figure", "measured", "target", ""), "lrrl", [
                  ("host budget's throughput / best baseline's, min", f"{worst_tp:.3f}",
                   ">= 1", verdict(worst_tp >= 1.0)),
                  ("host budget's mean call / static split's at 50% duty, max",
                   f"{worst_mean:.3f}", "<= 0.9", verdict(worst_mean <= 0.9)),
                  ("simulated, throughput / static split's at 50% duty, min",
                   f"{sim_tp:.3f}", ">= 1.2", verdict(sim_tp >= 1.2))]), ""]
    return lines


def main(argv=None) -> int:
    global KERNELS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short windows, one run")
    add_runs_option(ap, "every window is measured", 3)
    ap.add_argument("--window", type=float, default=None,
                    help="seconds each policy runs (default 1.0, 0.3 with --quick)")
    ap.add_argument("--processes", type=int, default=4, help="up to this many")
    ap.add_argument("--kernels", default=",".join(KERNELS),
                    help="comma-separated, of " + ", ".join(KERNELS))
    ap.add_argument("--output")
    args = ap.parse_args(argv)
    runs = runs_option(ap, args, 3)
    seconds = args.window or (0.3 if args.quick else 1.0)
    counts = range(1, args.processes + 1)
    KERNELS = tuple(k for k in args.kernels.split(",") if k in KERNELS)
    # the workers' budget and profile: their own, not the user's
    folder = tempfile.mkdtemp(prefix="bench-processes-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["BREAKEVEN_HOST_BUDGET_DIR"] = folder
    os.environ["BREAKEVEN_PROFILE"] = os.path.join(folder, "profile.toml")
    log(f"calibrating {', '.join(KERNELS)} (the workers dispatch with it) ...")
    be.calibrate(kernels=list(KERNELS), quick=args.quick, progress=False).save()
    from breakeven import testing

    testing.reset()  # this process too
    log("the simulated host ...")
    sim_rows, sim = simulated()
    log("the fast path ...")
    fast = fast_path(3 if args.quick else 9)
    got = measure(runs, counts, seconds)
    emit(report(got, counts, runs, seconds, fast, sim_rows, sim), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
