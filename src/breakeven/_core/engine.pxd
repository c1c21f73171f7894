# For breakeven's kernel modules: an OpenMP region ran outside dispatch (a
# kernel's parallel variant called directly), so a forked child must stay
# serial.
cdef void note_parallel() noexcept nogil
