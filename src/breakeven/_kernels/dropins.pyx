"""The drop-in functions: NumPy's signatures, the calibrated kernels inside.

Each drop-in first checks, in C, whether its inputs are what a kernel takes
(float32/float64 ndarrays, contiguous, no option the kernel lacks): the
check (``_*_check``) exists once, and returns 0 with the call's plan (the
kernel's slot, the dtype, the work) or a reason code (``REASONS``).  The
call then asks the dispatch core for its threads through the public Cython
API (``breakeven/dispatch.pxd``), as any library's kernel does, and runs the
serial or the parallel kernel; ``explain()`` runs the same check through the
``PLANNERS`` and asks the core for the same decision as a dry run.  Anything
else (other dtypes, axes, strided views, subclasses, ``out`` arrays of
another type, invalid input) is NumPy's own function, so the result, and any
error, is NumPy's.
"""
cimport numpy as cnp

from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_AsDouble, PyFloat_CheckExact
from cpython.long cimport (
    PyLong_AsDouble,
    PyLong_AsLongLongAndOverflow,
    PyLong_CheckExact,
)
from cpython.list cimport PyList_CheckExact
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport fabs, isfinite

from breakeven cimport dispatch
from breakeven._kernels.elementwise cimport (
    axpy_parallel_d,
    axpy_parallel_f,
    exp_parallel_d,
    exp_parallel_f,
)
from breakeven._kernels.histogram cimport MIN_CHUNK as _HIST_MIN_CHUNK
from breakeven._kernels.histogram cimport count as _histogram_count
from breakeven._kernels.reductions cimport (
    dot_parallel_d,
    dot_parallel_f,
    dot_serial_d,
    dot_serial_f,
    sum_parallel_d,
    sum_parallel_f,
    sum_serial_d,
    sum_serial_f,
)
from breakeven._kernels.scan cimport (
    cumsum_parallel_d,
    cumsum_parallel_f,
    cumsum_serial_d,
    cumsum_serial_f,
)
from breakeven._kernels.simd cimport be_axpy_d, be_axpy_f, be_exp_d, be_exp_f

import numpy as np

from breakeven._core import engine
from breakeven._errors import fp_error

cnp.import_array()
if dispatch.import_breakeven() != 0:
    raise ImportError(f"{__name__}: the dispatch core's C API is missing")


cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of the array's dtype holding *data (np.float64(x), ...)
    object PyArray_Scalar(void *data, cnp.PyArray_Descr *descr, object base)
    # an empty array shaped like the prototype (np.empty_like)
    object PyArray_NewLikeArray(cnp.ndarray prototype, cnp.NPY_ORDER order,
                                cnp.PyArray_Descr *descr, int subok)

cdef extern from *:
    """
    #define be_is_double_scalar(o) PyArray_IsScalar((o), Double)
    #define be_is_float_scalar(o) PyArray_IsScalar((o), Float)
    #define be_is_integer_scalar(o) PyArray_IsScalar((o), Integer)
    #define be_is_floating_scalar(o) PyArray_IsScalar((o), Floating)
    """
    bint PyArray_IsScalar_Double "be_is_double_scalar"(object o)
    bint PyArray_IsScalar_Float "be_is_float_scalar"(object o)
    bint PyArray_IsScalar_Integer "be_is_integer_scalar"(object o)
    bint PyArray_IsScalar_Floating "be_is_floating_scalar"(object o)

cdef object _NoValue = np._NoValue

# The kernels' slots in the dispatch core: the first ones registered.
cdef int K_SUM = engine.add_slot("sum")
cdef int K_DOT = engine.add_slot("dot")
cdef int K_AXPY = engine.add_slot("axpy")
cdef int K_EXP = engine.add_slot("exp")
cdef int K_CUMSUM = engine.add_slot("cumsum")
cdef int K_HISTOGRAM = engine.add_slot("histogram")
cdef int K_NEAREST = engine.add_slot("nearest", True)

cdef enum:
    # Below this many elements the serial kernel runs with the GIL held
    # (releasing and retaking it costs more than the work).
    NOGIL_MIN = 8192

