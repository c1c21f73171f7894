"""sum and dot: blocked pairwise reductions, bit-identical for any thread count.

The input is cut into blocks of ``BE_REDUCE_BLOCK`` elements (a constant, so
the bounds depend on the length only).  Each block is reduced by the same C
function whichever thread runs it, and the block results are combined by one
thread in a fixed pairwise order.  The serial variant runs the very same
blocks and combination, one after another.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from breakeven._kernels.simd cimport (
    BE_REDUCE_BLOCK,
    be_dot_block_d,
    be_dot_block_f,
    be_stack_d,
    be_stack_f,
    be_stack_init_d,
    be_stack_init_f,
    be_stack_push_d,
    be_stack_push_f,
    be_stack_result_d,
    be_stack_result_f,
    be_sum_block_d,
    be_sum_block_f,
)
from breakeven._core.openmp cimport check_threads

# Up to this many block results live on the stack; more are malloc'ed.
cdef enum:
    STACK_PARTIALS = 64


cdef inline floating _sum_block(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return be_sum_block_d(x, n)
    else:
        return be_sum_block_f(x, n)


cdef inline floating _dot_block(const floating *x, const floating *y,
                                Py_ssize_t n) noexcept nogil:
    if floating is double:
        return be_dot_block_d(x, y, n)
    else:
        return be_dot_block_f(x, y, n)


cdef inline floating _combine(const floating *partials, Py_ssize_t nb) noexcept nogil:
    """Pairwise combination of block results, in block order."""
    cdef be_stack_d sd
    cdef be_stack_f sf
    cdef Py_ssize_t b
    if floating is double:
        be_stack_init_d(&sd)
        for b in range(nb):
            be_stack_push_d(&sd, partials[b])
        return be_stack_result_d(&sd)
    else:
        be_stack_init_f(&sf)
        for b in range(nb):
            be_stack_push_f(&sf, partials[b])
        return be_stack_result_f(&sf)


cdef inline Py_ssize_t _n_blocks(Py_ssize_t n) noexcept nogil:
    return (n + BE_REDUCE_BLOCK - 1) // BE_REDUCE_BLOCK


cdef inline Py_ssize_t _block_len(Py_ssize_t n, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t rest = n - b * BE_REDUCE_BLOCK
    return rest if rest < BE_REDUCE_BLOCK else BE_REDUCE_BLOCK


cdef floating _reduce_serial(const floating *x, const floating *y,
                             Py_ssize_t n) noexcept nogil:
    """Sum of x (y is NULL) or dot of x and y, block after block."""
    cdef Py_ssize_t nb = _n_blocks(n), b, off
    cdef be_stack_d sd
    cdef be_stack_f sf
    cdef floating part
    if floating is double:
        be_stack_init_d(&sd)
    else:
        be_stack_init_f(&sf)
    for b in range(nb):
        off = b * BE_REDUCE_BLOCK
        if y == NULL:
            part = _sum_block(x + off, _block_len(n, b))
        else:
            part = _dot_block(x + off, y + off, _block_len(n, b))
        if floating is double:
            be_stack_push_d(&sd, part)
        else:
            be_stack_push_f(&sf, part)
    if floating is double:
        return be_stack_result_d(&sd)
    else:
        return be_stack_result_f(&sf)


cdef int _reduce_parallel(const floating *x, const floating *y, Py_ssize_t n,
                          int n_threads, floating *result) except -1:
    cdef Py_ssize_t nb = _n_blocks(n), b, off
    cdef floating on_stack[STACK_PARTIALS]
    cdef floating *partials = on_stack
    if n_threads > nb:
        n_threads = <int>nb
    if n_threads <= 1:
        with nogil:
            result[0] = _reduce_serial(x, y, n)
        return 0
    if nb > STACK_PARTIALS:
        partials = <floating *>malloc(nb * sizeof(floating))
        if partials == NULL:
            raise MemoryError()
    try:
        with nogil:
            for b in prange(nb, num_threads=n_threads, schedule="static"):
                off = b * BE_REDUCE_BLOCK
                if y == NULL:
                    partials[b] = _sum_block(x + off, _block_len(n, b))
                else:
                    partials[b] = _dot_block(x + off, y + off, _block_len(n, b))
            result[0] = _combine(partials, nb)
    finally:
        if partials != on_stack:
            free(partials)
    return 0


cdef inline void _check_same_length(Py_ssize_t a, Py_ssize_t b) except *:
    if a != b:
        raise ValueError(f"x and y must have the same length, got {a} and {b}")


def sum_serial(const floating[::1] x):
    """Sum of a contiguous 1-D float32/float64 array, on one thread."""
    cdef Py_ssize_t n = x.shape[0]
    cdef floating result
    if n == 0:
        return 0.0
    with nogil:
        result = _reduce_serial(&x[0], <const floating *>NULL, n)
    # + 0.0: NumPy's sum starts from +0.0, so a sum of -0.0s is +0.0.
    return result + 0.0


def sum_parallel(const floating[::1] x, Py_ssize_t n_threads):
    """Sum with up to ``n_threads`` OpenMP threads; bit-identical to
    :func:`sum_serial` for every thread count."""
    cdef int nt = check_threads(n_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef floating result
    if n == 0:
        return 0.0
    _reduce_parallel(&x[0], <const floating *>NULL, n, nt, &result)
    return result + 0.0


def dot_serial(const floating[::1] x, const floating[::1] y):
    """Inner product of two contiguous 1-D arrays of the same dtype."""
    cdef Py_ssize_t n = x.shape[0]
    cdef floating result
    _check_same_length(n, y.shape[0])
    if n == 0:
        return 0.0
    with nogil:
        result = _reduce_serial(&x[0], &y[0], n)
    return result


def dot_parallel(const floating[::1] x, const floating[::1] y, Py_ssize_t n_threads):
    """Inner product with up to ``n_threads`` threads; bit-identical to
    :func:`dot_serial` for every thread count."""
    cdef int nt = check_threads(n_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef floating result
    _check_same_length(n, y.shape[0])
    if n == 0:
        return 0.0
    _reduce_parallel(&x[0], &y[0], n, nt, &result)
    return result


cdef double sum_serial_d(const double *x, Py_ssize_t n) noexcept nogil:
    if n == 0:
        return 0.0
    return _reduce_serial(x, <const double *>NULL, n) + 0.0


cdef float sum_serial_f(const float *x, Py_ssize_t n) noexcept nogil:
    if n == 0:
        return 0.0
    return _reduce_serial(x, <const float *>NULL, n) + 0.0


cdef double dot_serial_d(const double *x, const double *y, Py_ssize_t n) noexcept nogil:
    return _reduce_serial(x, y, n) if n else 0.0


cdef float dot_serial_f(const float *x, const float *y, Py_ssize_t n) noexcept nogil:
    return _reduce_serial(x, y, n) if n else 0.0


cdef int sum_parallel_d(const double *x, Py_ssize_t n, int nt,
                        double *out) except -1:
    out[0] = 0.0
    if n:
        _reduce_parallel(x, <const double *>NULL, n, nt, out)
        out[0] = out[0] + 0.0
    return 0


cdef int sum_parallel_f(const float *x, Py_ssize_t n, int nt,
                        float *out) except -1:
    out[0] = 0.0
    if n:
        _reduce_parallel(x, <const float *>NULL, n, nt, out)
        out[0] = out[0] + 0.0
    return 0


cdef int dot_parallel_d(const double *x, const double *y, Py_ssize_t n, int nt,
                        double *out) except -1:
    out[0] = 0.0
    if n:
        _reduce_parallel(x, y, n, nt, out)
    return 0


cdef int dot_parallel_f(const float *x, const float *y, Py_ssize_t n, int nt,
                        float *out) except -1:
    out[0] = 0.0
    if n:
        _reduce_parallel(x, y, n, nt, out)
    return 0


# ---------------------------------------------------------------------------
# The drop-in functions: NumPy's signatures, these loops inside (how a
# drop-in is made: arrays.pxd).
# ---------------------------------------------------------------------------
cimport numpy as cnp
from breakeven cimport dispatch
from breakeven._kernels.arrays cimport (
    start_dropins,
    CallPlan,
    NOGIL_MIN,
    NOT_FLOAT,
    aligned,
    float_typenum,
    plan_tuple,
    scalar_of,
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
cdef int K_SUM = -1
cdef int K_DOT = -1
cdef object _NoValue = np._NoValue


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_SUM_OPTIONS = "axis, dtype, out, keepdims, initial or where given"


cdef const char *_sum_check(a, axis, dtype, out, keepdims, initial, where,
                            CallPlan *p) noexcept:
    cdef int t
    if (axis is not None or dtype is not None or out is not None
            or not (keepdims is _NoValue or keepdims is False)
            or initial is not _NoValue or where is not _NoValue):
        return R_SUM_OPTIONS
    t = float_typenum(a)
    if t < 0:
        return NOT_FLOAT
    p.kernel, p.typenum, p.work = K_SUM, t, cnp.PyArray_SIZE(<cnp.ndarray>a)
    return NULL


cdef inline void _sum_serial_of_type(int t, void *x, Py_ssize_t n, double *r,
                                     float *rf) noexcept nogil:
    if t == cnp.NPY_DOUBLE:
        r[0] = sum_serial_d(<const double *>x, n)
    else:
        rf[0] = sum_serial_f(<const float *>x, n)


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
    cdef CallPlan p
    cdef dispatch.Call call
    cdef cnp.ndarray arr
    cdef int nt
    cdef double r
    cdef float rf
    cdef void *px
    if _sum_check(a, axis, dtype, out, keepdims, initial, where, &p) != NULL:
        kw = {k: v for k, v in (("keepdims", keepdims), ("initial", initial),
                                ("where", where)) if v is not _NoValue}
        return np.sum(a, axis=axis, dtype=dtype, out=out, **kw)
    arr = aligned(a)
    px = cnp.PyArray_DATA(arr)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _sum_serial_of_type(p.typenum, px, p.work, &r, &rf)
        else:
            with nogil:
                _sum_serial_of_type(p.typenum, px, p.work, &r, &rf)
        dispatch.end(&call)
    else:
        try:
            if p.typenum == cnp.NPY_DOUBLE:
                sum_parallel_d(<const double *>px, p.work, nt, &r)
            else:
                sum_parallel_f(<const float *>px, p.work, nt, &rf)
        finally:
            dispatch.end(&call)
    return scalar_of(&r, arr) if p.typenum == cnp.NPY_DOUBLE else scalar_of(&rf, arr)


def _plan_sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue,
              initial=_NoValue, where=_NoValue):
    cdef CallPlan p
    return plan_tuple(_sum_check(a, axis, dtype, out, keepdims, initial, where,
                                 &p), &p)


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_DOT_ARGS = (
    "not two contiguous 1-D float32/float64 ndarrays of one dtype and"
    " length"
)
cdef const char *R_DOT_OUT = "out given"


cdef const char *_dot_check(a, b, out, CallPlan *p) noexcept:
    cdef int t
    if out is not None:
        return R_DOT_OUT
    t = float_typenum(a)
    if (t < 0 or float_typenum(b) != t
            or cnp.PyArray_NDIM(<cnp.ndarray>a) != 1
            or cnp.PyArray_NDIM(<cnp.ndarray>b) != 1
            or cnp.PyArray_SIZE(<cnp.ndarray>a) != cnp.PyArray_SIZE(<cnp.ndarray>b)):
        return R_DOT_ARGS
    p.kernel, p.typenum, p.work = K_DOT, t, cnp.PyArray_SIZE(<cnp.ndarray>a)
    return NULL


cdef inline void _dot_serial_of_type(int t, void *x, void *y, Py_ssize_t n, double *r,
                                     float *rf) noexcept nogil:
    if t == cnp.NPY_DOUBLE:
        r[0] = dot_serial_d(<const double *>x, <const double *>y, n)
    else:
        rf[0] = dot_serial_f(<const float *>x, <const float *>y, n)


def dot(a, b, out=None):
    """Dot product, as :func:`numpy.dot`.

    Two contiguous 1-D arrays of the same float dtype run the calibrated
    kernel (bit-identical for every thread count); anything else is
    ``numpy.dot``.

    Parameters
    ----------
    a, b : array_like
    out : ndarray, optional
        As in :func:`numpy.dot` (sends the call to NumPy).

    Returns
    -------
    numpy scalar or ndarray
        As :func:`numpy.dot` returns.

    Raises
    ------
    ValueError
        If the shapes are not aligned (NumPy's error).

    See Also
    --------
    numpy.dot
    explain : Which kernel and how many threads a call would get.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> float(breakeven.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    11.0
    """
    cdef CallPlan p
    cdef dispatch.Call call
    cdef int nt
    cdef double r
    cdef float rf
    cdef void *px
    cdef void *py
    if _dot_check(a, b, out, &p) != NULL:
        return np.dot(a, b, out=out) if out is not None else np.dot(a, b)
    a, b = aligned(a), aligned(b)
    px, py = cnp.PyArray_DATA(<cnp.ndarray>a), cnp.PyArray_DATA(<cnp.ndarray>b)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _dot_serial_of_type(p.typenum, px, py, p.work, &r, &rf)
        else:
            with nogil:
                _dot_serial_of_type(p.typenum, px, py, p.work, &r, &rf)
        dispatch.end(&call)
    else:
        try:
            if p.typenum == cnp.NPY_DOUBLE:
                dot_parallel_d(<const double *>px, <const double *>py, p.work, nt, &r)
            else:
                dot_parallel_f(<const float *>px, <const float *>py, p.work, nt, &rf)
        finally:
            dispatch.end(&call)
    return (scalar_of(&r, <cnp.ndarray>a) if p.typenum == cnp.NPY_DOUBLE
            else scalar_of(&rf, <cnp.ndarray>a))


def _plan_dot(a, b, out=None):
    cdef CallPlan p
    return plan_tuple(_dot_check(a, b, out, &p), &p)


def _sample_one(work, dtype, rng):
    return (uniform_array(work, dtype, rng),)


def _sample_two(work, dtype, rng):
    return (uniform_array(work, dtype, rng), uniform_array(work, dtype, rng))


# The declarations: one per kernel, everything else derives from them.
SUM = register_builtin(Kernel(
    "sum", sum_serial, sum_parallel, np.sum, first_length, _sample_one,
    call=sum, dropin=sum, plan=_plan_sum,
    model=KernelModel("memory", 0.1, 8, per_thread_us=0.02)))
DOT = register_builtin(Kernel(
    "dot", dot_serial, dot_parallel, np.dot, first_length, _sample_two,
    call=dot, dropin=dot, plan=_plan_dot,
    model=KernelModel("memory", 0.12, 16, per_thread_us=0.02)))
K_SUM, K_DOT = SUM.slot, DOT.slot
# For the docs: the fewest elements a serial call releases the GIL for (the
# same for every drop-in).
NOGIL_MIN_ELEMENTS = NOGIL_MIN
