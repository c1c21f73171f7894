"""Kernels of a user's own, compiled for the benchmarks (not a benchmark).

``relu`` three ways, as a library would write it:

- ``relu_serial`` / ``relu_parallel``: a serial and a ``prange`` variant for
  ``@breakeven.kernel`` (float32 and float64, Cython's fused ``floating``,
  as a library's kernels usually are; ``relu64_*`` the float64-only pair);
- ``relu``: one body that asks the dispatch core for its threads through
  the public Cython API (``from breakeven cimport dispatch``), its loop a
  ``prange`` with ``use_threads_if``; ``relu_branch`` the same with its
  serial calls in a plain loop (the body an inline function);

``axpy`` (``out = a x + y``) and ``rowsum`` (the sums of a 2-D array's
rows), memory-bound pairs for ``@breakeven.kernel`` as well (registered
``zc.axpy`` and ``zc.rowsum``: the kernels nobody calibrated of
``bench_zero_config.py``); and ``begin_end_ns``: the cost of one begin/end
pair of that API, timed by a loop in C.  :func:`load` builds them once
into ``build/bench-ext`` (the build reuses what is there) and returns the
module, with the kernels registered; :func:`load_example` does the same for an
example library of the docs (``docs/examples/mykernels``, ``bekmeans``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "bench-ext"

PYX = '''
# cython: language_level=3, boundscheck=False, wraparound=False
from cython cimport floating
from cython.parallel cimport prange
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from breakeven cimport dispatch as be

import numpy as np

import breakeven

if be.import_breakeven() != 0:
    raise ImportError("breakeven's C API is not available")


def relu_serial(const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] if x[i] > 0 else 0


def relu_parallel(const floating[::1] x, floating[::1] out, int n_threads):
    cdef Py_ssize_t i
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            out[i] = x[i] if x[i] > 0 else 0


def relu64_serial(const double[::1] x, double[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] if x[i] > 0 else 0


def relu64_parallel(const double[::1] x, double[::1] out, int n_threads):
    cdef Py_ssize_t i
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            out[i] = x[i] if x[i] > 0 else 0


def relu(const floating[::1] x, floating[::1] out):
    """One body: the core decides its threads."""
    cdef be.Call call
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt
    with nogil:
        nt = be.begin(&call, RELU, be.FLOAT64 if floating is double else be.FLOAT32,
                      n)
        for i in prange(n, num_threads=nt, use_threads_if=nt > 1,
                        schedule="static"):
            out[i] = x[i] if x[i] > 0 else 0
        be.end(&call)


cdef inline void _relu_at(const floating *x, floating *out,
                          Py_ssize_t i) noexcept nogil:
    out[i] = x[i] if x[i] > 0 else 0


def relu_branch(const floating[::1] x, floating[::1] out):
    """One body, its serial calls without an OpenMP region: the loop body
    in one inline function, under prange or a plain loop."""
    cdef be.Call call
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt
    with nogil:
        nt = be.begin(&call, RELU_BRANCH,
                      be.FLOAT64 if floating is double else be.FLOAT32, n)
        if nt > 1:
            for i in prange(n, num_threads=nt, schedule="static"):
                _relu_at(&x[0], &out[0], i)
        else:
            for i in range(n):
                _relu_at(&x[0], &out[0], i)
        be.end(&call)


def axpy_serial(const floating[::1] x, const floating[::1] y, floating[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = 2 * x[i] + y[i]


def axpy_parallel(const floating[::1] x, const floating[::1] y, floating[::1] out,
                  int n_threads):
    cdef Py_ssize_t i
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            out[i] = 2 * x[i] + y[i]


def rowsum_serial(const floating[:, ::1] x, floating[::1] out):
    cdef Py_ssize_t i, j
    cdef floating s
    with nogil:
        for i in range(x.shape[0]):
            s = 0
            for j in range(x.shape[1]):
                s = s + x[i, j]
            out[i] = s


def rowsum_parallel(const floating[:, ::1] x, floating[::1] out, int n_threads):
    cdef Py_ssize_t i, j
    cdef floating s
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            s = 0
            for j in range(x.shape[1]):
                s = s + x[i, j]
            out[i] = s


def begin_end_ns(int kernel, Py_ssize_t work, long calls):
    """Nanoseconds per begin/end pair, over ``calls`` pairs in a C loop."""
    cdef be.Call call
    cdef long i
    cdef long sink = 0
    cdef timespec t0, t1
    with nogil:
        clock_gettime(CLOCK_MONOTONIC, &t0)
        for i in range(calls):
            sink += be.begin(&call, kernel, be.FLOAT64, work)
            be.end(&call)
        clock_gettime(CLOCK_MONOTONIC, &t1)
    return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / calls


def _sample(work, dtype, rng):
    x = rng.standard_normal(int(work)).astype(dtype)
    return x, np.empty_like(x)


def _axpy_sample(work, dtype, rng):
    x, out = _sample(work, dtype, rng)
    return x, rng.standard_normal(int(work)).astype(dtype), out


ROW = 64  # columns of rowsum's rows


def _rowsum_sample(work, dtype, rng):
    x = rng.standard_normal((max(1, int(work) // ROW), ROW)).astype(dtype)
    return x, np.empty(x.shape[0], dtype)


cdef int RELU = breakeven.register(
    "bench.relu", relu, work=0, sample=_sample).slot
cdef int RELU_BRANCH = breakeven.register(
    "bench.relu_branch", relu_branch, work=0, sample=_sample).slot
'''

WRAPPER = '''
"""The benchmark's kernels, registered."""
import breakeven
from bench_relu_ext import *  # noqa: F401,F403
from bench_relu_ext import _axpy_sample, _rowsum_sample, _sample
from bench_relu_ext import axpy_parallel, axpy_serial, relu64_parallel, relu64_serial
from bench_relu_ext import relu_parallel, relu_serial, rowsum_parallel, rowsum_serial