# C constants: written as (1 << 40) in a condition, Cython compares through
# Python ints (an object created and two rich comparisons per call).
cdef long long _MAX_BINS = (<long long>1) << 40  # more bins go to NumPy's error
cdef Py_ssize_t _MAX_CD = (<Py_ssize_t>1) << 31  # C's rows x columns for gemm
cdef double _EXACT_INT = 9007199254740992.0  # 2**53: ints a double holds exactly

# Why a call is not the kernel's: the reason codes of the checks, in words.
cdef enum:
    OK = 0
    R_NOT_FLOAT
    R_SUM_OPTIONS
    R_DOT_OUT
    R_DOT_ARGS
    R_AXPY_ARRAYS
    R_AXPY_SCALE
    R_EXP_KEYWORDS
    R_EXP_OUT
    R_CUMSUM_DTYPE
    R_CUMSUM_AXIS
    R_CUMSUM_OUT
    R_HIST_OPTIONS
    R_HIST_BINS
    R_HIST_RANGE
    R_HIST_DATA_RANGE
    R_HIST_NARROW
    R_NEAREST_ARRAYS
    R_NEAREST_SHAPES
    R_ONE_CHUNK

REASONS = (
    "",
    "not a contiguous float32/float64 ndarray",
    "axis, dtype, out, keepdims, initial or where given",
    "out given",
    "not two contiguous 1-D float32/float64 ndarrays of one dtype and length",
    "not two contiguous float32/float64 ndarrays of one shape and dtype, "
    "y writeable and either x itself or not overlapping it",
    "a is not a Python number (an int below 2**53) or a NumPy scalar of the "
    "arrays' dtype",
    "ufunc keywords given",
    "out is not a contiguous writeable array of x's shape and dtype",
    "dtype given",
    "an axis of a multi-dimensional array, or not an int",
    "out is not a contiguous writeable 1-D array of the right size",
    "weights or density given",
    "bins is not a positive integer of at most 2**40",
    "range is not a pair of finite, increasing numbers the kernel takes",
    "the data's range is not finite",
    "the range is too narrow for the dtype",
    "not two C-contiguous 2-D float32/float64 ndarrays of one dtype",
    "shapes do not match (or C has no row, or too many for gemm)",
    # not NumPy's: the kernel, serially (see histogram)
    f"at most {_HIST_MIN_CHUNK} elements: one thread counts them whatever "
    "the decision",
)
# For the docs: the most elements a histogram counts on one thread, and the
# fewest a serial call releases the GIL for.
HIST_MIN_CHUNK = _HIST_MIN_CHUNK
NOGIL_MIN_ELEMENTS = NOGIL_MIN
# Codes whose call still runs the kernel (serially), not NumPy.
SERIAL_REASONS = frozenset({R_ONE_CHUNK})


ctypedef struct Plan:
    int kernel
    int typenum
    Py_ssize_t work


