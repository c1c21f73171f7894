"""What the side-by-side benchmark (``bench_peers.py``) measures breakeven
against, as data: :data:`PEERS` maps each kernel to its implementations in
other libraries (the columns of its table, in order), each with the adapter
that makes its call from the registry's sample arguments; :data:`RULES` are
the fixed thresholds of section 2.  Adding a peer is adding an entry here.

Also here: the optional libraries (:class:`Libraries`, absent ones skipped
with a note), the candidates of one cell (breakeven, forced serial, forced
parallel, then the peers), the check that they all compute the same thing,
and the interleaved run of every cell (:func:`measure_cells`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from _common import Blas, Staged, dropin, log, ratio_range, threads_stage
from peers_numba import numba_kernels

import breakeven as be
from breakeven import testing
from breakeven._calibrate.timing import time_interleaved
from breakeven._core.openmp import usable_cpus
from breakeven._kernels.registry import KERNELS

F64 = np.dtype("float64")
BE = "breakeven"
BE_SERIAL = "breakeven forced serial"
BE_PARALLEL = "breakeven forced parallel"
OURS = (BE, BE_SERIAL, BE_PARALLEL)
# After a call at its default threads, OpenBLAS's workers spin ~0.1 s before
# they sleep; an OpenMP team from another runtime spins up to ~10 ms.  A
# candidate that leaves threads spinning is followed by this much idle time,
# outside the timed batches, so that it does not slow down whichever
# candidate comes next.
SETTLE_BLAS = 0.12
SETTLE_OMP = 0.02


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """One implementation of a kernel: a column of the kernel's table.

    ``make(lib, args)`` returns the call with its arguments bound (as locals
    are in a user's loop), from the registry's sample ``args``: the argument
    adapter.  ``lib`` is what :meth:`Libraries.lib` gives for ``needs``: the
    optional library, or with ``needs=None`` the registry's kernel (whose
    ``reference`` is NumPy's).  ``stage(blas)`` gives a (setup, teardown)
    run around each batch, outside the timed region.  ``{blas}`` in the
    column stands for BLAS's default thread count.
    """

    column: str
    make: Callable[[object, tuple], Callable[[], object]]
    needs: str | None = None
    stage: Callable[[Blas], tuple] | None = None


@dataclass(frozen=True)
class Peers:
    """A kernel's peers, in the order of its table's columns, and what the
    benchmark needs to know of the kernel's arguments: which one it writes
    its result into (None: it returns it), how a size is labelled (None: by
    its work, 2^k), and the work of the input every candidate is checked
    on."""

    impls: tuple[Impl, ...]
    result: int | None = None
    label: Callable[..., str] | None = None
    check_work: int = 4096


def _bound(fn, args):
    return lambda: fn(*args)


def _reference(k, a):
    return lambda: k.reference(*a)


def _np_histogram(k, a):
    # np.histogram itself: the registry's reference wraps it in a function
    return lambda: np.histogram(a[0], a[1], (a[2], a[3]))


# numexpr: the expression's names bound per call, as a user passes them
def _ne_sum(ne, a):
    ev, x = ne.evaluate, a[0]
    return lambda: ev("sum(x)", local_dict={"x": x})


def _ne_axpy(ne, a):
    ev, (s, x, y) = ne.evaluate, a
    return lambda: ev("y + a * x", local_dict={"a": s, "x": x, "y": y}, out=y)


def _ne_exp(ne, a):
    ev, (x, o) = ne.evaluate, a
    return lambda: ev("exp(x)", local_dict={"x": x}, out=o)


def _sk_argmin(argmin, a):
    X, C = a
    return lambda: argmin(X, C)


def _numba(adapt: Callable[[tuple], tuple] = tuple) -> tuple[Impl, Impl]:
    """``numba`` and ``numba parallel`` (``peers_numba``'s loops), on the
    arguments ``adapt`` makes of the registry's sample."""
    return (Impl("numba", lambda fns, a: _bound(fns[0], adapt(a)), "numba"),
            Impl("numba parallel", lambda fns, a: _bound(fns[1], adapt(a)),
                 "numba"))


def _blas_capped(blas):
    return (lambda: blas.set(1), lambda: blas.set(None))


def _blas_settled(blas):
    return (None, (lambda: time.sleep(SETTLE_BLAS)) if blas.default > 1 else None)


def _omp_settled(blas):
    return (None, lambda: time.sleep(SETTLE_OMP))


NUMPY = Impl("numpy", _reference)
# NumPy computes dot and nearest with BLAS: at one thread and at its default
NUMPY_BLAS = (Impl("numpy, BLAS 1", _reference, stage=_blas_capped),
              Impl("numpy, BLAS {blas}", _reference, stage=_blas_settled))

PEERS: dict[str, Peers] = {
    "sum": Peers((NUMPY, Impl("numexpr", _ne_sum, "numexpr"), *_numba())),
    "dot": Peers((*NUMPY_BLAS, *_numba())),
    "axpy": Peers((NUMPY, Impl("numexpr", _ne_axpy, "numexpr"),
                   *_numba(lambda a: (float(a[0]), a[1], a[2]))), result=2),
    "exp": Peers((NUMPY, Impl("numexpr", _ne_exp, "numexpr"), *_numba()),
                 result=1),
    "cumsum": Peers((NUMPY, *_numba()), result=1),
    "histogram": Peers((Impl("numpy", _np_histogram),
                        *_numba(lambda a: (a[0], int(a[1]), float(a[2]),
                                           float(a[3]))))),
    "nearest": Peers((*NUMPY_BLAS, *_numba(),
                      Impl("scikit-learn", _sk_argmin, "scikit-learn",
                           _omp_settled)),
                     label=lambda X, C: f"{X.shape[0]}x{C.shape[0]}x{X.shape[1]}",
                     check_work=1 << 14),
}
ORDER = tuple(PEERS)

# Section 2: fixed rules in the wild, each saying parallel or not for a work.
GRAIN_TORCH = testing.TORCH_GRAIN
CUTOFF_NUMEXPR = 2048
RULES: dict[str, Callable[[int], bool]] = {
    "always serial": lambda work: False,
    "always parallel": lambda work: True,
    f"grain {GRAIN_TORCH} (PyTorch)": lambda work: work >= GRAIN_TORCH,
    f"cut-off {CUTOFF_NUMEXPR} (numexpr)": lambda work: work >= CUTOFF_NUMEXPR,
}


# ---------------------------------------------------------------------------
# optional libraries
# ---------------------------------------------------------------------------


class Libraries:
    """The optional libraries, and notes on the ones missing."""

    def __init__(self):
        self.notes: list[str] = []
        self.versions: dict[str, str] = {}
        self.modules: dict[str, object] = {}
        self.ne = self.nb = self.plt = None
        try:
            import numexpr

            self.ne = self.modules["numexpr"] = numexpr
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

            self.modules["scikit-learn"] = pairwise_distances_argmin
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

    def lib(self, needs: str | None, kernel: str):
        """What an implementation's ``make`` is given (None: not installed)."""
        if needs is None:
            return KERNELS[kernel]
        if needs == "numba":
            return self.numba_fns.get(kernel)
        return self.modules.get(needs)

    def compile_numba(self, names) -> None:
        """JIT-compile the Numba loops for float64 (timed: first call on a
        tiny input, so compile time stays out of the comparison)."""
        if self.nb is None:
            return
        fns = numba_kernels(self.nb)
        rng = np.random.default_rng(9)
        for name in names:
            args = KERNELS[name].sample(1024, F64, rng)
            times = []
            for impl in PEERS[name].impls:
                if impl.needs == "numba":
                    call = impl.make(fns[name], args)
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
            self.numba_fns[name] = fns[name]
            self.compile_s[name] = (times[0], times[1])
            log(f"  numba {name}: compiled in {times[0]:.2f} s / "
                f"{times[1]:.2f} s (parallel)")


# ---------------------------------------------------------------------------
# sections 1 and 2: every candidate in one interleaved run per cell
# ---------------------------------------------------------------------------


def size_label(name, args) -> str:
    label = PEERS[name].label
    if label is not None:
        return label(*args)
    work = KERNELS[name].work(*args)
    lg = int(round(math.log2(work)))
    return f"2^{lg}" if 1 << lg == work else str(work)


def candidates(name, args, libs: Libraries, blas: Blas) -> Staged:
    """Everything timed for one kernel and size, in the order of the table:
    breakeven left to decide, forced serial, forced parallel, then the peers
    whose library is installed."""
    n = usable_cpus()
    c: dict[str, object] = {
        BE: dropin(name, args),
        BE_SERIAL: (dropin(name, args), *threads_stage(1)),
        BE_PARALLEL: (dropin(name, args), *threads_stage(n, exact=True)),
    }
    for impl in PEERS[name].impls:
        lib = libs.lib(impl.needs, name)
        if lib is None:
            continue
        call = impl.make(lib, args)
        c[impl.column.format(blas=blas.default)] = \
            (call, *impl.stage(blas)) if impl.stage is not None else call
    return Staged(c)


def check_peers(name, libs: Libraries, blas: Blas) -> None:
    """Every candidate computes what breakeven does (on a small input)."""
    spec = PEERS[name]
    out = spec.result
    args = KERNELS[name].sample(spec.check_work, F64, np.random.default_rng(5))
    fresh = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    cands = candidates(name, fresh, libs, blas)
    want = None
    for cname in cands:
        if out is not None:  # axpy adds into its y: the same y for each
            fresh[out][:] = args[out]
        got = cands[cname]()
        cands.close()
        if out is not None:
            got = fresh[out].copy()
        elif isinstance(got, tuple):  # np.histogram's (counts, edges)
            got = got[0]
        got = np.asarray(got)
        if want is None:
            want = got
        elif not np.allclose(got, want, rtol=1e-9, atol=1e-9):
            raise AssertionError(f"{name}: {cname} disagrees with breakeven")


def peer_names(t) -> list[str]:
    return [n for n in t if n not in OURS]


def best_peer(t) -> str:
    return min(peer_names(t), key=lambda n: t[n].median)


def numpy_default(t) -> str:
    """The NumPy a user runs: BLAS at its default threads."""
    names = [n for n in t if n.startswith("numpy")]
    return names[-1]


def measure_cells(names, sizes, repeats, min_batch, libs: Libraries,
                  blas: Blas) -> list[dict]:
    """Per kernel and size (log2 work): every candidate's timings, the best
    peer, breakeven's ratio to it (``vs_best``) and NumPy's to breakeven
    (``vs_numpy``), and what dispatch decides for that work right after."""
    cells = []
    rng = np.random.default_rng(0)
    for name in names:
        check_peers(name, libs, blas)
        seen = set()
        t_kernel = time.perf_counter()
        for lg in sizes:
            args = KERNELS[name].sample(1 << lg, F64, rng)
            label = size_label(name, args)
            if label in seen:
                continue
            seen.add(label)
            work = KERNELS[name].work(*args)
            t0 = time.perf_counter()
            with candidates(name, args, libs, blas) as cands:
                t = time_interleaved(cands, repeats=repeats,
                                     min_batch_time=min_batch)
            d = be.decide(name, work)
            bp = best_peer(t)
            cells.append({"kernel": name, "label": label, "work": work, "t": t,
                          "decision": f"{d.variant} {d.threads}"
                          if d.variant == "parallel" else d.variant,
                          "best": bp, "vs_best": ratio_range(t[BE], t[bp]),
                          "vs_numpy": ratio_range(t[numpy_default(t)], t[BE])})
            log(f"  {name} {label}: {time.perf_counter() - t0:.1f} s")
            del args
        log(f"{name}: {time.perf_counter() - t_kernel:.1f} s")
    return cells
