# Non-fused entry points for other Cython modules (the dispatch fast path):
# exactly the serial kernels' arithmetic, so the bits are the same.
cdef double sum_serial_d(const double *x, Py_ssize_t n) noexcept nogil
cdef float sum_serial_f(const float *x, Py_ssize_t n) noexcept nogil
cdef double dot_serial_d(const double *x, const double *y, Py_ssize_t n) noexcept nogil
cdef float dot_serial_f(const float *x, const float *y, Py_ssize_t n) noexcept nogil
cdef int sum_parallel_d(const double *x, Py_ssize_t n, int nt,
                        double *out) except -1
cdef int sum_parallel_f(const float *x, Py_ssize_t n, int nt,
                        float *out) except -1
cdef int dot_parallel_d(const double *x, const double *y, Py_ssize_t n, int nt,
                        double *out) except -1
cdef int dot_parallel_f(const float *x, const float *y, Py_ssize_t n, int nt,
                        float *out) except -1
