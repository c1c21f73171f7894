# For breakeven's kernel modules: an OpenMP region ran outside dispatch (a
# kernel's parallel variant called directly), so a forked child must stay
# serial.
cdef void note_parallel() noexcept nogil
# The usable CPUs the core clamps every call to (one count for the package).
cdef int usable_count() noexcept nogil
