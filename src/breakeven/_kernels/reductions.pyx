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
