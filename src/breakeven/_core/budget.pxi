# The core budget: the usable CPUs, taken by parallel calls and given back.
# (an include file of engine.pyx: see its docstring)

cdef inline int _take_cores(int want) noexcept nogil:
    """Take up to ``want`` cores for a parallel call: the number taken, or 0
    if fewer than 2 are free."""
    cdef int f = ld_int(&_free), got
    while True:
        got = want if want < f else f
        if got < 2:
            return 0
        if cas_int(&_free, &f, f - got):
            return got


cdef inline bint _hold_core() noexcept nogil:
    """One core for a parallel-sized call that runs serially, if one is free."""
    cdef int f = ld_int(&_free)
    while f > 0:
        if cas_int(&_free, &f, f - 1):
            max_int(&_peak, add_int(&_in_flight, 1) + 1)
            return True
    return False