cdef inline int _float_typenum(object a) noexcept:
    """NumPy's type number of a C-contiguous, native float32 or float64
    ndarray (exactly) of at least one dimension, else -1.  It may be
    unaligned (arrays unpickled from a byte stream, as Dask delivers them,
    often are): :func:`_aligned` gives the kernels an aligned copy."""
    cdef cnp.ndarray arr
    cdef int t
    if not cnp.PyArray_CheckExact(a):
        return -1
    arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) == 0 or not cnp.PyArray_IS_C_CONTIGUOUS(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return -1
    t = cnp.PyArray_TYPE(arr)
    return t if t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT else -1


cdef inline cnp.ndarray _aligned(object a):
    """An input the kernels can read: ``a``, or an aligned copy of it."""
    if cnp.PyArray_ISALIGNED(<cnp.ndarray>a):
        return <cnp.ndarray>a
    return np.require(a, requirements="A")


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


cdef inline object _scalar(void *value, cnp.ndarray like):
    return PyArray_Scalar(value, cnp.PyArray_DESCR(like), None)


cdef inline tuple _plan_tuple(int code, Plan *p):
    if code != OK and code not in SERIAL_REASONS:
        return code, -1, -1, 0
    return code, p.kernel, p.typenum, p.work


# ---------------------------------------------------------------------------
# sum
# ---------------------------------------------------------------------------

cdef int _sum_check(a, axis, dtype, out, keepdims, initial, where,
                    Plan *p) noexcept:
    cdef int t
    if (axis is not None or dtype is not None or out is not None
            or not (keepdims is _NoValue or keepdims is False)
            or initial is not _NoValue or where is not _NoValue):
        return R_SUM_OPTIONS
    t = _float_typenum(a)
    if t < 0:
        return R_NOT_FLOAT
    p.kernel, p.typenum, p.work = K_SUM, t, cnp.PyArray_SIZE(<cnp.ndarray>a)
    return OK


cdef inline void _sum_serial(int t, void *x, Py_ssize_t n, double *r,
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
    cdef Plan p
    cdef dispatch.Call call
    cdef cnp.ndarray arr
    cdef int nt
    cdef double r
    cdef float rf
    cdef void *px
    if _sum_check(a, axis, dtype, out, keepdims, initial, where, &p) != OK:
        kw = {k: v for k, v in (("keepdims", keepdims), ("initial", initial),
                                ("where", where)) if v is not _NoValue}
        return np.sum(a, axis=axis, dtype=dtype, out=out, **kw)
    arr = _aligned(a)
    px = cnp.PyArray_DATA(arr)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _sum_serial(p.typenum, px, p.work, &r, &rf)
        else:
            with nogil:
                _sum_serial(p.typenum, px, p.work, &r, &rf)
        dispatch.end(&call)
    else:
        try:
            if p.typenum == cnp.NPY_DOUBLE:
                sum_parallel_d(<const double *>px, p.work, nt, &r)
            else:
                sum_parallel_f(<const float *>px, p.work, nt, &rf)
        finally:
            dispatch.end(&call)
    return _scalar(&r, arr) if p.typenum == cnp.NPY_DOUBLE else _scalar(&rf, arr)


def _plan_sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue,
              initial=_NoValue, where=_NoValue):
    cdef Plan p
    return _plan_tuple(_sum_check(a, axis, dtype, out, keepdims, initial, where,
                                  &p), &p)


# ---------------------------------------------------------------------------
# dot
# ---------------------------------------------------------------------------

cdef int _dot_check(a, b, out, Plan *p) noexcept:
    cdef int t
    if out is not None:
        return R_DOT_OUT
    t = _float_typenum(a)
    if (t < 0 or _float_typenum(b) != t
            or cnp.PyArray_NDIM(<cnp.ndarray>a) != 1
            or cnp.PyArray_NDIM(<cnp.ndarray>b) != 1
            or cnp.PyArray_SIZE(<cnp.ndarray>a) != cnp.PyArray_SIZE(<cnp.ndarray>b)):
        return R_DOT_ARGS
    p.kernel, p.typenum, p.work = K_DOT, t, cnp.PyArray_SIZE(<cnp.ndarray>a)
    return OK


cdef inline void _dot_serial(int t, void *x, void *y, Py_ssize_t n, double *r,
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
    cdef Plan p
    cdef dispatch.Call call
    cdef int nt
    cdef double r
    cdef float rf
    cdef void *px
    cdef void *py
    if _dot_check(a, b, out, &p) != OK:
        return np.dot(a, b, out=out) if out is not None else np.dot(a, b)
    a, b = _aligned(a), _aligned(b)
    px, py = cnp.PyArray_DATA(<cnp.ndarray>a), cnp.PyArray_DATA(<cnp.ndarray>b)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _dot_serial(p.typenum, px, py, p.work, &r, &rf)
        else:
            with nogil:
                _dot_serial(p.typenum, px, py, p.work, &r, &rf)
        dispatch.end(&call)
    else:
        try:
            if p.typenum == cnp.NPY_DOUBLE:
                dot_parallel_d(<const double *>px, <const double *>py, p.work, nt, &r)
            else:
                dot_parallel_f(<const float *>px, <const float *>py, p.work, nt, &rf)
        finally:
            dispatch.end(&call)
    return (_scalar(&r, <cnp.ndarray>a) if p.typenum == cnp.NPY_DOUBLE
            else _scalar(&rf, <cnp.ndarray>a))


def _plan_dot(a, b, out=None):
    cdef Plan p
    return _plan_tuple(_dot_check(a, b, out, &p), &p)


# ---------------------------------------------------------------------------
# axpy
# ---------------------------------------------------------------------------

cdef int _axpy_check(a, x, y, double *scale, Plan *p) noexcept:
    """y += a * x with the kernel: a Python float, an int a double holds
    exactly (NumPy casts either to the arrays' dtype, as the kernel does),
    or a NumPy scalar of the arrays' own dtype (another one would promote)."""
    cdef int t = _float_typenum(x)
    cdef double v
    if t < 0 or not _writeable_like(y, <cnp.ndarray>x):
        return R_AXPY_ARRAYS
    if PyFloat_CheckExact(a):
        scale[0] = PyFloat_AsDouble(a)
    elif PyLong_CheckExact(a):
        v = PyLong_AsDouble(a)
        if v == -1.0 and _error_set():
            return R_AXPY_SCALE
        if not fabs(v) < _EXACT_INT:
            return R_AXPY_SCALE
        scale[0] = v
    elif ((t == cnp.NPY_DOUBLE and PyArray_IsScalar_Double(a))
          or (t == cnp.NPY_FLOAT and PyArray_IsScalar_Float(a))):
        scale[0] = float(a)
    else:
        return R_AXPY_SCALE
    p.kernel, p.typenum, p.work = K_AXPY, t, cnp.PyArray_SIZE(<cnp.ndarray>x)
    return OK


cdef bint _error_set() noexcept:
    """Whether a conversion left an exception set (it is cleared)."""
    if PyErr_Occurred() != NULL:
        PyErr_Clear()
        return True
    return False


cdef inline void _axpy_serial(int t, double a, void *x, void *y,
                              Py_ssize_t n) noexcept nogil:
    if t == cnp.NPY_DOUBLE:
        be_axpy_d(a, <const double *>x, <double *>y, n)
    else:
        be_axpy_f(<float>a, <const float *>x, <float *>y, n)


def axpy(a, x, y):
    """``y += a * x`` in place, and return ``y``.

    Bit for bit what NumPy's ``y += a * x`` computes (two roundings, no fused
    multiply-add), without its temporary array.  Inputs the kernel does not
    take are handed to NumPy as ``y += a * x``.

    Parameters
    ----------
    a : float
        Scale.
    x : ndarray
        Input.
    y : ndarray
        Updated in place.

    Returns
    -------
    ndarray
        ``y``.

    Raises
    ------
    ValueError
        If ``x`` does not broadcast to ``y`` (NumPy's error).

    See Also
    --------
    exp, explain

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> y = np.ones(3)
    >>> breakeven.axpy(2.0, np.arange(3.0), y)
    array([1., 3., 5.])
    """
    cdef Plan p
    cdef dispatch.Call call
    cdef int nt
    cdef double av
    cdef void *px
    cdef void *py
    if _axpy_check(a, x, y, &av, &p) != OK:
        y += a * x
        return y
    px, py = cnp.PyArray_DATA(_aligned(x)), cnp.PyArray_DATA(<cnp.ndarray>y)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _axpy_serial(p.typenum, av, px, py, p.work)
        else:
            with nogil:
                _axpy_serial(p.typenum, av, px, py, p.work)
    elif p.typenum == cnp.NPY_DOUBLE:
        with nogil:
            axpy_parallel_d(av, <const double *>px, <double *>py, p.work, nt)
    else:
        with nogil:
            axpy_parallel_f(<float>av, <const float *>px, <float *>py, p.work, nt)
    dispatch.end(&call)
    return y


def _plan_axpy(a, x, y):
    cdef Plan p
    cdef double av
    return _plan_tuple(_axpy_check(a, x, y, &av, &p), &p)


# ---------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------

cdef int _exp_check(x, out, dict kwargs, Plan *p) noexcept:
    cdef int t
    if kwargs:
        return R_EXP_KEYWORDS
    t = _float_typenum(x)
    if t < 0:
        return R_NOT_FLOAT
    if out is not None and not _writeable_like(out, <cnp.ndarray>x):
        return R_EXP_OUT
    p.kernel, p.typenum, p.work = K_EXP, t, cnp.PyArray_SIZE(<cnp.ndarray>x)
    return OK


cdef inline int _exp_serial(int t, void *x, void *out, Py_ssize_t n) noexcept nogil:
    """exp; whether a finite x overflowed."""
    if t == cnp.NPY_DOUBLE:
        return be_exp_d(<const double *>x, <double *>out, n)
    return be_exp_f(<const float *>x, <float *>out, n)


def exp(x, out=None, **kwargs):
    """Exponential, element-wise, as :func:`numpy.exp`.

    A contiguous float32/float64 array runs the calibrated, vectorised kernel:
    within 4 ulp of ``numpy.exp`` over the whole range, with NaN, inf,
    overflow and subnormal results as NumPy gives them, and an overflow
    reported as NumPy reports it (a ``RuntimeWarning``, or as
    ``np.errstate`` says).  Anything else, including any other ufunc
    keyword, is ``numpy.exp``.

    Parameters
    ----------
    x : array_like
    out : ndarray, optional
        Where to write the result (may be ``x`` itself).
    **kwargs
        Other :class:`numpy.ufunc` keywords (send the call to NumPy).

    Returns
    -------
    ndarray or numpy scalar
        As :func:`numpy.exp` returns (``out`` if given).

    Raises
    ------
    TypeError
        For input NumPy's ``exp`` does not take (NumPy's error).

    See Also
    --------
    numpy.exp
    explain : Which kernel and how many threads a call would get.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> breakeven.exp(np.array([0.0, 1.0]))
    array([1.        , 2.71828183])
    """
    cdef Plan p
    cdef dispatch.Call call
    cdef cnp.ndarray xs, res
    cdef int nt
    cdef int overflow = 0
    cdef void *px
    cdef void *po
    if isinstance(out, tuple) and len(<tuple>out) == 1:
        out = (<tuple>out)[0]
    if _exp_check(x, out, kwargs, &p) != OK:
        return np.exp(x, out=out, **kwargs) if out is not None \
            else np.exp(x, **kwargs)
    xs = _aligned(x)
    res = (PyArray_NewLikeArray(xs, cnp.NPY_CORDER, NULL, 0) if out is None
           else <cnp.ndarray>out)
    px, po = cnp.PyArray_DATA(xs), cnp.PyArray_DATA(res)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            overflow = _exp_serial(p.typenum, px, po, p.work)
        else:
            with nogil:
                overflow = _exp_serial(p.typenum, px, po, p.work)
    elif p.typenum == cnp.NPY_DOUBLE:
        with nogil:
            overflow = exp_parallel_d(<const double *>px, <double *>po, p.work, nt)
    else:
        with nogil:
            overflow = exp_parallel_f(<const float *>px, <float *>po, p.work, nt)
    dispatch.end(&call)
    if overflow:  # as NumPy does, by np.errstate / np.seterr
        fp_error("overflow", "exp")
    return res


def _plan_exp(x, out=None, **kwargs):
    cdef Plan p
    if isinstance(out, tuple) and len(<tuple>out) == 1:
        out = (<tuple>out)[0]
    return _plan_tuple(_exp_check(x, out, kwargs, &p), &p)


# ---------------------------------------------------------------------------
# cumsum
# ---------------------------------------------------------------------------

cdef int _cumsum_check(a, axis, dtype, out, Plan *p) noexcept:
    cdef int t = _float_typenum(a)
    cdef cnp.ndarray xs
    cdef cnp.npy_intp n
    if t < 0:
        return R_NOT_FLOAT
    if dtype is not None:
        return R_CUMSUM_DTYPE
    xs = <cnp.ndarray>a
    n = cnp.PyArray_SIZE(xs)
    # exactly an int: NumPy refuses 0.0 and False, and an array's == is no test
    if not (axis is None or (cnp.PyArray_NDIM(xs) == 1 and type(axis) is int
                             and (axis == 0 or axis == -1))):
        return R_CUMSUM_AXIS
    if not (out is None or (
            cnp.PyArray_CheckExact(out) and cnp.PyArray_NDIM(<cnp.ndarray>out) == 1
            and cnp.PyArray_SIZE(<cnp.ndarray>out) == n
            and cnp.PyArray_TYPE(<cnp.ndarray>out) == t
            and cnp.PyArray_ISCARRAY(<cnp.ndarray>out)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>out)
            and _disjoint_or_same(<cnp.ndarray>out, xs))):
        return R_CUMSUM_OUT
    p.kernel, p.typenum, p.work = K_CUMSUM, t, n
    return OK


cdef inline void _cumsum_serial(int t, void *x, void *out,
                                Py_ssize_t n) noexcept nogil:
    if t == cnp.NPY_DOUBLE:
        cumsum_serial_d(<const double *>x, <double *>out, n)
    else:
        cumsum_serial_f(<const float *>x, <float *>out, n)


def cumsum(a, axis=None, dtype=None, out=None):
    """Cumulative sum, as :func:`numpy.cumsum`.

    A contiguous float32/float64 array (flattened, or 1-D along its axis)
    runs the calibrated blocked scan: the same result for every thread
    count, and more accurate than NumPy's running sum (within a pairwise
    error bound of the exact sums).  Anything else is ``numpy.cumsum``.

    Parameters
    ----------
    a : array_like
    axis, dtype, out
        As in :func:`numpy.cumsum`.

    Returns
    -------
    ndarray
        The running sums (``out`` if given).

    Raises
    ------
    numpy.exceptions.AxisError
        For an axis the array does not have (NumPy's error).

    See Also
    --------
    numpy.cumsum
    sum : The total, with the same summation order within blocks.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> breakeven.cumsum(np.array([1.0, 2.0, 3.0]))
    array([1., 3., 6.])
    """
    cdef Plan p
    cdef dispatch.Call call
    cdef cnp.ndarray res
    cdef cnp.npy_intp n
    cdef int nt
    cdef void *px
    cdef void *po
    if _cumsum_check(a, axis, dtype, out, &p) != OK:
        return np.cumsum(a, axis=axis, dtype=dtype, out=out)
    n = p.work
    res = (cnp.PyArray_EMPTY(1, &n, p.typenum, 0) if out is None
           else <cnp.ndarray>out)
    px, po = cnp.PyArray_DATA(_aligned(a)), cnp.PyArray_DATA(res)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _cumsum_serial(p.typenum, px, po, p.work)
        else:
            with nogil:
                _cumsum_serial(p.typenum, px, po, p.work)
        dispatch.end(&call)
        return res
    try:
        if p.typenum == cnp.NPY_DOUBLE:
            cumsum_parallel_d(<const double *>px, <double *>po, p.work, nt)
        else:
            cumsum_parallel_f(<const float *>px, <float *>po, p.work, nt)
    finally:
        dispatch.end(&call)
    return res


def _plan_cumsum(a, axis=None, dtype=None, out=None):
    cdef Plan p
    return _plan_tuple(_cumsum_check(a, axis, dtype, out, &p), &p)


# ---------------------------------------------------------------------------
# histogram
# ---------------------------------------------------------------------------

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
    return 1 if _error_set() else 0


cdef int _histogram_check(a, bins, range, density, weights, long long *nbins,
                          double *lo, double *hi, bint *in_dtype,
                          Plan *p) except -1:
    """The kernel's histogram: equal bins over a range it can compute the
    edges of as NumPy does.  Returns a reason code (or raises what NumPy's
    min/max of the data raises)."""
    cdef int t = _float_typenum(a)
    cdef int overflow = 0
    cdef cnp.ndarray xs
    cdef float lo32, hi32
    if weights is not None or not (density is None or density is False):
        return R_HIST_OPTIONS
    if t < 0:
        return R_NOT_FLOAT
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
    if p.work <= _HIST_MIN_CHUNK:
        return R_ONE_CHUNK
    return OK


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
    cdef Plan p
    cdef dispatch.Call call
    cdef long long nbins
    cdef double lo, hi
    cdef bint in_dtype
    cdef int nt
    cdef int code = _histogram_check(a, bins, range, density, weights, &nbins,
                                     &lo, &hi, &in_dtype, &p)
    if code == R_ONE_CHUNK:
        # one thread counts it whatever the decision: no cores are taken
        # for what cannot run in parallel
        return _histogram_count(_aligned(a), nbins, lo, hi, 1, in_dtype)
    if code != OK:
        return np.histogram(a, bins=bins, range=range, density=density,
                            weights=weights)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    try:
        return _histogram_count(_aligned(a), nbins, lo, hi, nt, in_dtype)
    finally:
        dispatch.end(&call)


def _plan_histogram(a, bins=10, range=None, density=None, weights=None):
    cdef Plan p
    cdef long long nbins
    cdef double lo, hi
    cdef bint in_dtype
    return _plan_tuple(_histogram_check(a, bins, range, density, weights, &nbins,
                                        &lo, &hi, &in_dtype, &p), &p)


# ---------------------------------------------------------------------------
# nearest
# ---------------------------------------------------------------------------

cdef int _nearest_check(X, C, Plan *p) noexcept:
    cdef int t = _float_typenum(X)
    cdef cnp.ndarray x, c
    if (t < 0 or _float_typenum(C) != t or cnp.PyArray_NDIM(<cnp.ndarray>X) != 2
            or cnp.PyArray_NDIM(<cnp.ndarray>C) != 2):
        return R_NEAREST_ARRAYS
    x, c = <cnp.ndarray>X, <cnp.ndarray>C
    if (cnp.PyArray_DIM(x, 1) != cnp.PyArray_DIM(c, 1) or cnp.PyArray_DIM(c, 0) == 0
            or cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1) >= _MAX_CD):
        return R_NEAREST_SHAPES
    p.kernel, p.typenum = K_NEAREST, t
    p.work = cnp.PyArray_DIM(x, 0) * cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1)
    return OK


