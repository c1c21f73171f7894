"""bekmeans (Lloyd's k-means on breakeven's Cython API) against scikit-learn.

For n = 10^2 .. 10^6 samples of d = 2 and 50 features, k = 8 clusters, a
fixed init (the first k samples) and a few iterations (``tol=0``), in one
run, interleaved:

- the loops alone, per iteration: ``bekmeans.run`` calibrated and
  zero-config (a profile with no entry for the kernel: the estimate and
  what its calls teach it, kept across the run as in a real program),
  against scikit-learn's ``_kmeans_single_lloyd`` with its default threads
  (``_openmp_effective_n_threads()``, all cores) and with one thread (what
  ``threadpool_limits(1)`` gives it);
- the whole call, validation included: ``bekmeans.lloyd`` against
  ``KMeans(...).fit`` with its default threads and under
  ``threadpool_limits(1)``;
- two Python threads each running the loops at once, where each of
  scikit-learn's calls takes every core.

Both sides run the same iterations (checked: same labels and iteration
count), so a ratio of times per iteration is a ratio of the loops' speed.
The data are centered first for the loops, as ``KMeans.fit`` does.  Each
library runs in a worker process of its own (scikit-learn ships its own
libgomp: in one process the two runtimes' teams would spin against each
other, and breakeven would back off from the other team's threads); the
batches of all candidates alternate in a random order.

    python benchmarks/bench_kmeans.py [--quick] [--runs 3] [--output FILE.md]

bekmeans is built from ``docs/examples/bekmeans`` and calibrated by the
script (``breakeven.calibrate(kernels=["bekmeans.lloyd"])``, a few seconds)
into the profile the run uses; the zero-config worker uses the same
profile without the kernel's entry.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import pickle
import platform
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import _userkernels
import numpy as np
from _report import emit, fmt_ratio, fmt_time, table, targets_table
from sklearn.cluster import KMeans
from sklearn.cluster._kmeans import _kmeans_single_lloyd
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from threadpoolctl import threadpool_info, threadpool_limits

import breakeven as be
from breakeven import testing
from breakeven._core.openmp import usable_cpus
from breakeven._profile import Profile, host_fingerprint

SIZES = (100, 1000, 10 ** 4, 10 ** 5, 10 ** 6)
FEATURES = (2, 50)
K = 8
ITERATIONS = 5
KERNEL = "bekmeans.lloyd"
# Seconds a batch of one candidate lasts at least: long enough that the
# wake-up of a team that slept while the other candidates ran (up to
# milliseconds on a virtual machine) is a small part of it.
BATCH = 0.25
TARGETS = {
    "loops / scikit-learn's best, max": 1.0,
    "loops / scikit-learn's default at n <= 1000, max": 0.7,
    "two threads / scikit-learn's default, max": 0.8,
    "zero-config / calibrated, max": 1.3,
}
# scikit-learn's loops without the threadpool_limits decorator of its
# per-fit setup (counted with the validation, in the whole call)
SK_LOOPS = getattr(_kmeans_single_lloyd, "__wrapped__", _kmeans_single_lloyd)


def blobs(rng, n: int, d: int) -> np.ndarray:
    centers = rng.uniform(-5, 5, (K, d))
    return centers[rng.integers(0, K, n)] + rng.standard_normal((n, d))


def without_kernel(p: Profile) -> Profile:
    """The profile ``p`` with no entry for the k-means kernel (the host's
    figures kept)."""
    q = Profile(p.fingerprint, {k: v for k, v in p.tables.items() if k != KERNEL},
                p.calibrated_at, p.sleep_after_us, f"{p.source}, without {KERNEL}")
    q.wake, q.team_hot = p.wake, p.team_hot
    return q


class Case:
    """One size: the data, centered data, init and the calls compared."""

    def __init__(self, n: int, d: int, bekmeans, check: bool = True):
        self.n, self.d = n, d
        self.X = blobs(np.random.default_rng((25, n, d)), n, d)
        self.init = self.X[:K].copy()
        self.Xc = self.X - self.X.mean(axis=0)
        self.initc = self.init - self.X.mean(axis=0)
        self.weights = np.ones(n)
        self.bek = bekmeans
        self.n_iter = self.check() if check else 0

    def bek_loops(self):
        return self.bek.run(self.Xc, self.initc.copy(), np.full(self.n, -1, np.int32),
                            ITERATIONS, 0.0)

    def sk_loops(self, threads: int):
        return SK_LOOPS(self.Xc, self.weights, self.initc.copy(),
                        max_iter=ITERATIONS, tol=0.0, n_threads=threads)

    def bek_fit(self):
        return self.bek.lloyd(self.X, self.init, max_iter=ITERATIONS, tol=0.0)

    def sk_fit(self):
        return KMeans(n_clusters=K, init=self.init, n_init=1, max_iter=ITERATIONS,
                      tol=0.0, algorithm="lloyd").fit(self.X)

    def check(self) -> int:
        """Both sides' iterations and labels agree; the iterations run."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = self.bek_fit(), self.sk_fit()
        if ours[3] != theirs.n_iter_ or not np.array_equal(ours[1], theirs.labels_):
            raise AssertionError(f"n={self.n} d={self.d}: bekmeans and scikit-learn "
                                 "differ")
        return ours[3]


