cimport numpy as cnp

cdef enum:
    # Smallest share of the input a thread gets: an input of at most this
    # many elements is counted on one thread, whatever the thread count.
    MIN_CHUNK = 4096


# For the dispatch fast path: counts and edges of a C-contiguous, aligned,
# native float32/float64 array (any shape, taken flat), bins >= 1 and a
# finite range lo < hi, all checked by the caller; nt threads (1: serial);
# in_dtype: the edges computed in x's dtype (a range taken from the data).
cdef tuple count(cnp.ndarray x, Py_ssize_t bins, double lo, double hi, int nt,
                 bint in_dtype)
