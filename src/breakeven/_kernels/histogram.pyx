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


# ---------------------------------------------------------------------------
# The drop-in functions: NumPy's signatures, these loops inside (how a
# drop-in is made: arrays.pxd).
# ---------------------------------------------------------------------------
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.list cimport PyList_CheckExact
from cpython.long cimport (
    PyLong_AsDouble,
    PyLong_AsLongLongAndOverflow,
    PyLong_CheckExact,
)
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport isfinite
from breakeven cimport dispatch
from breakeven._kernels.arrays cimport (
    start_dropins,
    CallPlan,
    NOT_FLOAT,
    PyArray_IsScalar_Floating,
    PyArray_IsScalar_Integer,
    aligned,
    error_set,
    float_typenum,
    plan_tuple,
)

import numpy as np

from breakeven._kernels.registry import (
    Kernel,
    KernelModel,
    first_length,
    register_builtin,
    uniform_array,
)

start_dropins(__name__)

# The kernels' slots in the dispatch core, from their declarations'
# registration (at the end of this module).
cdef int K_HISTOGRAM = -1

# A C constant: written as (1 << 40) in a condition, Cython compares
# through Python ints.
cdef long long _MAX_BINS = (<long long>1) << 40  # more bins go to NumPy's error


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_HIST_BINS = "bins is not a positive integer of at most 2**40"
cdef const char *R_HIST_DATA_RANGE = "the data's range is not finite"
cdef const char *R_HIST_NARROW = "the range is too narrow for the dtype"
cdef const char *R_HIST_OPTIONS = "weights or density given"
cdef const char *R_HIST_RANGE = (
    "range is not a pair of finite, increasing numbers the kernel "
    "takes"
)
cdef const char *R_ONE_CHUNK = "one chunk"  # a sentinel: see _plan_histogram


cdef int _range_number(object v, int t, double *out) noexcept:
    """A bound of ``range`` the kernel takes: a Python number, or, with
    float64 data, a NumPy real scalar (with float32 data it could promote:
    NumPy's); 0 if taken."""
    if PyFloat_CheckExact(v):
        out[0] = PyFloat_AS_DOUBLE(v)
        return 0
    if PyLong_CheckExact(v):
        out[0] = PyLong_AsDouble(v)  # an int too big for a double: NumPy's
    elif t == cnp.NPY_DOUBLE and (PyArray_IsScalar_Floating(v)
                                  or PyArray_IsScalar_Integer(v)):
        try:
            out[0] = float(v)
        except Exception:  # a complex-like scalar: NumPy's to judge
            return 1
    else:
        return 1
    return 1 if error_set() else 0


cdef const char *_histogram_check(a, bins, range, density, weights, long long *nbins,
                                  double *lo, double *hi, bint *in_dtype,
                                  CallPlan *p) except *:
    """The kernel's histogram: equal bins over a range it can compute the
    edges of as NumPy does.  Returns a reason code (or raises what NumPy's
    min/max of the data raises)."""
    cdef int t = float_typenum(a)
    cdef int overflow = 0
    cdef cnp.ndarray xs
    cdef float lo32, hi32
    if weights is not None or not (density is None or density is False):
        return R_HIST_OPTIONS
    if t < 0:
        return NOT_FLOAT
    xs = <cnp.ndarray>a
    if PyLong_CheckExact(bins):
        nbins[0] = PyLong_AsLongLongAndOverflow(bins, &overflow)
    elif PyArray_IsScalar_Integer(bins):
        nbins[0] = int(bins)
    else:
        return R_HIST_BINS
    if overflow or not 1 <= nbins[0] <= _MAX_BINS:
        return R_HIST_BINS
    in_dtype[0] = False
    if range is None:
        if cnp.PyArray_SIZE(xs) == 0:
            lo[0], hi[0] = 0.0, 1.0
        else:
            # NumPy takes them as scalars of the data's dtype, and computes
            # the edges (and the widening of an empty range) in that dtype.
            lo[0], hi[0] = float(xs.min()), float(xs.max())
            if not (isfinite(lo[0]) and isfinite(hi[0])):
                return R_HIST_DATA_RANGE
            if lo[0] == hi[0]:
                if t == cnp.NPY_FLOAT:
                    lo32, hi32 = <float>lo[0], <float>hi[0]
                    lo32 = lo32 - <float>0.5
                    hi32 = hi32 + <float>0.5
                    lo[0], hi[0] = lo32, hi32
                else:
                    lo[0], hi[0] = lo[0] - 0.5, hi[0] + 0.5
            in_dtype[0] = True
    else:
        if PyTuple_CheckExact(range) and PyTuple_GET_SIZE(range) == 2:
            if (_range_number(<object>PyTuple_GET_ITEM(range, 0), t, lo)
                    or _range_number(<object>PyTuple_GET_ITEM(range, 1), t, hi)):
                return R_HIST_RANGE
        elif PyList_CheckExact(range) and len(range) == 2:
            if _range_number(range[0], t, lo) or _range_number(range[1], t, hi):
                return R_HIST_RANGE
        else:
            return R_HIST_RANGE
        if not (isfinite(lo[0]) and isfinite(hi[0])) or lo[0] > hi[0]:
            return R_HIST_RANGE
        if lo[0] == hi[0]:
            lo[0], hi[0] = lo[0] - 0.5, hi[0] + 0.5
    if not lo[0] < hi[0]:  # the widening was lost to rounding: NumPy's error
        return R_HIST_NARROW
    p.kernel, p.typenum, p.work = K_HISTOGRAM, t, cnp.PyArray_SIZE(xs)
    if p.work <= MIN_CHUNK:
        return R_ONE_CHUNK
    return NULL