def both(pool, f):
    """Two Python threads running ``f`` at once."""
    a, b = pool.submit(f), pool.submit(f)
    a.result()
    b.result()


# Who runs what: each group in a process of its own, so that one library's
# OpenMP runtime (scikit-learn ships its own libgomp) and its spinning
# threads are not in the other's process, and so that breakeven's
# contention check in the bekmeans processes judges bekmeans' calls only.
# The two-thread cases have processes of their own too: once more threads
# than CPUs have run OpenMP regions in a process (two Python threads with a
# team each), libgomp shortens its spin-wait for good, and every later
# parallel region in that process pays a wake-up (about twice the time of
# a 10^4-sample pass here).
GROUPS = {
    "bek": ("bek", "bek fit"),        # calibrated
    "zero": ("zero",),                # the kernel not in the profile
    "sk": ("sk", "sk1", "sk fit", "sk1 fit"),
    "bek x2": ("bek x2",),
    "sk x2": ("sk x2",),
}
PER_ITERATION = {"bek", "zero", "sk", "sk1", "bek x2", "sk x2"}


def calls(case: Case, pool) -> dict:
    """The candidates' calls on one case (in a worker)."""
    sk_threads = _openmp_effective_n_threads()

    def sk1_fit():
        with threadpool_limits(1):
            return case.sk_fit()

    return {
        "bek": case.bek_loops, "zero": case.bek_loops, "bek fit": case.bek_fit,
        "bek x2": lambda: both(pool, case.bek_loops),
        "sk": lambda: case.sk_loops(sk_threads), "sk1": lambda: case.sk_loops(1),
        "sk fit": case.sk_fit, "sk1 fit": sk1_fit,
        "sk x2": lambda: both(pool, lambda: case.sk_loops(sk_threads)),
    }


class Worker:
    """A process running one group of candidates, timing a batch when
    asked: bekmeans on a given profile, or scikit-learn."""

    def __init__(self, group: str, profile: Profile | None, sizes):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._ask((group, profile, list(sizes)))

    def _ask(self, message):
        pickle.dump(message, self.proc.stdin)
        self.proc.stdin.flush()
        return pickle.load(self.proc.stdout)

    def time(self, n: int, d: int, cand: str, batch: float) -> tuple[float, float]:
        """Seconds per call of a batch of at least ``batch`` seconds, and
        the mean threads of bekmeans' passes in it (0 for scikit-learn)."""
        return self._ask((n, d, cand, batch))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _batch(f, batch: float) -> float:
    calls_, start = 0, time.perf_counter()
    while True:
        f()
        calls_ += 1
        elapsed = time.perf_counter() - start
        if elapsed >= batch:
            return elapsed / calls_