def _nearest_numpy(X, C):
    X, C = np.asarray(X), np.asarray(C)
    if X.ndim != 2 or C.ndim != 2:
        raise ValueError(f"X and C must be 2-D, got {X.ndim}-D and {C.ndim}-D")
    if X.shape[1] != C.shape[1]:
        raise ValueError("X and C must have the same number of columns, got "
                         f"{X.shape[1]} and {C.shape[1]}")
    if C.shape[0] == 0:
        raise ValueError("C must have at least one row")
    d = (X * X).sum(axis=1)[:, None] - 2 * (X @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


def nearest(X, C):
    """For each row of ``X``, the index of the nearest row of ``C``.

    Nearest by squared Euclidean distance, ties to the lowest index: the
    result of ``argmin(|x|^2 - 2 X C^T + |c|^2, axis=1)`` without the
    ``n x m`` temporary.  C-contiguous 2-D float arrays of one dtype run the
    calibrated kernel (BLAS ``gemm`` on row chunks, BLAS capped to one thread
    while the kernel runs in parallel); anything else is that NumPy formula.

    Parameters
    ----------
    X : array_like, shape (n, d)
    C : array_like, shape (m, d), m >= 1

    Returns
    -------
    ndarray of intp, shape (n,)

    Raises
    ------
    ValueError
        If X or C is not 2-D, their columns differ, or C has no row.

    See Also
    --------
    section : Holds BLAS at one thread once for a loop of calls.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> X = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> C = np.array([[4.0, 4.0], [1.0, 0.0]])
    >>> breakeven.nearest(X, C)
    array([1, 0])
    """
    cdef Plan p
    cdef dispatch.Call call
    cdef int nt
    if _nearest_check(X, C, &p) != OK:
        return _nearest_numpy(X, C)
    X, C = _aligned(X), _aligned(C)
    kernels = _nearest_kernels()
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    try:
        if nt <= 1:
            return kernels.nearest_serial(X, C)
        return kernels.nearest_parallel(X, C, nt)
    finally:
        dispatch.end(&call)


cdef object _nearest_module = None


cdef object _nearest_kernels():
    """breakeven._kernels.nearest, imported at the first call: it loads SciPy (for
    its BLAS), which a process that never calls nearest need not import."""
    global _nearest_module
    if _nearest_module is None:
        import breakeven._kernels.nearest as module
        _nearest_module = module
    return _nearest_module


def _plan_nearest(X, C):
    cdef Plan p
    return _plan_tuple(_nearest_check(X, C, &p), &p)


# explain() and map() plan a call of a drop-in with its planner: the same
# check, the same arguments; (code, slot, type number, work).
PLANNERS = {sum: _plan_sum, dot: _plan_dot, axpy: _plan_axpy, exp: _plan_exp,
            cumsum: _plan_cumsum, histogram: _plan_histogram,
            nearest: _plan_nearest}
