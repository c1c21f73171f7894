# Every OpenMP symbol the kernels use comes from here, and only from here.
#
# The build requires OpenMP (meson.build), so there is no serial fallback to
# guard: a compiler without OpenMP must fail the build rather than compile
# each prange into a plain serial loop.

cdef extern from "<omp.h>" nogil:
    int omp_get_max_threads()
    int omp_get_num_threads()
    int omp_get_thread_num()
    int omp_in_parallel()
