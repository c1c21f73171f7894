"""nearest: index of the nearest centre for each row, by squared distance.

For each chunk of rows of X, ``G = X_chunk @ C.T`` comes from BLAS ``gemm``
(``scipy.linalg.cython_blas``), called inside the ``prange`` loop, one chunk
per iteration (the pattern of scikit-learn's k-means); then each row takes
``argmin_j |c_j|^2 - 2 G[i, j]`` (``|x_i|^2`` is the same for every j), with
ties to the lowest index; a row whose ``|x_i|^2`` is inf or NaN takes the
argmin of NumPy's full formula instead, as ``inf - inf`` makes NaNs there.
The chunk size depends on the shapes only, so every thread count computes
the same products.

BLAS must run single-threaded inside the parallel loop: the caller caps it
(threadpoolctl), as the dispatcher does.
"""
import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm, sgemm

from breakeven._kernels.simd cimport (
    be_argmin_rows_d,
    be_argmin_rows_f,
    be_sqnorm_rows_d,
    be_sqnorm_rows_f,
)
from breakeven._core.openmp cimport check_threads

cdef enum:
    # A chunk's product (rows x m) is kept near 256 KiB of float64.
    CHUNK_ELEMS = 32768
    MIN_ROWS = 8
    MAX_ROWS = 256


cdef inline Py_ssize_t _chunk_rows(Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t rows = CHUNK_ELEMS // m
    return MIN_ROWS if rows < MIN_ROWS else (MAX_ROWS if rows > MAX_ROWS else rows)


cdef void _chunk(const floating *X, Py_ssize_t rows, const floating *C,
                 Py_ssize_t m, Py_ssize_t d, const floating *cn, floating *g,
                 int64_t *out) noexcept nogil:
    """Nearest centre of ``rows`` rows of X, using the buffer g (rows x m)."""
    # Row-major G (rows x m) is column-major G.T (m x rows) = C (m x d) @ X.T:
    # C arrives as column-major C.T (d x m), hence 'T'; X as X.T (d x rows).
    cdef char transa = b"T"
    cdef char transb = b"N"
    cdef int mm = <int>m, nn = <int>rows, kk = <int>d
    cdef floating alpha = 1.0, beta = 0.0
    if floating is double:
        dgemm(&transa, &transb, &mm, &nn, &kk, &alpha, <double *>C, &kk,
              <double *>X, &kk, &beta, g, &mm)
        be_argmin_rows_d(g, rows, m, cn, X, d, out)
    else:
        sgemm(&transa, &transb, &mm, &nn, &kk, &alpha, <float *>C, &kk,
              <float *>X, &kk, &beta, g, &mm)
        be_argmin_rows_f(g, rows, m, cn, X, d, out)


cdef _check_shapes(Py_ssize_t n, Py_ssize_t d, Py_ssize_t m, Py_ssize_t dc):
    if d != dc:
        raise ValueError(
            f"X and C must have the same number of columns, got {d} and {dc}")
    if m == 0:
        raise ValueError("C must have at least one row")
    if m > INT_MAX or d > INT_MAX:
        raise ValueError("C has too many rows or columns for BLAS (int32)")


cdef int _nearest(const floating[:, ::1] X, const floating[:, ::1] C,
                  int64_t[::1] out, int nt) except -1:
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], m = C.shape[0]
    cdef Py_ssize_t rows = _chunk_rows(m)
    cdef Py_ssize_t n_chunks = (n + rows - 1) // rows, k, r0
    cdef floating *cn = <floating *>malloc(m * sizeof(floating))
    cdef floating *g
    if cn == NULL:
        raise MemoryError()
    if d == 0:
        # Every distance is 0: the first centre is nearest (as np.argmin says).
        out[:] = 0
        free(cn)
        return 0
    if floating is double:
        be_sqnorm_rows_d(&C[0, 0], m, d, cn)
    else:
        be_sqnorm_rows_f(&C[0, 0], m, d, cn)
    if nt > n_chunks:
        nt = <int>n_chunks
    if nt <= 1:
        g = <floating *>malloc(rows * m * sizeof(floating))
        if g == NULL:
            free(cn)
            raise MemoryError()
        with nogil:
            for k in range(n_chunks):
                r0 = k * rows
                _chunk(&X[r0, 0], min(rows, n - r0), &C[0, 0], m, d, cn, g, &out[r0])
        free(g)
    else:
        with nogil, parallel(num_threads=nt):
            # One product buffer per thread, for the whole region.
            g = <floating *>malloc(rows * m * sizeof(floating))
            for k in prange(n_chunks, schedule="static"):
                r0 = k * rows
                if g != NULL:
                    _chunk(&X[r0, 0], min(rows, n - r0), &C[0, 0], m, d, cn, g,
                           &out[r0])
                else:
                    out[r0] = -1
            free(g)
        if np.asarray(out).min() < 0:
            free(cn)
            raise MemoryError()
    free(cn)
    return 0


def _prepare(X, C):
    n, d = X.shape[0], X.shape[1]
    _check_shapes(n, d, C.shape[0], C.shape[1])
    return np.empty(n, dtype=np.int64)


def nearest_serial(const floating[:, ::1] X, const floating[:, ::1] C):
    """For each row of X (n, d), the index of the nearest row of C (m, d)
    in squared Euclidean distance, ties to the lowest index; on one thread."""
    out = _prepare(X, C)
    cdef int64_t[::1] outv = out
    if X.shape[0]:
        _nearest(X, C, outv, 1)
    return out


def nearest_parallel(const floating[:, ::1] X, const floating[:, ::1] C,
                     Py_ssize_t n_threads):
    """:func:`nearest_serial` with up to ``n_threads`` threads (BLAS capped to
    one thread by the caller)."""
    cdef int nt = check_threads(n_threads)
    out = _prepare(X, C)
    cdef int64_t[::1] outv = out
    if X.shape[0]:
        _nearest(X, C, outv, nt)
    return out
