"""histogram: equal-width bins with NumPy's edges and bin rule.

Each thread counts a contiguous share of the input into its own private
row of counts; the rows are added up afterwards.  Counts are integers, so
the result does not depend on the split.
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free

from breakeven._kernels.simd cimport be_hist_d, be_hist_f
from breakeven._core.openmp cimport check_threads

cnp.import_array()

cdef enum:
    # Rows of private counts are padded to whole cache lines (8 x int64).
    LINE = 8
    # Below this many elements the serial count keeps the GIL.
    NOGIL_MIN = 8192


cdef inline void _hist(const void *x, bint single, Py_ssize_t n, const void *edges,
                       Py_ssize_t bins, double lo, double hi,
                       int64_t *counts) noexcept nogil:
    if single:
        be_hist_f(<const float *>x, n, <const float *>edges, bins, lo, hi, counts)
    else:
        be_hist_d(<const double *>x, n, <const double *>edges, bins, lo, hi, counts)


cdef cnp.ndarray _edges_array(Py_ssize_t bins, double lo, double hi, bint single,
                              bint in_dtype):
    """The bin edges exactly as ``np.linspace(lo, hi, bins + 1)`` computes
    them: in float64, then cast to float32 if ``single``; or, with
    ``in_dtype``, in float32's own arithmetic (as np.histogram has them when
    it takes a float32 range from the data).  Raises NumPy's ValueError if
    the edges are not strictly increasing."""
    cdef cnp.npy_intp size = bins + 1
    cdef int typenum = cnp.NPY_FLOAT if single else cnp.NPY_DOUBLE
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &size, typenum, 0)
    cdef double *e = <double *>cnp.PyArray_DATA(out)
    cdef float *ef = <float *>cnp.PyArray_DATA(out)
    cdef double delta = hi - lo, step = delta / bins, v
    cdef float lo32 = <float>lo, hi32 = <float>hi, delta32, step32
    cdef Py_ssize_t i
    cdef bint increasing = True
    # Compiled without FMA contraction: i * step + lo rounds twice, as in NumPy.
    if single and in_dtype:
        delta32 = hi32 - lo32
        step32 = delta32 / <float>bins
        for i in range(bins + 1):
            if step32 == 0:
                ef[i] = (<float>i / <float>bins) * delta32 + lo32
            else:
                ef[i] = <float>i * step32 + lo32
        ef[bins] = hi32
    else:
        for i in range(bins + 1):
            if i == bins:
                v = hi
            elif step == 0:
                v = (i / <double>bins) * delta + lo
            else:
                v = i * step + lo
            if single:
                ef[i] = <float>v
            else:
                e[i] = v
    if bins > 1:
        for i in range(bins):
            if single:
                increasing = ef[i] < ef[i + 1]
            else:
                increasing = e[i] < e[i + 1]
            if not increasing:
                raise ValueError(f"Too many bins for data range. Cannot create "
                                 f"{bins} finite-sized bins.")
    return out


def _edges(Py_ssize_t bins, double lo, double hi, dtype, bint in_dtype=False):
    """The edges of ``bins`` equal bins over ``[lo, hi]`` in ``dtype``
    (float32 or float64), as np.histogram computes them (see
    ``_edges_array``)."""
    return _edges_array(bins, lo, hi, np.dtype(dtype) == np.float32, in_dtype)


cdef void _check_args(Py_ssize_t bins, double lo, double hi) except *:
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    if not (isfinite(lo) and isfinite(hi)):
        raise ValueError(f"range [{lo}, {hi}] is not finite")
    if not lo < hi:
        raise ValueError(f"range must have lo < hi, got [{lo}, {hi}]")


cdef cnp.ndarray _float_vector(x):
    """x as a 1-D C-contiguous float32/float64 array (no copy if it is one)."""
    cdef cnp.ndarray a
    if cnp.PyArray_CheckExact(x):
        a = <cnp.ndarray>x
        if (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_ISCARRAY_RO(a)
                and cnp.PyArray_ISNOTSWAPPED(a)
                and cnp.PyArray_TYPE(a) in (cnp.NPY_DOUBLE, cnp.NPY_FLOAT)):
            return a
    a = np.ascontiguousarray(x)
    if a.ndim != 1 or a.dtype not in (np.float64, np.float32):
        raise ValueError(f"expected a 1-D float32 or float64 array, got "
                         f"{a.ndim}-D {a.dtype}")
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


cdef tuple _count(cnp.ndarray x, Py_ssize_t bins, double lo, double hi, int nt,
                  bint in_dtype):
    cdef bint single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef Py_ssize_t size = 4 if single else 8
    cdef Py_ssize_t chunk = max((n + nt - 1) // nt, <Py_ssize_t>MIN_CHUNK)
    cdef Py_ssize_t stride = (bins + LINE - 1) // LINE * LINE
    cdef Py_ssize_t t, j, start
    cdef cnp.npy_intp nbins = bins
    cdef int64_t *private
    cdef const char *data = <const char *>cnp.PyArray_DATA(x)
    edges_arr = _edges_array(bins, lo, hi, single, in_dtype)
    cdef const void *edges = cnp.PyArray_DATA(edges_arr)
    counts_arr = cnp.PyArray_ZEROS(1, &nbins, cnp.NPY_INT64, 0)
    cdef int64_t *counts = <int64_t *>cnp.PyArray_DATA(counts_arr)
    if n <= chunk:
        if n < NOGIL_MIN:
            _hist(data, single, n, edges, bins, lo, hi, counts)
        else:
            with nogil:
                _hist(data, single, n, edges, bins, lo, hi, counts)
        return counts_arr, edges_arr
    nt = <int>((n + chunk - 1) // chunk)
    private = <int64_t *>calloc(nt * stride, sizeof(int64_t))
    if private == NULL:
        raise MemoryError()
    with nogil:
        for t in prange(nt, num_threads=nt, schedule="static"):
            start = t * chunk
            _hist(data + start * size, single, min(chunk, n - start), edges, bins,
                  lo, hi, private + t * stride)
        for t in range(nt):
            for j in range(bins):
                counts[j] += private[t * stride + j]
    free(private)
    return counts_arr, edges_arr


cdef tuple count(cnp.ndarray x, Py_ssize_t bins, double lo, double hi, int nt,
                 bint in_dtype):
    return _count(x, bins, lo, hi, nt, in_dtype)


def histogram_serial(x, Py_ssize_t bins, double lo, double hi, *,
                     bint edges_in_dtype=False):
    """Counts of ``x`` in ``bins`` equal bins over ``[lo, hi]``, on one thread.

    ``x`` is a 1-D float32 or float64 array.  Returns ``(counts, edges)`` as
    ``np.histogram(x, bins, (lo, hi))`` does: values outside the range (and
    NaN) are ignored, the last bin is closed.  ``edges_in_dtype``: compute
    the edges in x's dtype, as np.histogram does when it takes the range
    from the data (see ``_edges_array``).
    """
    _check_args(bins, lo, hi)
    return _count(_float_vector(x), bins, lo, hi, 1, edges_in_dtype)


def histogram_parallel(x, Py_ssize_t bins, double lo, double hi,
                       Py_ssize_t n_threads, *, bint edges_in_dtype=False):
    """:func:`histogram_serial` with up to ``n_threads`` threads."""
    cdef int nt = check_threads(n_threads)
    _check_args(bins, lo, hi)
    return _count(_float_vector(x), bins, lo, hi, nt, edges_in_dtype)