def worker() -> None:
    """A worker's loop (``--worker``): a setup message, then batches."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    group, profile, sizes = pickle.load(stdin)
    bekmeans = (None if group.startswith("sk")
                else _userkernels.load_example("bekmeans"))
    if profile is not None:
        testing.reset(profile)
    pool = ThreadPoolExecutor(2)
    cases = {(n, d): calls(Case(n, d, bekmeans, check=False), pool)
             for n, d in sizes}
    for c in cases.values():  # warm-up (and the zero-config's first lessons)
        for cand in GROUPS[group]:
            c[cand]()
    pickle.dump("ready", stdout)
    stdout.flush()
    while True:
        try:
            n, d, cand, batch = pickle.load(stdin)
        except EOFError:
            return
        if bekmeans is not None:
            be.stats(reset=True)
        gc.collect()
        gc.disable()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = _batch(cases[n, d][cand], batch)
        finally:
            gc.enable()
        threads = 0.0
        if bekmeans is not None:
            st = be.stats()[KERNEL, "float64"]
            threads = ((st.mean_threads * st.parallel + st.serial)
                       / max(1, st.parallel + st.serial))
        pickle.dump((seconds, threads), stdout)
        stdout.flush()


def measure(case: Case, workers: dict[str, Worker], repeats: int, batch: float,
            rng) -> dict[str, list[float]]:
    """Interleaved timings: ``repeats`` rounds, each a batch of every
    candidate in a new random order, a pause between batches (for the last
    batch's idle OpenMP and BLAS threads to stop spinning).  Seconds per
    iteration (the loops) or per call (the whole call)."""
    owner = {c: g for g, cands in GROUPS.items() for c in cands}
    got: dict[str, list[float]] = {c: [] for c in owner}
    got["bek threads"], got["zero threads"] = [], []
    for _ in range(repeats):
        for cand in rng.permutation(list(owner)):
            time.sleep(0.02)
            seconds, threads = workers[owner[cand]].time(case.n, case.d, cand, batch)
            got[cand].append(seconds / case.n_iter if cand in PER_ITERATION
                             else seconds)
            if cand in ("bek", "zero"):
                got[f"{cand} threads"].append(threads)
    return got


def ratios(a: list[float], b: list[float]) -> list[float]:
    return sorted(x / y for x, y in zip(a, b, strict=True))


def summary(rs: list[float]) -> tuple[float, float, float]:
    return (float(np.median(rs)), rs[0], rs[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n up to 10^5, one run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--output")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return 0
    bekmeans = _userkernels.load_example("bekmeans")
    runs = 1 if args.quick else args.runs
    sizes = SIZES[:-1] if args.quick else SIZES
    repeats = 3 if args.quick else 5
    print("calibrating bekmeans.lloyd ...", file=sys.stderr)
    cal = be.calibrate(kernels=[KERNEL], progress=False)
    testing.reset(cal)
    cases = [Case(n, d, bekmeans) for d in FEATURES for n in sizes]
    sizes_ = [(c.n, c.d) for c in cases]
    print("starting the workers ...", file=sys.stderr)
    profiles = {"bek": cal, "bek x2": cal, "zero": without_kernel(cal)}
    workers = {g: Worker(g, profiles.get(g), sizes_) for g in GROUPS}
    rng = np.random.default_rng(0)
    got: dict[tuple[int, int], list[dict]] = {(c.n, c.d): [] for c in cases}
    for r in range(runs):
        for c in cases:
            print(f"run {r + 1}/{runs}: n={c.n} d={c.d} ...", file=sys.stderr)
            got[c.n, c.d].append(measure(c, workers, repeats, BATCH, rng))
    for w in workers.values():
        w.close()
    emit(report(cases, got, cal, runs, repeats), args.output)
    return 0


def report(cases, got, cal: Profile, runs: int, repeats: int) -> list[str]:
    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture')}, "
            f"{i['threading_layer']})" for i in threadpool_info()
            if i["user_api"] == "blas"]
    loops, fits, pairs = [], [], []
    figures = dict.fromkeys(TARGETS, 0.0)

    def med(samples: list[dict], c: str) -> float:  # median over runs
        return float(np.median([np.median(s[c]) for s in samples]))

    def ratio(samples: list[dict], a: str, b) -> tuple[float, float, float]:
        """Median over runs of each run's median ratio, [min-max] of all."""
        per_run = [ratios(s[a], b(s)) for s in samples]
        everything = sorted(x for rs in per_run for x in rs)
        return (float(np.median([np.median(rs) for rs in per_run])),
                everything[0], everything[-1])

    for c in cases:
        s = got[c.n, c.d]
        best = ratio(s, "bek", lambda x: [min(a, b) for a, b in zip(x["sk"], x["sk1"],
                                                                     strict=True)])
        vs_default = ratio(s, "bek", lambda x: x["sk"])
        zero = ratio(s, "zero", lambda x: x["bek"])
        two = ratio(s, "bek x2", lambda x: x["sk x2"])
        figures["loops / scikit-learn's best, max"] = max(
            figures["loops / scikit-learn's best, max"], best[0])
        if c.n <= 1000:
            key = "loops / scikit-learn's default at n <= 1000, max"
            figures[key] = max(figures[key], vs_default[0])
        key = "two threads / scikit-learn's default, max"
        figures[key] = max(figures[key], two[0])
        key = "zero-config / calibrated, max"
        figures[key] = max(figures[key], zero[0])
        size = f"{c.n:,} x {c.d}"
        loops.append((size, f"{med(s, 'bek threads'):.1f}",
                      f"{med(s, 'zero threads'):.1f}",
                      *(fmt_time(med(s, x)) for x in ("bek", "zero", "sk", "sk1")),
                      fmt_ratio(best), fmt_ratio(vs_default), fmt_ratio(zero)))
        fits.append((size, *(fmt_time(med(s, x)) for x in
                                        ("bek fit", "sk fit", "sk1 fit")),
                     fmt_time(med(s, "bek fit") - c.n_iter * med(s, "bek")),
                     fmt_time(med(s, "sk fit") - c.n_iter * med(s, "sk"))))
        pairs.append((size, fmt_time(med(s, "bek x2")),
                      fmt_time(med(s, "sk x2")), fmt_ratio(two)))
    hot = cal.steps(KERNEL, "float64")
    return [
        "# k-means: bekmeans against scikit-learn's KMeans (Lloyd)",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {host_fingerprint().cpu} ({platform.machine()}), {usable_cpus()} "
        "usable CPUs; breakeven "
        f"{be.__version__}, numpy {np.__version__}, scikit-learn "
        f"{__import__('sklearn').__version__}; BLAS: {'; '.join(blas)}",
        f"- k = {K}, init = the first {K} samples, {ITERATIONS} iterations "
        "(tol = 0), float64; data: Gaussian blobs",
        f"- bekmeans calibrated in this run, float64 hot table (work = n (kd + k "
        f"+ d), threads): {', '.join(f'{w:,}: {t}' for w, t in hot)}",
        f"- {runs} runs of {repeats} interleaved batches of at least {BATCH:g} s "
        "each, 20 ms apart; times are medians "
        "over runs of each run's median; ratios: median over runs of each "
        "run's median timing-wise ratio [min-max over all timings]",
        "",
        "## The loops, per iteration",
        "",
        "threads: the mean threads of a pass over the data in bekmeans' batches "
        "(calibrated and zero-config). "
        "scikit-learn's best is the faster of its default and one thread, "
        "timing by timing.",
        "",
        *table(("n x d", "threads", "zero-config threads", "bekmeans",
                "zero-config", "scikit-learn", "sklearn 1 thread",
                "bek / sklearn's best", "bek / sklearn default",
                "zero-config / bek"), "rrrrrrrrrr", loops),
        "",
        "## The whole call, validation included",
        "",
        f"`lloyd` and `KMeans.fit` for {ITERATIONS} iterations; overhead is "
        "the call less its loops (validation, copies, centering, thread limits).",
        "",
        *table(("n x d", "bekmeans.lloyd", "KMeans.fit", "KMeans.fit, 1 thread",
                "bekmeans overhead", "scikit-learn overhead"), "rrrrrr", fits),
        "",
        "## Two Python threads at once, per iteration",
        "",
        *table(("n x d", "bekmeans x2", "scikit-learn x2", "ratio"), "rrrr", pairs),
        "",
        *targets_table(figures, TARGETS),
    ]


if __name__ == "__main__":
    sys.exit(main())
