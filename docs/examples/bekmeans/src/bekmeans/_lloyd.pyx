# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Lloyd's k-means iterations, step for step as scikit-learn's
``KMeans(algorithm="lloyd")`` runs them, with the threads of every pass over
the data decided by breakeven.

The data are cut into chunks of 256 samples (scikit-learn's ``CHUNK_SIZE``,
so that each chunk's distances come from the same BLAS call on the same
numbers).  Chunks are grouped into *parts*: each part's samples add into a
partial sum of the centers of its own, and the parts are added in order.
The number of parts depends on the data's shape and the host's CPU count
only, never on the threads a pass runs with, so on a host every thread
count gives the same result, bit for bit.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.math cimport sqrt
from openmp cimport omp_get_max_threads, omp_get_num_procs, omp_get_thread_num
from scipy.linalg.cython_blas cimport dgemm, sgemm

from breakeven cimport dispatch as be

import numpy as np

try:
    import breakeven
except ImportError:  # breakeven is optional at run time
    breakeven = None

cdef enum:
    CHUNK = 256          # samples per chunk: scikit-learn's CHUNK_SIZE
    PARTS_PER_CPU = 8    # parts: enough for a balanced static schedule
    ADD_BLOCK = 256      # partial sums' values a thread adds at a time

# Partial sums take at most this many floating values (32 MiB in float64).
cdef Py_ssize_t PART_VALUES_MAX = 1 << 22

# Without breakeven, the library's own rule: every OpenMP thread from this
# much work up (a guess; breakeven measures the real threshold per host).
cdef Py_ssize_t FALLBACK_PARALLEL_FROM = 1 << 20

# The kernel's slot in breakeven's dispatch core (-1: breakeven absent).
cdef int LLOYD = -1


# ---------------------------------------------------------------------------
# one chunk, one part
# ---------------------------------------------------------------------------

cdef inline void _distances(const floating *X, int m, int d,
                            const floating *centers, int k,
                            floating *D) noexcept nogil:
    """D[i, j] += -2 x_i . c_j for the m rows of X (D row-major m x k,
    holding the centers' squared norms): scikit-learn's gemm call, on the
    same chunks, so the same numbers.  (BLAS pays even at two features: a
    loop of one's own is slower there.)"""
    cdef char ta = b't', tb = b'n'
    cdef floating alpha = -2.0, beta = 1.0
    # Row-major D = -2 X C^T + D is column-major D^T = -2 C X^T + D^T.
    if floating is double:
        dgemm(&ta, &tb, &k, &m, &d, &alpha, <double *>centers, &d,
              <double *>X, &d, &beta, D, &k)
    else:
        sgemm(&ta, &tb, &k, &m, &d, &alpha, <float *>centers, &d,
              <float *>X, &d, &beta, D, &k)


cdef Py_ssize_t _part(const floating *X, Py_ssize_t n, int d,
                      const floating *centers, const floating *norms, int k,
                      Py_ssize_t first, Py_ssize_t last, int *labels,
                      floating *sums, floating *counts, floating *D,
                      bint update, double *inertia) noexcept nogil:
    """Chunks [first, last): each sample's nearest center into ``labels``
    and, if ``update``, the part's sums and counts (zeroed first); if
    ``inertia`` is not NULL, the part's sum of squared distances to those
    centers into it.  Returns how many labels changed."""
    cdef Py_ssize_t c, start, s, changed = 0
    cdef int m, i, j, f, best
    cdef floating dist, best_dist
    cdef const floating *x
    cdef floating *row
    if update:
        memset(sums, 0, k * d * sizeof(floating))
        memset(counts, 0, k * sizeof(floating))
    if inertia != NULL:
        inertia[0] = 0
    for c in range(first, last):
        start = c * CHUNK
        m = <int>min(<Py_ssize_t>CHUNK, n - start)
        for i in range(m):
            for j in range(k):
                D[i * k + j] = norms[j]
        _distances(X + start * d, m, d, centers, k, D)
        for i in range(m):
            row = D + i * k
            best_dist = row[0]
            best = 0
            for j in range(1, k):
                dist = row[j]
                if dist < best_dist:
                    best_dist = dist
                    best = j
            s = start + i
            changed += labels[s] != best  # (no branch: labels change at random)
            labels[s] = best
            if inertia != NULL:  # the final labels' pass: no pass of its own
                inertia[0] += _squared(X + s * d, centers + best * d, d)
            if update:
                counts[best] += 1
                x = X + s * d
                row = sums + best * d
                # unrolled by hand: as a plain loop (SSE2, the baseline
                # x86-64 build) it ran slower than scikit-learn's when both
                # CPUs ran it, at 50 features
                for f in range(0, d - 3, 4):
                    row[f] += x[f]
                    row[f + 1] += x[f + 1]
                    row[f + 2] += x[f + 2]
                    row[f + 3] += x[f + 3]
                for f in range(d - d % 4, d):
                    row[f] += x[f]
    return changed