# the serial/parallel pairs, dispatched by the decorator: the work the size
# of argument 0 (taken in C), or from a function of the arguments
relu_pair = breakeven.kernel(parallel=relu_parallel, work=0, sample=_sample,
                             name="bench.relu_pair")(relu_serial)
relu64_pair = breakeven.kernel(parallel=relu64_parallel, work=0, sample=_sample,
                               name="bench.relu64_pair",
                               dtypes=("float64",))(relu64_serial)
relu_pair_fn = breakeven.kernel(parallel=relu_parallel,
                                work=lambda x, out: x.shape[0], sample=_sample,
                                name="bench.relu_pair_fn")(relu_serial)
# memory-bound kernels of one's own, for the zero-config benchmark
axpy_pair = breakeven.kernel(parallel=axpy_parallel, work=0, sample=_axpy_sample,
                             name="zc.axpy")(axpy_serial)
rowsum_pair = breakeven.kernel(parallel=rowsum_parallel,
                               work=lambda x, out: x.size, sample=_rowsum_sample,
                               name="zc.rowsum")(rowsum_serial)
'''


EXAMPLES = ROOT / "docs" / "examples"


def _build(module: str, pyx: Path, build_lib: Path) -> None:
    """Compile ``pyx`` into the extension ``module`` under ``build_lib``
    with setuptools and OpenMP, as a user's build would (the examples'
    builder, at -O2)."""
    tmp = BUILD / f"{module}-build"
    tmp.mkdir(parents=True, exist_ok=True)
    _examples().compile_extensions([(module, str(pyx))], build_lib, tmp,
                                   flags=("-O2",))


def _examples():
    """docs/examples/build_example.py, the examples' builder."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    import build_example

    return build_example


def _stale(built: list[Path], sources) -> bool:
    return not built or any(f.stat().st_mtime > min(b.stat().st_mtime for b in built)
                            for f in sources)


def load_example(name: str = "mykernels"):
    """An example library of the docs (``mykernels``, ``bekmeans``), built
    into ``build/bench-ext/<name>`` by ``docs/examples/build_example.py``
    (the suite's builder) when its sources changed, and imported."""
    build_example = _examples()
    target = BUILD / name
    if _stale(list((target / name).glob("*.so")), build_example.sources(name)):
        build_example.build(name, target, BUILD / f"{name}-build", meson=False)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module(name)


def load():
    """The kernels' module (built on first use)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    pyx = BUILD / "bench_relu_ext.pyx"
    if not pyx.exists() or pyx.read_text() != PYX:
        pyx.write_text(PYX)
    if _stale(list(BUILD.glob("bench_relu_ext*.so")), [pyx]):
        _build("bench_relu_ext", pyx, BUILD)
    (BUILD / "bench_relu.py").write_text(WRAPPER)
    if str(BUILD) not in sys.path:
        sys.path.insert(0, str(BUILD))
    return importlib.import_module("bench_relu")
