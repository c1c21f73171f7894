"""nearest: for each row of X, the nearest row of C (squared Euclidean).

The drop-in, its check and its declaration; the loops, which call SciPy's
BLAS (gemm), are in :mod:`breakeven._kernels.nearest_blas`, imported at the
first call that needs them, so that a process that never calls nearest
does not import SciPy.
"""


# ---------------------------------------------------------------------------
# The drop-in functions: NumPy's signatures, these loops inside (how a
# drop-in is made: arrays.pxd).
# ---------------------------------------------------------------------------
cimport numpy as cnp
from breakeven cimport dispatch
from breakeven._kernels.arrays cimport (
    start_dropins,
    CallPlan,
    aligned,
    float_typenum,
    plan_tuple,
)

import numpy as np

from breakeven._kernels.registry import (
    Kernel,
    KernelModel,
    register_builtin,
)

start_dropins(__name__)

# The kernels' slots in the dispatch core, from their declarations'
# registration (at the end of this module).
cdef int K_NEAREST = -1

# A C constant: written as (1 << 31) in a condition, Cython compares through
# Python ints.
cdef Py_ssize_t _MAX_CD = (<Py_ssize_t>1) << 31  # C's rows x columns for gemm


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_NEAREST_ARRAYS = (
    "not two C-contiguous 2-D float32/float64 ndarrays of one dtype"
)
cdef const char *R_NEAREST_SHAPES = (
    "shapes do not match (or C has no row, or too many for gemm)"
)


cdef const char *_nearest_check(X, C, CallPlan *p) noexcept:
    cdef int t = float_typenum(X)
    cdef cnp.ndarray x, c
    if (t < 0 or float_typenum(C) != t or cnp.PyArray_NDIM(<cnp.ndarray>X) != 2
            or cnp.PyArray_NDIM(<cnp.ndarray>C) != 2):
        return R_NEAREST_ARRAYS
    x, c = <cnp.ndarray>X, <cnp.ndarray>C
    if (cnp.PyArray_DIM(x, 1) != cnp.PyArray_DIM(c, 1) or cnp.PyArray_DIM(c, 0) == 0
            or cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1) >= _MAX_CD):
        return R_NEAREST_SHAPES
    p.kernel, p.typenum = K_NEAREST, t
    p.work = cnp.PyArray_DIM(x, 0) * cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1)
    return NULL


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
    cdef CallPlan p
    cdef dispatch.Call call
    cdef int nt
    if _nearest_check(X, C, &p) != NULL:
        return _nearest_numpy(X, C)
    X, C = aligned(X), aligned(C)
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
    """breakeven._kernels.nearest_blas, imported at the first call: it loads SciPy (for
    its BLAS), which a process that never calls nearest need not import."""
    global _nearest_module
    if _nearest_module is None:
        import breakeven._kernels.nearest_blas as module
        _nearest_module = module
    return _nearest_module


def _plan_nearest(X, C):
    cdef CallPlan p
    return plan_tuple(_nearest_check(X, C, &p), &p)


def nearest_serial(X, C):
    """The serial loops (:mod:`breakeven._kernels.nearest_blas`)."""
    return _nearest_kernels().nearest_serial(X, C)


def nearest_parallel(X, C, n_threads):
    """The parallel loops (:mod:`breakeven._kernels.nearest_blas`)."""
    return _nearest_kernels().nearest_parallel(X, C, n_threads)


# Samples have this many centres and features; work = n * m * d.
NEAREST_M = 32
NEAREST_D = 16


def _sample_nearest(work, dtype, rng):
    n = max(1, int(work) // (NEAREST_M * NEAREST_D))
    X = rng.standard_normal((n, NEAREST_D)).astype(dtype)
    C = rng.standard_normal((NEAREST_M, NEAREST_D)).astype(dtype)
    return (X, C)


def _nearest_work(X, C):
    return int(X.shape[0]) * int(C.shape[0]) * int(X.shape[1])


def _nearest_reference(X, C):
    """The NumPy formulation: argmin(|x|^2 - 2 X C^T + |c|^2)."""
    d = (X * X).sum(axis=1)[:, None] - 2 * (X @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


# The declaration: everything else derives from it.
NEAREST = register_builtin(Kernel(
    "nearest", nearest_serial, nearest_parallel, _nearest_reference, _nearest_work,
    _sample_nearest, uses_blas=True, call=nearest, dropin=nearest,
    plan=_plan_nearest,
    model=KernelModel("blas", 0.02, 0.05, call_us=3.0, per_thread_us=1.5,
                      parallel_us=1.0)))
K_NEAREST = NEAREST.slot