# ---------------------------------------------------------------------------
# one pass over the data, with the threads breakeven grants
# ---------------------------------------------------------------------------

cdef struct Shape:
    Py_ssize_t n
    int d, k
    Py_ssize_t chunks
    Py_ssize_t per_part   # chunks per part
    Py_ssize_t parts


cdef Shape _shape(Py_ssize_t n, int d, int k) noexcept nogil:
    """The chunks and parts of data of n x d with k centers: a function of
    the shape and the host's CPUs alone.  Parts cost their reduction (each
    adds k x d values once a pass): a part per chunk made a 50-feature pass
    on 10^5 samples markedly slower than eight parts per CPU."""
    cdef Shape s
    cdef Py_ssize_t most = PART_VALUES_MAX // (<Py_ssize_t>k * (d + 1))
    s.n, s.d, s.k = n, d, k
    s.chunks = (n + CHUNK - 1) // CHUNK
    most = max(1, min(most, <Py_ssize_t>PARTS_PER_CPU * omp_get_num_procs()))
    s.parts = min(s.chunks, most)
    s.per_part = (s.chunks + s.parts - 1) // s.parts
    s.parts = (s.chunks + s.per_part - 1) // s.per_part
    return s


# A pass's work, in breakeven's unit for this kernel: about one
# multiply-add of the distance product (X C^T, by BLAS).  Per sample, a
# pass also writes, reads and compares each center's distance and reads
# and adds the sample's features: measured on a reference host (serial,
# k = 2..32, d = 1..100), a sample costs about kd + 40k + 20d + 32 such
# units.  With work in proportion to time, one calibrated threshold holds
# for every shape, and breakeven's check of a call's time against the
# calibrated one is not misled by the shape.
cdef enum:
    PER_CENTER = 40    # distance prefilled, read, compared
    PER_FEATURE = 20   # the sample read, added to its cluster's sum
    PER_SAMPLE = 32


