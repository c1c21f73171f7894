"""axpy and exp: element-wise loops, cut into equal contiguous chunks.

Each element's result depends on that element only, so any split gives the
same bits; chunks are aligned to whole cache lines so that no two threads
write the same line.
"""
from cython cimport floating
from cython.parallel cimport prange

from breakeven._kernels.simd cimport be_axpy_d, be_axpy_f, be_exp_d, be_exp_f
from breakeven._core.openmp cimport check_threads

cdef enum:
    # Smallest share a thread gets (elements); a multiple of a cache line.
    MIN_CHUNK = 1024


cdef inline void _axpy(floating a, const floating *x, floating *y,
                       Py_ssize_t n) noexcept nogil:
    if floating is double:
        be_axpy_d(a, x, y, n)
    else:
        be_axpy_f(a, x, y, n)


cdef inline int _exp(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """exp; whether a finite x overflowed to inf."""
    if floating is double:
        return be_exp_d(x, out, n)
    else:
        return be_exp_f(x, out, n)


cdef inline Py_ssize_t _chunk(Py_ssize_t n, int n_threads) noexcept nogil:
    """Elements per thread: n split evenly, rounded up to MIN_CHUNK."""
    cdef Py_ssize_t c = (n + n_threads - 1) // n_threads
    return ((c + MIN_CHUNK - 1) // MIN_CHUNK) * MIN_CHUNK


cdef inline void _check_lengths(Py_ssize_t a, Py_ssize_t b, str what) except *:
    if a != b:
        raise ValueError(f"x and {what} must have the same length, got {a} and {b}")


cdef void _axpy_par(floating a, const floating *x, floating *y, Py_ssize_t n,
                    int nt) noexcept nogil:
    cdef Py_ssize_t chunk, t, start
    if n <= 0:  # nothing to do (and no chunk size to divide by)
        return
    chunk = _chunk(n, nt)
    nt = <int>((n + chunk - 1) // chunk)
    if nt <= 1:
        _axpy(a, x, y, n)
        return
    for t in prange(nt, num_threads=nt, schedule="static"):
        start = t * chunk
        _axpy(a, x + start, y + start, min(chunk, n - start))


cdef int _exp_par(const floating *x, floating *out, Py_ssize_t n,
                  int nt) noexcept nogil:
    """exp on up to nt threads; whether a finite x overflowed to inf."""
    cdef Py_ssize_t chunk, t, start
    cdef int overflow = 0
    if n <= 0:  # nothing to do (and no chunk size to divide by)
        return 0
    chunk = _chunk(n, nt)
    nt = <int>((n + chunk - 1) // chunk)
    if nt <= 1:
        return _exp(x, out, n)
    for t in prange(nt, num_threads=nt, schedule="static"):
        start = t * chunk
        overflow |= _exp(x + start, out + start, min(chunk, n - start))
    return overflow


def axpy_serial(double a, const floating[::1] x, floating[::1] y):
    """``y += a * x`` in place (the same two roundings as NumPy's ``y += a*x``).

    ``y`` may be ``x`` itself; any other overlap is not allowed.
    """
    cdef Py_ssize_t n = x.shape[0]
    _check_lengths(n, y.shape[0], "y")
    if n == 0:
        return
    with nogil:
        _axpy(<floating>a, &x[0], &y[0], n)


def axpy_parallel(double a, const floating[::1] x, floating[::1] y,
                  Py_ssize_t n_threads):
    """``y += a * x`` in place with up to ``n_threads`` threads."""
    cdef int nt = check_threads(n_threads)
    cdef Py_ssize_t n = x.shape[0]
    _check_lengths(n, y.shape[0], "y")
    if n == 0:
        return
    with nogil:
        _axpy_par(<floating>a, &x[0], &y[0], n, nt)


def exp_serial(const floating[::1] x, floating[::1] out):
    """``out[:] = exp(x)``, vectorised; within a few ulp of ``np.exp``.

    ``out`` may be ``x`` itself; any other overlap is not allowed.  Returns
    whether a finite x overflowed to inf (NumPy's floating-point overflow).
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef int overflow
    _check_lengths(n, out.shape[0], "out")
    if n == 0:
        return False
    with nogil:
        overflow = _exp(&x[0], &out[0], n)
    return bool(overflow)


def exp_parallel(const floating[::1] x, floating[::1] out, Py_ssize_t n_threads):
    """``out[:] = exp(x)`` with up to ``n_threads`` threads; returns whether a
    finite x overflowed to inf."""
    cdef int nt = check_threads(n_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef int overflow
    _check_lengths(n, out.shape[0], "out")
    if n == 0:
        return False
    with nogil:
        overflow = _exp_par(&x[0], &out[0], n, nt)
    return bool(overflow)


# Non-fused entry points for the dispatch fast path (see _elementwise.pxd).

cdef void axpy_parallel_d(double a, const double *x, double *y, Py_ssize_t n,
                          int nt) noexcept nogil:
    _axpy_par(a, x, y, n, nt)


cdef void axpy_parallel_f(float a, const float *x, float *y, Py_ssize_t n,
                          int nt) noexcept nogil:
    _axpy_par(a, x, y, n, nt)


cdef int exp_parallel_d(const double *x, double *out, Py_ssize_t n,
                        int nt) noexcept nogil:
    return _exp_par(x, out, n, nt)


cdef int exp_parallel_f(const float *x, float *out, Py_ssize_t n,
                        int nt) noexcept nogil:
    return _exp_par(x, out, n, nt)


# ---------------------------------------------------------------------------
# The drop-in functions: NumPy's signatures, these loops inside (how a
# drop-in is made: arrays.pxd).
# ---------------------------------------------------------------------------
cimport numpy as cnp
from cpython.float cimport PyFloat_AsDouble, PyFloat_CheckExact
from cpython.long cimport PyLong_AsDouble, PyLong_CheckExact
from libc.math cimport fabs
from breakeven cimport dispatch
from breakeven._kernels.arrays cimport (
    start_dropins,
    CallPlan,
    NOGIL_MIN,
    NOT_FLOAT,
    PyArray_IsScalar_Double,
    PyArray_IsScalar_Float,
    PyArray_NewLikeArray,
    aligned,
    error_set,
    float_typenum,
    plan_tuple,
    writeable_like,
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
cdef int K_AXPY = -1
cdef int K_EXP = -1

# C constant: written as 2**53 in a condition, Cython compares through
# Python ints.
cdef double _EXACT_INT = 9007199254740992.0  # ints a double holds exactly

from breakeven._errors import fp_error


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_AXPY_ARRAYS = (
    "not two contiguous float32/float64 ndarrays of one shape and "
    "dtype, y writeable and either x itself or not overlapping it"
)
cdef const char *R_AXPY_SCALE = (
    "a is not a Python number (an int below 2**53) or a NumPy scalar "
    "of the arrays' dtype"
)


cdef const char *_axpy_check(a, x, y, double *scale, CallPlan *p) noexcept:
    """y += a * x with the kernel: a Python float, an int a double holds
    exactly (NumPy casts either to the arrays' dtype, as the kernel does),
    or a NumPy scalar of the arrays' own dtype (another one would promote)."""
    cdef int t = float_typenum(x)
    cdef double v
    if t < 0 or not writeable_like(y, <cnp.ndarray>x):
        return R_AXPY_ARRAYS
    if PyFloat_CheckExact(a):
        scale[0] = PyFloat_AsDouble(a)
    elif PyLong_CheckExact(a):
        v = PyLong_AsDouble(a)
        if v == -1.0 and error_set():
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
    return NULL


cdef inline void _axpy_serial_of_type(int t, double a, void *x, void *y,
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
    cdef CallPlan p
    cdef dispatch.Call call
    cdef int nt
    cdef double av
    cdef void *px
    cdef void *py
    if _axpy_check(a, x, y, &av, &p) != NULL:
        y += a * x
        return y
    px, py = cnp.PyArray_DATA(aligned(x)), cnp.PyArray_DATA(<cnp.ndarray>y)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _axpy_serial_of_type(p.typenum, av, px, py, p.work)
        else:
            with nogil:
                _axpy_serial_of_type(p.typenum, av, px, py, p.work)
    elif p.typenum == cnp.NPY_DOUBLE:
        with nogil:
            axpy_parallel_d(av, <const double *>px, <double *>py, p.work, nt)
    else:
        with nogil:
            axpy_parallel_f(<float>av, <const float *>px, <float *>py, p.work, nt)
    dispatch.end(&call)
    return y


def _plan_axpy(a, x, y):
    cdef CallPlan p
    cdef double av
    return plan_tuple(_axpy_check(a, x, y, &av, &p), &p)


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_EXP_KEYWORDS = "ufunc keywords given"
cdef const char *R_EXP_OUT = (
    "out is not a contiguous writeable array of x's shape and dtype"
)


cdef const char *_exp_check(x, out, dict kwargs, CallPlan *p) noexcept:
    cdef int t
    if kwargs:
        return R_EXP_KEYWORDS
    t = float_typenum(x)
    if t < 0:
        return NOT_FLOAT
    if out is not None and not writeable_like(out, <cnp.ndarray>x):
        return R_EXP_OUT
    p.kernel, p.typenum, p.work = K_EXP, t, cnp.PyArray_SIZE(<cnp.ndarray>x)
    return NULL


cdef inline int _exp_serial_of_type(int t, void *x, void *out,
                                    Py_ssize_t n) noexcept nogil:
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
    cdef CallPlan p
    cdef dispatch.Call call
    cdef cnp.ndarray xs, res
    cdef int nt
    cdef int overflow = 0
    cdef void *px
    cdef void *po
    if isinstance(out, tuple) and len(<tuple>out) == 1:
        out = (<tuple>out)[0]
    if _exp_check(x, out, kwargs, &p) != NULL:
        return np.exp(x, out=out, **kwargs) if out is not None \
            else np.exp(x, **kwargs)
    xs = aligned(x)
    res = (PyArray_NewLikeArray(xs, cnp.NPY_CORDER, NULL, 0) if out is None
           else <cnp.ndarray>out)
    px, po = cnp.PyArray_DATA(xs), cnp.PyArray_DATA(res)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            overflow = _exp_serial_of_type(p.typenum, px, po, p.work)
        else:
            with nogil:
                overflow = _exp_serial_of_type(p.typenum, px, po, p.work)
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
    cdef CallPlan p
    if isinstance(out, tuple) and len(<tuple>out) == 1:
        out = (<tuple>out)[0]
    return plan_tuple(_exp_check(x, out, kwargs, &p), &p)


def _sample_axpy(work, dtype, rng):
    return (0.5, uniform_array(work, dtype, rng), uniform_array(work, dtype, rng))


def _axpy_reference(a, x, y):
    y += a * x


def _sample_exp(work, dtype, rng):
    x = uniform_array(work, dtype, rng, -10.0, 10.0)
    return (x, np.empty_like(x))


def _exp_reference(x, out):
    np.exp(x, out=out)


# The declarations: one per kernel, everything else derives from them.
AXPY = register_builtin(Kernel(
    "axpy", axpy_serial, axpy_parallel, _axpy_reference,
    lambda a, x, y: int(np.shape(x)[0]), _sample_axpy,
    call=axpy, dropin=axpy, plan=_plan_axpy, model=KernelModel("memory", 0.12, 24)))
EXP = register_builtin(Kernel(
    "exp", exp_serial, exp_parallel, _exp_reference, first_length, _sample_exp,
    call=exp, dropin=exp, plan=_plan_exp, model=KernelModel("compute", 1.2, 16)))
K_AXPY, K_EXP = AXPY.slot, EXP.slot
