"""The per-call fast path of the drop-in functions, in C.

A Python-level check of a call's inputs costs more than a small kernel: at
n = 16 a sum takes tens of nanoseconds, checking that ``a`` is a contiguous
float64 ndarray in Python takes hundreds.  Here the checks use NumPy's C API,
and a call that dispatch would run serially anyway (its work below the hot
threshold, no ``threads(..., exact=True)`` in force) runs the serial kernel
directly.  Everything else goes to the Python-level dispatcher.
"""
cimport numpy as cnp

from breakeven._reductions cimport sum_serial_d, sum_serial_f

import numpy as np

cnp.import_array()


cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of the array's dtype holding *data (np.float64(x), ...)
    object PyArray_Scalar(void *data, cnp.PyArray_Descr *descr, object base)

cdef object _NoValue = np._NoValue
cdef object _slow_sum = None

# Smallest work the hot table sends parallel, [float64, float32]; 0 until the
# dispatcher has loaded its profile (then every call takes the slow path once).
cdef double _hot_sum[2]
_hot_sum[0] = 0
_hot_sum[1] = 0
# How many threads(..., exact=True) blocks are open, in any thread: while any
# is, calls take the slow path (it knows which thread they belong to).
cdef int _forcing = 0
# Cut-off below which the kernel runs with the GIL held (releasing and
# retaking it costs more than the work).
cdef enum:
    NOGIL_MIN = 8192


def set_sum_thresholds(double f64, double f32):
    global _hot_sum
    _hot_sum[0] = f64
    _hot_sum[1] = f32


def forcing(int delta):
    global _forcing
    _forcing += delta
    return _forcing


def set_slow_paths(sum_slow):
    global _slow_sum
    _slow_sum = sum_slow


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
        if ((typenum == cnp.NPY_DOUBLE or typenum == cnp.NPY_FLOAT)
                and cnp.PyArray_NDIM(arr) > 0 and cnp.PyArray_ISCARRAY_RO(arr)
                and cnp.PyArray_ISNOTSWAPPED(arr)):
            n = cnp.PyArray_SIZE(arr)
            if typenum == cnp.NPY_DOUBLE and n < _hot_sum[0]:
                if n < NOGIL_MIN:
                    d = sum_serial_d(<const double *>cnp.PyArray_DATA(arr), n)
                else:
                    with nogil:
                        d = sum_serial_d(<const double *>cnp.PyArray_DATA(arr), n)
                return PyArray_Scalar(&d, cnp.PyArray_DESCR(arr), None)
            if typenum == cnp.NPY_FLOAT and n < _hot_sum[1]:
                if n < NOGIL_MIN:
                    f = sum_serial_f(<const float *>cnp.PyArray_DATA(arr), n)
                else:
                    with nogil:
                        f = sum_serial_f(<const float *>cnp.PyArray_DATA(arr), n)
                return PyArray_Scalar(&f, cnp.PyArray_DESCR(arr), None)
    return _slow_sum(a, axis, dtype, out, keepdims, initial, where)
