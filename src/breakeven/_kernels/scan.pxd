# Non-fused entry points for the dispatch fast path: the serial scan itself.
cdef void cumsum_serial_d(const double *x, double *out, Py_ssize_t n) noexcept nogil
cdef void cumsum_serial_f(const float *x, float *out, Py_ssize_t n) noexcept nogil
cdef int cumsum_parallel_d(const double *x, double *out, Py_ssize_t n,
                           int nt) except -1
cdef int cumsum_parallel_f(const float *x, float *out, Py_ssize_t n,
                           int nt) except -1
