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
