"""cumsum: a blocked scan, bit-identical for any thread count.

Blocks of ``BE_SCAN_BLOCK`` elements (bounds depend on the length only).
Serially, each block is scanned starting from the running offset.  In
parallel, a round of blocks is scanned locally by the threads (pass 1), one
thread turns the block totals into offsets in block order, and the threads
add each block's offset (pass 2) while the round is still in cache.  Both
paths evaluate ``offset + local`` with the same operands: the same bits.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from breakeven._kernels.simd cimport (
    BE_SCAN_BLOCK,
    be_add_scalar_d,
    be_add_scalar_f,
    be_scan_block_d,
    be_scan_block_f,
)
from breakeven._core.openmp cimport check_threads

cdef enum:
    # Blocks each thread scans per round: ~256 KiB of float64 input, so a
    # round's input and output stay in L2 between the two passes.
    BLOCKS_PER_THREAD = 16


cdef inline floating _scan_block(const floating *x, floating *out, Py_ssize_t n,
                                 floating offset) noexcept nogil:
    if floating is double:
        return be_scan_block_d(x, out, n, offset)
    else:
        return be_scan_block_f(x, out, n, offset)


cdef inline void _add(floating *out, Py_ssize_t n, floating c) noexcept nogil:
    if floating is double:
        be_add_scalar_d(out, n, c)
    else:
        be_add_scalar_f(out, n, c)


cdef inline Py_ssize_t _block_len(Py_ssize_t n, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t rest = n - b * BE_SCAN_BLOCK
    return rest if rest < BE_SCAN_BLOCK else BE_SCAN_BLOCK


cdef void _cumsum_serial(const floating *x, floating *out,
                         Py_ssize_t n) noexcept nogil:
    # -0.0 is the identity of addition: the first block is left unchanged
    # (and cumsum([-0.0]) stays -0.0, as in NumPy).
    cdef floating offset = -0.0
    cdef Py_ssize_t nb = (n + BE_SCAN_BLOCK - 1) // BE_SCAN_BLOCK, b, off
    for b in range(nb):
        off = b * BE_SCAN_BLOCK
        offset = offset + _scan_block(x + off, out + off, _block_len(n, b), offset)


cdef inline void _check_lengths(Py_ssize_t a, Py_ssize_t b) except *:
    if a != b:
        raise ValueError(f"x and out must have the same length, got {a} and {b}")


def cumsum_serial(const floating[::1] x, floating[::1] out):
    """``out[:] = cumsum(x)`` on one thread.  ``out`` may be ``x`` itself."""
    cdef Py_ssize_t n = x.shape[0]
    _check_lengths(n, out.shape[0])
    if n == 0:
        return
    with nogil:
        _cumsum_serial(&x[0], &out[0], n)


def cumsum_parallel(const floating[::1] x, floating[::1] out, Py_ssize_t n_threads):
    """``out[:] = cumsum(x)`` with up to ``n_threads`` threads; bit-identical
    to :func:`cumsum_serial`.  ``out`` may be ``x`` itself."""
    cdef int nt = check_threads(n_threads)
    cdef Py_ssize_t n = x.shape[0]
    _check_lengths(n, out.shape[0])
    if n == 0:
        return
    cdef Py_ssize_t nb = (n + BE_SCAN_BLOCK - 1) // BE_SCAN_BLOCK
    if nt > nb:
        nt = <int>nb
    if nt <= 1:
        with nogil:
            _cumsum_serial(&x[0], &out[0], n)
        return
    _cumsum_parallel(&x[0], &out[0], n, nb, nt)


cdef int _cumsum_parallel(const floating *x, floating *out, Py_ssize_t n,
                          Py_ssize_t nb, int nt) except -1:
    """Rounds of ``nt * BLOCKS_PER_THREAD`` blocks: the threads scan the
    round's blocks locally (pass 1), one thread turns their totals into
    offsets, and the threads add the offsets (pass 2) while the round is
    still in cache."""
    cdef Py_ssize_t per_round = <Py_ssize_t>nt * BLOCKS_PER_THREAD
    cdef Py_ssize_t n_rounds = (nb + per_round - 1) // per_round
    cdef Py_ssize_t r, b, b0, b1, j, _one
    cdef floating c
    # totals[i], offsets[i]: of block b0 + i in the current round;
    # carry[0]: the offset at the start of the next round.
    cdef floating *totals = <floating *>malloc(per_round * sizeof(floating))
    cdef floating *offsets = <floating *>malloc(per_round * sizeof(floating))
    cdef floating carry[1]
    if totals == NULL or offsets == NULL:
        free(totals)
        free(offsets)
        raise MemoryError()
    carry[0] = -0.0
    with nogil, parallel(num_threads=nt):
        for r in range(n_rounds):
            b0 = r * per_round
            b1 = min(nb, b0 + per_round)
            for b in prange(b0, b1, schedule="static"):
                totals[b - b0] = _scan_block(
                    x + b * BE_SCAN_BLOCK, out + b * BE_SCAN_BLOCK,
                    _block_len(n, b), -0.0)
            # A one-iteration worksharing loop: one thread does the
            # sequential part, and its implicit barrier publishes it.
            for _one in prange(1, schedule="static"):
                c = carry[0]
                for j in range(b1 - b0):
                    offsets[j] = c
                    c = c + totals[j]
                carry[0] = c
            for b in prange(b0, b1, schedule="static"):
                if b > 0:  # block 0's offset is -0.0, the identity
                    _add(out + b * BE_SCAN_BLOCK, _block_len(n, b), offsets[b - b0])
    free(totals)
    free(offsets)
    return 0


cdef void cumsum_serial_d(const double *x, double *out, Py_ssize_t n) noexcept nogil:
    if n:
        _cumsum_serial(x, out, n)


cdef void cumsum_serial_f(const float *x, float *out, Py_ssize_t n) noexcept nogil:
    if n:
        _cumsum_serial(x, out, n)


cdef int _cumsum_dispatch(const floating *x, floating *out, Py_ssize_t n,
                          int nt) except -1:
    cdef Py_ssize_t nb = (n + BE_SCAN_BLOCK - 1) // BE_SCAN_BLOCK
    if n == 0:
        return 0
    if nt > nb:
        nt = <int>nb
    if nt <= 1:
        with nogil:
            _cumsum_serial(x, out, n)
        return 0
    return _cumsum_parallel(x, out, n, nb, nt)


cdef int cumsum_parallel_d(const double *x, double *out, Py_ssize_t n,
                           int nt) except -1:
    return _cumsum_dispatch(x, out, n, nt)


cdef int cumsum_parallel_f(const float *x, float *out, Py_ssize_t n,
                           int nt) except -1:
    return _cumsum_dispatch(x, out, n, nt)


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
    disjoint_or_same,
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
cdef int K_CUMSUM = -1


# Why a call is not the kernel's (explain() says so in these words).
cdef const char *R_CUMSUM_AXIS = "an axis of a multi-dimensional array, or not an int"
cdef const char *R_CUMSUM_DTYPE = "dtype given"
cdef const char *R_CUMSUM_OUT = (
    "out is not a contiguous writeable 1-D array of the right size"
)


cdef const char *_cumsum_check(a, axis, dtype, out, CallPlan *p) noexcept:
    cdef int t = float_typenum(a)
    cdef cnp.ndarray xs
    cdef cnp.npy_intp n
    if t < 0:
        return NOT_FLOAT
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
            and disjoint_or_same(<cnp.ndarray>out, xs))):
        return R_CUMSUM_OUT
    p.kernel, p.typenum, p.work = K_CUMSUM, t, n
    return NULL


cdef inline void _cumsum_serial_of_type(int t, void *x, void *out,
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
    cdef CallPlan p
    cdef dispatch.Call call
    cdef cnp.ndarray res
    cdef cnp.npy_intp n
    cdef int nt
    cdef void *px
    cdef void *po
    if _cumsum_check(a, axis, dtype, out, &p) != NULL:
        return np.cumsum(a, axis=axis, dtype=dtype, out=out)
    n = p.work
    res = (cnp.PyArray_EMPTY(1, &n, p.typenum, 0) if out is None
           else <cnp.ndarray>out)
    px, po = cnp.PyArray_DATA(aligned(a)), cnp.PyArray_DATA(res)
    nt = dispatch.begin(&call, p.kernel, p.typenum, p.work)
    if nt <= 1:
        if p.work < NOGIL_MIN:
            _cumsum_serial_of_type(p.typenum, px, po, p.work)
        else:
            with nogil:
                _cumsum_serial_of_type(p.typenum, px, po, p.work)
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
    cdef CallPlan p
    return plan_tuple(_cumsum_check(a, axis, dtype, out, &p), &p)


def _sample_cumsum(work, dtype, rng):
    x = uniform_array(work, dtype, rng)
    return (x, np.empty_like(x))


def _cumsum_reference(x, out):
    np.cumsum(x, out=out)


# The declaration: everything else derives from it.
CUMSUM = register_builtin(Kernel(
    "cumsum", cumsum_serial, cumsum_parallel, _cumsum_reference, first_length,
    _sample_cumsum, call=lambda x, out: cumsum(x, out=out), dropin=cumsum,
    plan=_plan_cumsum, model=KernelModel("memory", 0.4, 16, passes=2)))
K_CUMSUM = CUMSUM.slot
