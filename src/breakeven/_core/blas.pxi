# BLAS, held at one thread while a kernel calling it runs in parallel.
# (an include file of engine.pyx: see its docstring)

ctypedef int (*blas_get_fn)() noexcept nogil
ctypedef void (*blas_set_fn)(int) noexcept nogil

cdef blas_get_fn _blas_get[MAX_BLAS]
cdef blas_set_fn _blas_set[MAX_BLAS]
cdef int _blas_saved[MAX_BLAS]
cdef int _n_blas = -1       # -1: not looked up yet
cdef int _blas_users = 0    # calls and sections holding the cap
cdef int _blas_lock = 0


cdef void _find_blas() noexcept nogil:
    """Ask the Python side for the BLAS thread setters, once."""
    if ld_acq_int(&_n_blas) >= 0:
        return
    with gil:
        if _n_blas < 0:
            try:
                set_blas(_blas_hook() if _blas_hook is not None else [])
            except Exception:  # no BLAS we can cap: nothing to cap
                set_blas([])


def set_blas(pairs):
    """The BLAS libraries to cap, as ``(get_num_threads, set_num_threads)``
    C function addresses (functions that need no GIL)."""
    global _n_blas
    cdef Py_ssize_t i
    pairs = list(pairs)[:MAX_BLAS]
    lock(&_blas_lock)
    try:
        if _blas_users:
            raise RuntimeError("BLAS is capped now: set the libraries later")
        for i, (get, set_) in enumerate(pairs):
            _blas_get[i] = <blas_get_fn><size_t>get
            _blas_set[i] = <blas_set_fn><size_t>set_
        st_rel_int(&_n_blas, len(pairs))
    finally:
        unlock(&_blas_lock)


cdef void _blas_cap() noexcept nogil:
    global _blas_users
    cdef int i
    _find_blas()
    lock(&_blas_lock)
    if _blas_users == 0:
        for i in range(_n_blas):
            _blas_saved[i] = _blas_get[i]()
            if _blas_saved[i] != 1:
                _blas_set[i](1)
    _blas_users += 1
    unlock(&_blas_lock)


cdef void _blas_restore() noexcept nogil:
    global _blas_users
    cdef int i
    lock(&_blas_lock)
    _blas_users -= 1
    if _blas_users == 0:
        for i in range(_n_blas):
            if _blas_saved[i] != 1:
                _blas_set[i](_blas_saved[i])
    unlock(&_blas_lock)
