# The two variants of one kernel: out[i] = 1 / (1 + exp(-x[i])).
# Both release the GIL; the parallel one takes the thread count last.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp


def logistic_serial(const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = 1 / (1 + exp(-x[i]))


def logistic_parallel(const floating[::1] x, floating[::1] out, int n_threads):
    cdef Py_ssize_t i
    with nogil:
        for i in prange(x.shape[0], num_threads=n_threads, schedule="static"):
            out[i] = 1 / (1 + exp(-x[i]))
