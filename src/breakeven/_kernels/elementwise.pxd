# Non-fused entry points for the dispatch fast path: the parallel kernels
# themselves (n_threads already validated and clamped by the caller).
cdef void axpy_parallel_d(double a, const double *x, double *y, Py_ssize_t n,
                          int nt) noexcept nogil
cdef void axpy_parallel_f(float a, const float *x, float *y, Py_ssize_t n,
                          int nt) noexcept nogil
# exp: returns whether a finite x overflowed to inf
cdef int exp_parallel_d(const double *x, double *out, Py_ssize_t n,
                        int nt) noexcept nogil
cdef int exp_parallel_f(const float *x, float *out, Py_ssize_t n,
                        int nt) noexcept nogil