def histogram(a, bins=10, range=None, density=None, weights=None):
    """Histogram with equal-width bins, as :func:`numpy.histogram`.

    A float32/float64 array with an integer number of bins (no weights, no
    density) runs the calibrated kernel, with NumPy's edges and bin rule
    exactly: the counts and edges are NumPy's.  Anything else is
    ``numpy.histogram``.

    Parameters
    ----------
    a : array_like
    bins : int or sequence or str
    range : (float, float), optional
    density : bool, optional
    weights : array_like, optional
        As in :func:`numpy.histogram`.

    Returns
    -------
    counts : ndarray
        The number of values in each bin.
    edges : ndarray
        The ``bins + 1`` bin edges.

    Raises
    ------
    ValueError
        For a range that is not finite or not increasing, or data whose range
        is not finite (NumPy's errors).

    See Also
    --------
    numpy.histogram

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> counts, edges = breakeven.histogram(np.array([0.1, 0.4, 0.5, 0.9]), 2,
    ...                                     (0.0, 1.0))
    >>> counts
    array([2, 2])
    >>> edges
    array([0. , 0.5, 1. ])
    """
    cdef CallPlan p
    cdef dispatch.Call call
    cdef long long nbins
    cdef double lo, hi
    cdef bint in_dtype
    cdef int nt
    cdef const char *code = _histogram_check(a, bins, range, density, weights, &nbins,
                                             &lo, &hi, &in_dtype, &p)
    if code == R_ONE_CHUNK:
        # one thread counts it whatever the decision: no cores are taken
        # for what cannot run in parallel
        return count(aligned(a), nbins, lo, hi, 1, in_dtype)
    if code != NULL:
        return np.histogram(a, bins=bins, range=range, density=density,
                            weights=weights)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    try:
        return count(aligned(a), nbins, lo, hi, nt, in_dtype)
    finally:
        dispatch.end(&call)


def _plan_histogram(a, bins=10, range=None, density=None, weights=None):
    cdef CallPlan p
    cdef long long nbins
    cdef double lo, hi
    cdef bint in_dtype
    cdef const char *reason = _histogram_check(a, bins, range, density, weights,
                                               &nbins, &lo, &hi, &in_dtype, &p)
    if reason == R_ONE_CHUNK:  # the kernel, on one thread
        return (f"at most {MIN_CHUNK} elements: one thread counts them whatever "
                "the decision"), p.kernel, p.typenum, p.work
    return plan_tuple(reason, &p)


def _sample_histogram(work, dtype, rng):
    return (uniform_array(work, dtype, rng), 64, -1.0, 1.0)


def _histogram_reference(x, bins, lo, hi):
    return np.histogram(x, bins, (lo, hi))


# The declaration: everything else derives from it.
HISTOGRAM = register_builtin(Kernel(
    "histogram", histogram_serial, histogram_parallel, _histogram_reference,
    first_length, _sample_histogram,
    call=lambda x, bins, lo, hi: histogram(x, bins, (lo, hi)), dropin=histogram,
    plan=_plan_histogram, model=KernelModel("compute", 1.5, 8, per_thread_us=0.3)))
K_HISTOGRAM = HISTOGRAM.slot
# For the docs: the most elements a histogram counts on one thread.
HIST_MIN_CHUNK = MIN_CHUNK
