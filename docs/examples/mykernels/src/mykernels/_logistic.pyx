# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The logistic function, out[i] = 1 / (1 + exp(-x[i])), as one prange loop
that asks breakeven how many threads each call gets."""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp
from openmp cimport omp_get_max_threads

# breakeven's public Cython API.  dispatch.pxd is a declarations file whose
# functions are inline C: they are compiled into this module, so the .pxd is
# needed when this file is compiled (breakeven in the build environment) but
# breakeven itself is not needed at run time.  The file is self-contained: a
# library that does not want breakeven at build time either can copy it into
# its own package (say as mykernels/_be_dispatch.pxd) and
# `from mykernels cimport _be_dispatch as be`; its version number is checked
# when breakeven is found at run time.
from breakeven cimport dispatch as be

import numpy as np

try:
    import breakeven
except ImportError:  # breakeven is optional at run time
    breakeven = None

# Without breakeven, the library's own rule: every OpenMP thread from this
# many elements up (a guess; breakeven measures the real threshold per host).
cdef Py_ssize_t FALLBACK_PARALLEL_FROM = 100_000

# The kernel's slot in breakeven's dispatch core (set below, at import).
# -1: breakeven is not available, and begin_or() returns the fallback.
cdef int LOGISTIC = -1


cdef inline floating _logistic(floating v) noexcept nogil:
    return 1 / (1 + exp(-v))


def logistic_into(const floating[::1] x, floating[::1] out):
    """out[i] = 1 / (1 + exp(-x[i])) for float64 or float32 x and out of the
    same length; breakeven decides the threads of each call."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int nt
    cdef be.Call call
    if out.shape[0] != n:
        raise ValueError(f"x and out differ in length: {n} and {out.shape[0]}")
    with nogil:
        # Threads for this call (1: serial).  Without breakeven: the
        # fallback, the last argument (evaluated on every call: keep it cheap).
        nt = be.begin_or(&call, LOGISTIC,
                         be.FLOAT64 if floating is double else be.FLOAT32, n,
                         omp_get_max_threads() if n >= FALLBACK_PARALLEL_FROM
                         else 1)
        if nt > 1:
            for i in prange(n, num_threads=nt, schedule="static"):
                out[i] = _logistic(x[i])
        else:
            # A plain loop: a serial call opens no OpenMP region.  (prange's
            # use_threads_if=False still opens one, of one thread, which
            # costs about a microsecond: more than a small call's work.)
            for i in range(n):
                out[i] = _logistic(x[i])
        be.end(&call)  # after every begin_or(), on the same thread


def _sample(work, dtype, rng):
    """Arguments of about ``work`` elements, for calibration to time."""
    x = rng.uniform(-10.0, 10.0, int(work)).astype(dtype)
    return x, np.empty_like(x)


# Registration, once per process at import: the name is name-spaced (the
# profile keys the kernel's thresholds by it), ``logistic_into`` is the call
# that calibration times at each thread count it forces, the work of a call
# is the size of its argument 0 (elements: the unit thresholds count), and
# the slot is what begin_or() takes.  import_breakeven() looks up the dispatch core
# (0 on success, -1 when breakeven cannot be imported or is of an
# incompatible version); register only then.
if breakeven is not None and be.import_breakeven() == 0:
    LOGISTIC = breakeven.register("mykernels.logistic", logistic_into,
                                  work=0, sample=_sample,
                                  dtypes=("float64", "float32")).slot

# Whether breakeven dispatches the calls (else the fallback rule applies).
DISPATCHED = be.available()
