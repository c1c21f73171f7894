"""histogram: equal-width bins with NumPy's edges and bin rule.

Each thread counts a contiguous share of the input into its own private
row of counts; the rows are added up afterwards.  Counts are integers, so
the result does not depend on the split.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free

from breakeven._simd cimport be_hist_d, be_hist_f
from breakeven._threads cimport check_threads

cdef enum:
    # Rows of private counts are padded to whole cache lines (8 x int64).
    LINE = 8
    # Smallest share of the input a thread gets.
    MIN_CHUNK = 4096


cdef inline void _hist(const floating *x, Py_ssize_t n, const floating *edges,
                       Py_ssize_t bins, double lo, double hi,
                       int64_t *counts) noexcept nogil:
    if floating is double:
        be_hist_d(x, n, edges, bins, lo, hi, counts)
    else:
        be_hist_f(x, n, edges, bins, lo, hi, counts)


def _edges(Py_ssize_t bins, double lo, double hi, dtype, bint in_dtype=False):
    """The bin edges exactly as ``np.linspace(lo, hi, bins + 1)`` computes
    them, without its Python overhead: in float64 then cast to ``dtype``
    (``lo`` and ``hi`` given as Python floats), or, with ``in_dtype``, in
    ``dtype``'s own arithmetic (``lo`` and ``hi`` NumPy scalars of that
    dtype, as np.histogram has them when it takes the range from the data).
    Raises NumPy's ValueError if the edges are not strictly increasing."""
    cdef double[::1] e = np.empty(bins + 1, dtype=np.float64)
    cdef float[::1] ef
    cdef double delta = hi - lo
    cdef double step = delta / bins
    cdef float lo32 = <float>lo, hi32 = <float>hi, delta32, step32
    cdef Py_ssize_t i
    # Compiled without FMA contraction: i * step + lo rounds twice, as in NumPy.
    if in_dtype and dtype == np.float32:
        ef = np.empty(bins + 1, dtype=np.float32)
        delta32 = hi32 - lo32
        step32 = delta32 / <float>bins
        for i in range(bins + 1):
            if step32 == 0:
                ef[i] = (<float>i / <float>bins) * delta32 + lo32
            else:
                ef[i] = <float>i * step32 + lo32
        ef[bins] = hi32
        out = np.asarray(ef)
    else:
        if step == 0:
            for i in range(bins + 1):
                e[i] = (i / <double>bins) * delta + lo
        else:
            for i in range(bins + 1):
                e[i] = i * step + lo
        e[bins] = hi
        out = np.asarray(e).astype(dtype, copy=False)
    if bins > 1 and np.any(out[:-1] >= out[1:]):
        raise ValueError(f"Too many bins for data range. Cannot create {bins} "
                         "finite-sized bins.")
    return out


cdef void _check_args(Py_ssize_t bins, double lo, double hi) except *:
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    if not (isfinite(lo) and isfinite(hi)):
        raise ValueError(f"range [{lo}, {hi}] is not finite")
    if not lo < hi:
        raise ValueError(f"range must have lo < hi, got [{lo}, {hi}]")


def histogram_serial(const floating[::1] x, Py_ssize_t bins, double lo, double hi,
                     *, bint edges_in_dtype=False):
    """Counts of ``x`` in ``bins`` equal bins over ``[lo, hi]``, on one thread.

    Returns ``(counts, edges)`` as ``np.histogram(x, bins, (lo, hi))`` does:
    values outside the range (and NaN) are ignored, the last bin is closed.
    ``edges_in_dtype``: compute the edges in x's dtype, as np.histogram does
    when it takes the range from the data (see ``_edges``).
    """
    _check_args(bins, lo, hi)
    edges_arr = _edges(bins, lo, hi, np.float64 if floating is double else np.float32,
                       edges_in_dtype)
    cdef const floating[::1] edges = edges_arr
    counts_arr = np.zeros(bins, dtype=np.int64)
    cdef int64_t[::1] counts = counts_arr
    with nogil:
        _hist(&x[0] if x.shape[0] else NULL, x.shape[0], &edges[0], bins, lo, hi,
              &counts[0])
    return counts_arr, edges_arr


def histogram_parallel(const floating[::1] x, Py_ssize_t bins, double lo, double hi,
                       Py_ssize_t n_threads, *, bint edges_in_dtype=False):
    """:func:`histogram_serial` with up to ``n_threads`` threads."""
    cdef int nt = check_threads(n_threads)
    _check_args(bins, lo, hi)
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t chunk = max((n + nt - 1) // nt, <Py_ssize_t>MIN_CHUNK)
    cdef Py_ssize_t stride = (bins + LINE - 1) // LINE * LINE
    cdef Py_ssize_t t, j, start
    cdef int64_t *private
    if n <= chunk:
        return histogram_serial(x, bins, lo, hi, edges_in_dtype=edges_in_dtype)
    nt = <int>((n + chunk - 1) // chunk)
    edges_arr = _edges(bins, lo, hi, np.float64 if floating is double else np.float32,
                       edges_in_dtype)
    cdef const floating[::1] edges = edges_arr
    counts_arr = np.zeros(bins, dtype=np.int64)
    cdef int64_t[::1] counts = counts_arr
    private = <int64_t *>calloc(nt * stride, sizeof(int64_t))
    if private == NULL:
        raise MemoryError()
    with nogil:
        for t in prange(nt, num_threads=nt, schedule="static"):
            start = t * chunk
            _hist(&x[start], min(chunk, n - start), &edges[0], bins, lo, hi,
                  private + t * stride)
        for t in range(nt):
            for j in range(bins):
                counts[j] += private[t * stride + j]
    free(private)
    return counts_arr, edges_arr
