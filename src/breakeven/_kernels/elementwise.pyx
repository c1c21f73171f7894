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
