"""The per-call fast path of the drop-in functions, in C.

A Python-level check of a call's inputs costs more than a small kernel: at
n = 16 a sum takes tens of nanoseconds, checking that ``a`` is a contiguous
float64 ndarray in Python takes hundreds.  Here the checks use NumPy's C API,
and a call that dispatch would run serially anyway (its work below the hot
threshold, no ``threads(..., exact=True)`` in force) runs the serial kernel
directly.  Everything else goes to the Python-level dispatcher.
"""
cimport numpy as cnp

from cpython.float cimport PyFloat_AsDouble, PyFloat_CheckExact
from cpython.long cimport PyLong_CheckExact

from breakeven._reductions cimport (
    dot_serial_d,
    dot_serial_f,
    sum_serial_d,
    sum_serial_f,
)
from breakeven._scan cimport cumsum_serial_d, cumsum_serial_f
from breakeven._simd cimport be_axpy_d, be_axpy_f, be_exp_d, be_exp_f

from breakeven._histogram import histogram_serial as _histogram_serial
from breakeven._nearest import nearest_serial as _nearest_serial

import numpy as np

cnp.import_array()


cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of the array's dtype holding *data (np.float64(x), ...)
    object PyArray_Scalar(void *data, cnp.PyArray_Descr *descr, object base)
    # an empty array shaped like the prototype (np.empty_like)
    object PyArray_NewLikeArray(cnp.ndarray prototype, cnp.NPY_ORDER order,
                                cnp.PyArray_Descr *descr, int subok)

cdef object _NoValue = np._NoValue
cdef dict _slow = {}

# Smallest work the hot table sends parallel, [kernel][float64, float32]; 0
# until the dispatcher has loaded its profile (every call takes the slow path
# until then).
cdef enum:
    K_SUM = 0
    K_DOT = 1
    K_AXPY = 2
    K_EXP = 3
    K_CUMSUM = 4
    K_HISTOGRAM = 5
    K_NEAREST = 6
    N_KERNELS = 7
cdef double _hot[7][2]
_KERNEL_IDS = {"sum": K_SUM, "dot": K_DOT, "axpy": K_AXPY, "exp": K_EXP,
               "cumsum": K_CUMSUM, "histogram": K_HISTOGRAM, "nearest": K_NEAREST}
for _k in range(N_KERNELS):
    _hot[_k][0] = 0
    _hot[_k][1] = 0
# How many threads(..., exact=True) blocks are open, in any thread: while any
# is, calls take the slow path (it knows which thread they belong to).
cdef int _forcing = 0
# Cut-off below which the kernel runs with the GIL held (releasing and
# retaking it costs more than the work).
cdef enum:
    NOGIL_MIN = 8192


def set_thresholds(dict thresholds):
    """``{kernel: (float64 threshold, float32 threshold)}`` for the kernels
    with a fast path; missing ones get 0 (always the slow path)."""
    for name, k in _KERNEL_IDS.items():
        f64, f32 = thresholds.get(name, (0, 0))
        _hot[k][0] = f64
        _hot[k][1] = f32


def forcing(int delta):
    global _forcing
    _forcing += delta
    return _forcing


def set_slow_paths(**paths):
    _slow.update(paths)


