"""Thread-count rules shared by every kernel, and OpenMP introspection."""
from cython.parallel cimport parallel

from breakeven._core.engine cimport note_parallel, usable_count
from breakeven._core.omp cimport (
    omp_get_max_threads,
    omp_get_num_threads,
    omp_get_thread_num,
)

import time

import numpy as np

cdef extern from *:
    """
    /* The OpenMP runtime the kernels were built for: the one the compiler
       links (threadpoolctl's names of their libraries); "none" for a build
       without OpenMP, whose prange loops are serial. */
    #if !defined(_OPENMP)
    #define BE_OPENMP_RUNTIME "none"
    #elif defined(__INTEL_LLVM_COMPILER) || defined(__INTEL_COMPILER)
    #define BE_OPENMP_RUNTIME "libiomp"
    #elif defined(__clang__)
    #define BE_OPENMP_RUNTIME "libomp"
    #elif defined(_MSC_VER)
    #define BE_OPENMP_RUNTIME "vcomp"
    #elif defined(__GNUC__)
    #define BE_OPENMP_RUNTIME "libgomp"
    #else
    #define BE_OPENMP_RUNTIME "unknown"
    #endif
    """
    const char *BE_OPENMP_RUNTIME

cdef extern from *:
    """
    /* The file of the OpenMP runtime this module's OpenMP calls run on: the
       library that omp_get_max_threads resolves to here, which is the one
       preloaded (LD_PRELOAD) or loaded with RTLD_GLOBAL if any, else the
       one this module links.  "" if unknown (no OpenMP, no dladdr). */
    #if defined(_OPENMP) && (defined(__linux__) || defined(__APPLE__))
    #include <dlfcn.h>
    static const char *be_runtime_file(void) {
        Dl_info info;
        void *f = (void *)&omp_get_max_threads;
        if (dladdr(f, &info) && info.dli_fname != NULL)
            return info.dli_fname;
        return "";
    }
    #else
    static const char *be_runtime_file(void) { return ""; }
    #endif
    """
    const char *be_runtime_file()

# The OpenMP runtime of this build (part of a host's fingerprint).
OPENMP_RUNTIME = BE_OPENMP_RUNTIME.decode()
# Whether the kernels can run in parallel at all, and how breakeven says
# that they cannot (explain, show, info, calibrate).
OPENMP = OPENMP_RUNTIME != "none"
NO_OPENMP = "breakeven was built without OpenMP: every kernel runs serially"


def usable_cpus():
    """The usable CPU count the kernels clamp ``n_threads`` to: the dispatch
    core's (affinity and cgroup quota, read once; breakeven.testing can
    simulate another)."""
    return usable_count()


cdef int check_threads(Py_ssize_t n_threads) except -1:
    """Validate ``n_threads`` and clamp it to [1, usable CPUs]."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads}")
    note_parallel()  # a kernel called directly: a forked child must stay serial
    cdef int usable = usable_count()
    return <int>(n_threads if n_threads < usable else usable)


def runtime_file():
    """The file of the OpenMP runtime breakeven's kernels run on (``""``
    if unknown): the one the build linked, or one preloaded in its place."""
    return be_runtime_file().decode(errors="replace")


def max_threads():
    """``omp_get_max_threads()``: OMP_NUM_THREADS and runtime limits applied."""
    return omp_get_max_threads()


def team_size(int n_threads):
    """Open a parallel region asking for ``n_threads`` and return how many
    threads actually ran in it.

    A build that compiled ``prange`` without OpenMP always reports 1.
    """
    cdef int size[1]
    if n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads}")
    size[0] = 0
    note_parallel()
    with nogil, parallel(num_threads=n_threads):
        if omp_get_thread_num() == 0:
            size[0] = omp_get_num_threads()
    return size[0]


def region_seconds(int n_threads, int repeats=200):
    """The median time of an empty parallel region of ``n_threads`` threads
    opened back to back (the team hot): what a parallel call pays at least.
    Well under a millisecond in all."""
    cdef int _i
    if n_threads < 1 or repeats < 1:
        raise ValueError("n_threads and repeats must be positive")
    clock = time.perf_counter
    for _i in range(20):  # the team made and spinning
        team_size(n_threads)
    samples = []
    for _i in range(repeats):
        t0 = clock()
        team_size(n_threads)
        samples.append(clock() - t0)
    return float(np.median(samples))
