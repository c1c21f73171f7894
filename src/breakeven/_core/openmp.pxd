cdef int check_threads(Py_ssize_t n_threads) except -1