cdef inline Py_ssize_t _pass_work(Shape s, bint update) noexcept nogil:
    """The work of an assignment pass (and update, if ``update``)."""
    return s.n * (<Py_ssize_t>s.k * s.d + PER_CENTER * s.k
                  + (PER_FEATURE if update else PER_FEATURE // 2) * s.d
                  + PER_SAMPLE)


cdef inline Py_ssize_t _inertia_work(Shape s) noexcept nogil:
    """The work of the inertia's pass: a squared distance per sample."""
    return s.n * (PER_FEATURE // 2 * s.d + PER_SAMPLE)


cdef inline int _threads(be.Call *call, Shape s, Py_ssize_t work,
                         int dtype) noexcept nogil:
    """breakeven's grant (the library's own rule without it), at most one
    thread per part."""
    cdef int nt = be.begin_or(call, LLOYD, dtype, work,
                              omp_get_max_threads()
                              if work >= FALLBACK_PARALLEL_FROM else 1)
    return <int>min(<Py_ssize_t>nt, s.parts)


cdef Py_ssize_t _assign(Shape s, const floating *X, const floating *centers,
                        floating *norms, int *labels, floating *part_sums,
                        floating *part_counts, floating *D1, floating *sums,
                        floating *counts, bint update,
                        double *part_inertia) noexcept nogil:
    """Labels for all the data, in one pass, and, if ``update``, the
    clusters' ``sums`` and ``counts``, if ``part_inertia`` is not NULL, each
    part's inertia; returns how many labels changed."""
    cdef be.Call call
    cdef Py_ssize_t p, changed = 0, kd = <Py_ssize_t>s.k * s.d
    cdef int j, f, nt
    cdef floating *D = NULL
    for j in range(s.k):
        norms[j] = 0
        for f in range(s.d):
            norms[j] += centers[j * s.d + f] * centers[j * s.d + f]
    nt = _threads(&call, s, _pass_work(s, update or part_inertia != NULL),
                  be.FLOAT64 if floating is double else be.FLOAT32)
    if nt > 1:
        D = <floating *>malloc(nt * CHUNK * s.k * sizeof(floating))
        if D == NULL:
            nt = 1  # no room for the threads' distances: serially
    if nt > 1:
        for p in prange(s.parts, num_threads=nt, schedule="static"):
            changed += _part(X, s.n, s.d, centers, norms, s.k, p * s.per_part,
                             min((p + 1) * s.per_part, s.chunks), labels,
                             part_sums + p * kd, part_counts + p * s.k,
                             D + omp_get_thread_num() * CHUNK * s.k, update,
                             part_inertia + p if part_inertia != NULL else NULL)
        free(D)
    else:  # serial: a plain loop, no OpenMP region
        for p in range(s.parts):
            changed += _part(X, s.n, s.d, centers, norms, s.k, p * s.per_part,
                             min((p + 1) * s.per_part, s.chunks), labels,
                             part_sums + p * kd, part_counts + p * s.k, D1,
                             update,
                             part_inertia + p if part_inertia != NULL else NULL)
    if update:
        _add_parts(s, part_sums, part_counts, sums, counts, nt)
    be.end(&call)
    return changed


cdef inline void _add_block(Shape s, const floating *parts, floating *total,
                            Py_ssize_t width, Py_ssize_t e0,
                            Py_ssize_t e1) noexcept nogil:
    """total[e0:e1] = the parts' values e0..e1 (each part ``width`` values),
    added in the parts' order."""
    cdef Py_ssize_t p, e
    for e in range(e0, e1):
        total[e] = 0
    for p in range(s.parts):
        for e in range(e0, e1):
            total[e] += parts[p * width + e]


cdef void _add_parts(Shape s, const floating *part_sums,
                     const floating *part_counts, floating *sums,
                     floating *counts, int nt) noexcept nogil:
    """The parts' sums and counts, added in the parts' order: by blocks of
    values, on the pass's threads (the same sums whoever adds a block)."""
    cdef Py_ssize_t b, kd = <Py_ssize_t>s.k * s.d
    cdef Py_ssize_t blocks = (kd + ADD_BLOCK - 1) // ADD_BLOCK
    if nt > 1 and blocks > 1:
        for b in prange(blocks, num_threads=nt, schedule="static"):
            _add_block(s, part_sums, sums, kd, b * ADD_BLOCK,
                       min((b + 1) * ADD_BLOCK, kd))
    else:
        _add_block(s, part_sums, sums, kd, 0, kd)
    _add_block(s, part_counts, counts, s.k, 0, s.k)


# ---------------------------------------------------------------------------
# the M step's arithmetic, as scikit-learn's _k_means_common writes it
# ---------------------------------------------------------------------------

cdef inline floating _squared(const floating *a, const floating *b,
                              int d) noexcept nogil:
    """||a - b||^2, unrolled by four as scikit-learn's
    _euclidean_dense_dense (the same order of additions)."""
    cdef int i
    cdef floating r = 0
    for i in range(d // 4):
        r += ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
              + (a[2] - b[2]) * (a[2] - b[2]) + (a[3] - b[3]) * (a[3] - b[3]))
        a += 4
        b += 4
    for i in range(d % 4):
        r += (a[i] - b[i]) * (a[i] - b[i])
    return r


cdef void _average(Shape s, floating *centers,
                   const floating *counts) noexcept nogil:
    """Sums into means; a center left empty takes the biggest cluster's
    row as it stands at that point (scikit-learn's order)."""
    cdef int j, f, biggest = 0
    cdef floating alpha
    for j in range(1, s.k):
        if counts[j] > counts[biggest]:
            biggest = j
    for j in range(s.k):
        if counts[j] > 0:
            alpha = 1.0 / counts[j]
            for f in range(s.d):
                centers[j * s.d + f] *= alpha
        else:
            for f in range(s.d):
                centers[j * s.d + f] = centers[biggest * s.d + f]


cdef floating _shift(Shape s, const floating *old,
                     const floating *new) noexcept nogil:
    """The sum of the centers' squared shifts (each shift a square root of
    its squared distance first, as scikit-learn's center_shift)."""
    cdef int j
    cdef floating one, total = 0
    for j in range(s.k):
        one = sqrt(_squared(new + j * s.d, old + j * s.d, s.d))
        total += one * one
    return total


cdef double _part_inertia(Shape s, const floating *X, const floating *centers,
                          const int *labels, Py_ssize_t p) noexcept nogil:
    """Part p's sum of squared distances to the assigned centers."""
    cdef Py_ssize_t i, end = min((p + 1) * s.per_part * CHUNK, s.n)
    cdef double r = 0
    for i in range(p * s.per_part * CHUNK, end):
        r += _squared(X + i * s.d, centers + labels[i] * s.d, s.d)
    return r


cdef double _inertia(Shape s, const floating *X, const floating *centers,
                     const int *labels, double *parts) noexcept nogil:
    """The sum of squared distances to the assigned centers, by part,
    added in the parts' order."""
    cdef be.Call call
    cdef Py_ssize_t p
    cdef int nt = _threads(&call, s, _inertia_work(s),
                           be.FLOAT64 if floating is double else be.FLOAT32)
    if nt > 1:
        for p in prange(s.parts, num_threads=nt, schedule="static"):
            parts[p] = _part_inertia(s, X, centers, labels, p)
    else:
        for p in range(s.parts):
            parts[p] = _part_inertia(s, X, centers, labels, p)
    be.end(&call)
    return _sum_parts(s, parts)


cdef inline double _sum_parts(Shape s, const double *parts) noexcept nogil:
    """The parts' inertias, added in the parts' order."""
    cdef Py_ssize_t p
    cdef double total = 0
    for p in range(s.parts):
        total += parts[p]
    return total


# ---------------------------------------------------------------------------
# the iterations
# ---------------------------------------------------------------------------

def _relocate_empty(X, centers_old, sums, counts, labels):
    """Empty clusters take the samples farthest from their centers, as
    scikit-learn's _relocate_empty_clusters_dense (the same NumPy
    expressions, so that the same samples are chosen); every weight is 1."""
    empty = np.where(np.equal(counts, 0))[0].astype(np.int32)
    n_empty = empty.shape[0]
    distances = ((X - centers_old[labels]) ** 2).sum(axis=1)
    far = np.argpartition(distances, -n_empty)[:-n_empty - 1:-1].astype(np.int32)
    if np.max(distances) == 0:  # fewer distinct samples than clusters
        return
    for new_id, far_idx in zip(empty, far):
        old_id = labels[far_idx]
        sums[old_id] -= X[far_idx]
        sums[new_id] = X[far_idx]
        counts[new_id] = 1
        counts[old_id] -= 1


def run(const floating[:, ::1] X, floating[:, ::1] centers, int[::1] labels,
        int max_iter, double tol):
    """Lloyd's iterations on centered data X from ``centers`` (replaced by
    the result), with ``labels`` (the previous labels, -1 at first)
    replaced by the final ones.  Returns ``(n_iter, inertia)``.

    The loops alone, without validation: see :func:`bekmeans.lloyd`.
    """
    cdef Shape s = _shape(X.shape[0], <int>X.shape[1], <int>centers.shape[0])
    cdef Py_ssize_t changed = 1
    cdef int it = 0, j
    cdef bint strict = False
    cdef floating tot
    cdef double inertia
    dt = np.float64 if floating is double else np.float32
    other = np.empty_like(centers)
    counts_a = np.zeros(s.k, dt)
    part_sums_a = np.empty((s.parts, s.k, s.d), dt)
    part_counts_a = np.empty((s.parts, s.k), dt)
    cdef floating[:, ::1] cur = centers, new = other
    cdef floating[::1] counts = counts_a
    cdef floating[::1] norms = np.empty(s.k, dt)
    cdef floating[::1] D1 = np.empty(CHUNK * s.k, dt)
    cdef floating[:, :, ::1] part_sums = part_sums_a
    cdef floating[:, ::1] part_counts = part_counts_a
    cdef double[::1] part_inertia = np.empty(s.parts)
    if s.n == 0:
        return 0, 0.0
    for it in range(max_iter):
        with nogil:
            changed = _assign(s, &X[0, 0], &cur[0, 0], &norms[0], &labels[0],
                              &part_sums[0, 0, 0], &part_counts[0, 0], &D1[0],
                              &new[0, 0], &counts[0], True, NULL)
        for j in range(s.k):
            if counts[j] == 0:
                _relocate_empty(np.asarray(X), np.asarray(cur), np.asarray(new),
                                counts_a, np.asarray(labels))
                break
        with nogil:
            _average(s, &new[0, 0], &counts[0])
            tot = _shift(s, &cur[0, 0], &new[0, 0])
        cur, new = new, cur
        if changed == 0:
            strict = True
            break
        if tot <= tol:
            break
    with nogil:
        if strict:  # the labels are those of the final centers already
            inertia = _inertia(s, &X[0, 0], &cur[0, 0], &labels[0],
                               &part_inertia[0])
        else:  # the labels of the final centers, and the inertia with them
            _assign(s, &X[0, 0], &cur[0, 0], &norms[0], &labels[0],
                    &part_sums[0, 0, 0], &part_counts[0, 0], &D1[0], NULL, NULL,
                    False, &part_inertia[0])
            inertia = _sum_parts(s, &part_inertia[0])
    if &cur[0, 0] != &centers[0, 0]:
        centers[...] = cur
    return it + 1, inertia


# ---------------------------------------------------------------------------
# registration with breakeven
# ---------------------------------------------------------------------------

def _one_pass(const floating[:, ::1] X, const floating[:, ::1] centers,
              int[::1] labels, floating[:, :, ::1] part_sums,
              floating[:, ::1] part_counts, floating[::1] D1,
              floating[:, ::1] sums, floating[::1] counts):
    """One assignment and update pass (what calibration times); returns
    how many labels changed."""
    cdef Shape s = _shape(X.shape[0], <int>X.shape[1], <int>centers.shape[0])
    cdef floating[::1] norms = np.empty(s.k, np.asarray(X).dtype)
    cdef Py_ssize_t changed
    with nogil:
        changed = _assign(s, &X[0, 0], &centers[0, 0], &norms[0], &labels[0],
                          &part_sums[0, 0, 0], &part_counts[0, 0], &D1[0],
                          &sums[0, 0], &counts[0], True, NULL)
    return changed


# Calibration's data: 16 features and 8 centers, as many samples as make
# the work asked for.
SAMPLE_FEATURES, SAMPLE_CENTERS = 16, 8


def _work_of(X, centers, *buffers):
    """The work of a pass (see _pass_work), as breakeven counts it."""
    return _pass_work(_shape(X.shape[0], X.shape[1], centers.shape[0]), True)


def _sample(work, dtype, rng):
    """Arguments of one pass of about ``work`` multiply-adds."""
    d, k = SAMPLE_FEATURES, SAMPLE_CENTERS
    n = max(k, int(work) // _pass_work(_shape(1, d, k), True))
    X = rng.standard_normal((n, d)).astype(dtype)
    s = _shape(n, d, k)
    return (X, X[:k].copy(), np.full(n, -1, np.int32),
            np.empty((s.parts, k, d), dtype), np.empty((s.parts, k), dtype),
            np.empty(CHUNK * k, dtype), np.empty((k, d), dtype), np.empty(k, dtype))


# Registration, once per process at import, when breakeven is there.
if breakeven is not None and be.import_breakeven() == 0:
    LLOYD = breakeven.register("bekmeans.lloyd", _one_pass, work=_work_of,
                               sample=_sample, uses_blas=True,
                               dtypes=("float64", "float32")).slot

# Whether breakeven decides the threads (else the library's own rule).
DISPATCHED = be.available()
