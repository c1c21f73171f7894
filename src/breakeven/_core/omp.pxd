# Every OpenMP symbol the kernels use comes from here, and only from here.
#
# A build without OpenMP (meson option openmp=disabled, or auto on a compiler
# without it) gets the serial answers of the OpenMP specification for a
# program outside any parallel region: one thread, thread 0.  The compiler's
# _OPENMP macro decides, the same one that turns each prange into a parallel
# loop or a serial one, so the two cannot disagree.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #else
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_num_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_in_parallel(void) { return 0; }
    #endif
    """
    int omp_get_max_threads() nogil
    int omp_get_num_threads() nogil
    int omp_get_thread_num() nogil
    int omp_in_parallel() nogil