cdef inline int _dtype_index(cnp.ndarray arr) noexcept:
    """0 for a C-contiguous, aligned, native float64 array of at least one
    dimension, 1 for such a float32 one, -1 otherwise."""
    cdef int t = cnp.PyArray_TYPE(arr)
    if cnp.PyArray_NDIM(arr) == 0 or not cnp.PyArray_ISCARRAY_RO(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return -1
    if t == cnp.NPY_DOUBLE:
        return 0
    if t == cnp.NPY_FLOAT:
        return 1
    return -1


cdef inline bint _fast_ok(int kernel, int d, Py_ssize_t n) noexcept:
    return d >= 0 and not _forcing and n < _hot[kernel][d]


cdef inline bint _disjoint_or_same(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    if pa == pb:
        return True
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef inline bint _writeable_like(object out, cnp.ndarray x) noexcept:
    """out is an exact ndarray of x's shape and dtype, C-contiguous, writeable,
    and x itself or not overlapping it."""
    if not cnp.PyArray_CheckExact(out):
        return False
    cdef cnp.ndarray o = <cnp.ndarray>out
    return (cnp.PyArray_TYPE(o) == cnp.PyArray_TYPE(x)
            and cnp.PyArray_ISCARRAY(o) and cnp.PyArray_ISNOTSWAPPED(o)
            and cnp.PyArray_SAMESHAPE(o, x) and _disjoint_or_same(o, x))


def sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue, initial=_NoValue,
        where=_NoValue):
    """Sum of array elements, as :func:`numpy.sum`.

    A contiguous float32/float64 array summed over all its elements runs the
    calibrated kernel (serial or parallel): a blocked pairwise sum whose
    result is the same for every thread count, within a pairwise-summation
    error of NumPy's.  Any other call is ``numpy.sum`` itself.

    Parameters
    ----------
    a : array_like
        Elements to sum.
    axis, dtype, out, keepdims, initial, where
        As in :func:`numpy.sum` (any of them sends the call to NumPy).

    Returns
    -------
    numpy scalar or ndarray
        As :func:`numpy.sum` returns.

    See Also
    --------
    numpy.sum, explain

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> float(breakeven.sum(np.arange(10.0)))
    45.0
    >>> breakeven.sum(np.ones((2, 3), dtype=np.float32)).dtype
    dtype('float32')
    >>> breakeven.sum([[1, 2], [3, 4]], axis=0)  # NumPy does this one
    array([4, 6])
    """
    cdef cnp.ndarray arr
    cdef int typenum
    cdef Py_ssize_t n
    cdef double d
    cdef float f
    if (cnp.PyArray_CheckExact(a) and axis is None and dtype is None
            and out is None and keepdims is _NoValue and initial is _NoValue
            and where is _NoValue and not _forcing):
        arr = <cnp.ndarray>a
        typenum = cnp.PyArray_TYPE(arr)
        if _dtype_index(arr) >= 0:
            n = cnp.PyArray_SIZE(arr)
            if typenum == cnp.NPY_DOUBLE and n < _hot[K_SUM][0]:
                if n < NOGIL_MIN:
                    d = sum_serial_d(<const double *>cnp.PyArray_DATA(arr), n)
                else:
                    with nogil:
                        d = sum_serial_d(<const double *>cnp.PyArray_DATA(arr), n)
                return PyArray_Scalar(&d, cnp.PyArray_DESCR(arr), None)
            if typenum == cnp.NPY_FLOAT and n < _hot[K_SUM][1]:
                if n < NOGIL_MIN:
                    f = sum_serial_f(<const float *>cnp.PyArray_DATA(arr), n)
                else:
                    with nogil:
                        f = sum_serial_f(<const float *>cnp.PyArray_DATA(arr), n)
                return PyArray_Scalar(&f, cnp.PyArray_DESCR(arr), None)
    return _slow["sum"](a, axis, dtype, out, keepdims, initial, where)


# The other drop-ins keep their docstrings in breakeven._api, which wraps
# these entry points: each returns NotImplemented when the call is not for
# the fast path.


def dot(a, b, out=None):
    cdef cnp.ndarray x, y
    cdef int d
    cdef Py_ssize_t n
    cdef double r
    cdef float rf
    if out is None and cnp.PyArray_CheckExact(a) and cnp.PyArray_CheckExact(b):
        x, y = <cnp.ndarray>a, <cnp.ndarray>b
        d = _dtype_index(x)
        n = cnp.PyArray_SIZE(x)
        if (cnp.PyArray_NDIM(x) == 1 and cnp.PyArray_NDIM(y) == 1
                and _dtype_index(y) == d and cnp.PyArray_SIZE(y) == n
                and _fast_ok(K_DOT, d, n)):
            if d == 0:
                r = dot_serial_d(<const double *>cnp.PyArray_DATA(x),
                                 <const double *>cnp.PyArray_DATA(y), n)
                return PyArray_Scalar(&r, cnp.PyArray_DESCR(x), None)
            rf = dot_serial_f(<const float *>cnp.PyArray_DATA(x),
                              <const float *>cnp.PyArray_DATA(y), n)
            return PyArray_Scalar(&rf, cnp.PyArray_DESCR(x), None)
    return _slow["dot"](a, b, out)


def axpy(a, x, y):
    cdef cnp.ndarray xs, ys
    cdef int d
    cdef Py_ssize_t n
    cdef double av
    if ((PyFloat_CheckExact(a) or PyLong_CheckExact(a)) and cnp.PyArray_CheckExact(x)
            and cnp.PyArray_CheckExact(y)):
        xs, ys = <cnp.ndarray>x, <cnp.ndarray>y
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if (_fast_ok(K_AXPY, d, n) and _writeable_like(ys, xs)
                and cnp.PyArray_SIZE(ys) == n):
            av = PyFloat_AsDouble(a)
            if d == 0:
                be_axpy_d(av, <const double *>cnp.PyArray_DATA(xs),
                          <double *>cnp.PyArray_DATA(ys), n)
            else:
                be_axpy_f(<float>av, <const float *>cnp.PyArray_DATA(xs),
                          <float *>cnp.PyArray_DATA(ys), n)
            return y
    return _slow["axpy"](a, x, y)


def exp(x, out=None, **kwargs):
    cdef cnp.ndarray xs, res
    cdef int d
    cdef Py_ssize_t n
    if not kwargs and cnp.PyArray_CheckExact(x):
        xs = <cnp.ndarray>x
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if _fast_ok(K_EXP, d, n):
            if out is None:
                res = PyArray_NewLikeArray(xs, cnp.NPY_CORDER, NULL, 0)
            elif _writeable_like(out, xs):
                res = <cnp.ndarray>out
            else:
                return _slow["exp"](x, out, **kwargs)
            if d == 0:
                be_exp_d(<const double *>cnp.PyArray_DATA(xs),
                         <double *>cnp.PyArray_DATA(res), n)
            else:
                be_exp_f(<const float *>cnp.PyArray_DATA(xs),
                         <float *>cnp.PyArray_DATA(res), n)
            return res
    return _slow["exp"](x, out, **kwargs)


def cumsum(a, axis=None, dtype=None, out=None):
    cdef cnp.ndarray xs, res
    cdef int d
    cdef cnp.npy_intp n
    if dtype is None and cnp.PyArray_CheckExact(a):
        xs = <cnp.ndarray>a
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if _fast_ok(K_CUMSUM, d, n) and (axis is None or (
                cnp.PyArray_NDIM(xs) == 1 and (axis == 0 or axis == -1)
                and type(axis) is int)):
            if out is None:
                res = cnp.PyArray_EMPTY(1, &n, cnp.PyArray_TYPE(xs), 0)
            elif (cnp.PyArray_CheckExact(out) and cnp.PyArray_NDIM(out) == 1
                  and cnp.PyArray_SIZE(out) == n
                  and cnp.PyArray_TYPE(out) == cnp.PyArray_TYPE(xs)
                  and cnp.PyArray_ISCARRAY(out) and cnp.PyArray_ISNOTSWAPPED(out)
                  and _disjoint_or_same(<cnp.ndarray>out, xs)):
                res = <cnp.ndarray>out
            else:
                return _slow["cumsum"](a, axis, dtype, out)
            if d == 0:
                cumsum_serial_d(<const double *>cnp.PyArray_DATA(xs),
                                <double *>cnp.PyArray_DATA(res), n)
            else:
                cumsum_serial_f(<const float *>cnp.PyArray_DATA(xs),
                                <float *>cnp.PyArray_DATA(res), n)
            return res
    return _slow["cumsum"](a, axis, dtype, out)


cdef inline bint _plain_number(object v) noexcept:
    return PyFloat_CheckExact(v) or PyLong_CheckExact(v)


def histogram(a, bins=10, range=None, density=None, weights=None):
    # Only a range given as Python numbers: with range=None, NumPy's own
    # min/max pass and its edge rules apply (the Python path handles them).
    cdef cnp.ndarray xs
    cdef int d
    cdef double lo, hi
    if (weights is None and (density is None or density is False)
            and PyLong_CheckExact(bins) and type(range) is tuple
            and len(range) == 2 and cnp.PyArray_CheckExact(a)):
        xs = <cnp.ndarray>a
        d = _dtype_index(xs)
        if (_fast_ok(K_HISTOGRAM, d, cnp.PyArray_SIZE(xs)) and bins >= 1
                and _plain_number(range[0]) and _plain_number(range[1])):
            lo, hi = range[0], range[1]
            if lo < hi and hi - lo < float("inf"):  # finite, increasing
                return _histogram_serial(xs.reshape(-1), bins, lo, hi)
    return _slow["histogram"](a, bins, range, density, weights)


def nearest(X, C):
    cdef cnp.ndarray x, c
    cdef int d
    if cnp.PyArray_CheckExact(X) and cnp.PyArray_CheckExact(C):
        x, c = <cnp.ndarray>X, <cnp.ndarray>C
        d = _dtype_index(x)
        if (cnp.PyArray_NDIM(x) == 2 and cnp.PyArray_NDIM(c) == 2
                and _dtype_index(c) == d and cnp.PyArray_DIM(x, 1) ==
                cnp.PyArray_DIM(c, 1) and cnp.PyArray_DIM(c, 0) > 0
                and _fast_ok(K_NEAREST, d, cnp.PyArray_DIM(x, 0)
                             * cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1))):
            return _nearest_serial(X, C)
    return _slow["nearest"](X, C)
