# The core budget: the usable CPUs, taken by parallel calls and given back.
# It is the process's own, or, once the process has joined one
# (breakeven/_core/host.py), the host's: then `_budget` points at the free
# count in shared memory that every process of the user on the same CPUs
# takes from, and the cores taken are also added to the process's slot
# there (host.h), so that they come back if the process dies.
# (an include file of engine.pyx: see its docstring)

cdef extern from "host.h":
    ctypedef struct be_host_slot:
        int pid
        int held
        long long start
        long long calls
        long long short_
        long long waits
        long long wait_ns
        int peak
    ctypedef struct be_host:
        int version
        int size
        int usable
        int n_slots
        int free
        int peak
        long long swept
        be_host_slot slots[1]
    int HOST_SLOTS "BE_HOST_SLOTS"
    int host_here "be_host_supported"() noexcept nogil
    int host_size "be_host_size"() noexcept nogil
    long long proc_start "be_proc_start"(int pid, char *state) noexcept nogil
    int host_claim "be_host_claim"(be_host *h, int pid, long long start) noexcept nogil
    int host_sweep "be_host_sweep"(be_host *h, int self_pid, long long now,
                                   long long every) noexcept nogil
    void host_release "be_host_release"(be_host *h, int i, int pid) noexcept nogil
    void host_init "be_host_init"(be_host *h, int usable) noexcept nogil
    const char *host_check "be_host_check"(be_host *h, long long size,
                                           int usable) noexcept nogil

cdef extern from "<unistd.h>" nogil:
    int getpid()

# A call that finds fewer cores free than it wants sweeps the host's slots
# for processes that died holding some, at most this often (ns), host-wide.
cdef long long SWEEP_EVERY = 100000000

cdef int *_budget = &_free       # the free count: the process's or the host's
cdef be_host *_host = NULL       # the host's segment, if joined
cdef be_host_slot *_mine = NULL  # this process's slot in it
cdef int _mine_index = -1
cdef int _mine_pid = 0


cdef inline void _held_more(int n) noexcept nogil:
    """n cores taken (n < 0: given back), in the process's host slot."""
    cdef be_host_slot *m = _mine
    cdef be_host *h = _host
    if m != NULL:
        max_int(&m.peak, add_int(&m.held, n) + n)
        if n > 0:
            add_ll(&m.calls, 1)
            max_int(&h.peak, h.usable - ld_int(&h.free))


cdef inline bint _swept() noexcept nogil:
    """The budget looked short: give back the cores of dead processes (at
    most every SWEEP_EVERY ns host-wide); whether any came back."""
    if _mine == NULL:
        return False
    add_ll(&_mine.short_, 1)
    return host_sweep(_host, _mine_pid, now(), SWEEP_EVERY) > 0


cdef inline int _take_cores(int want) noexcept nogil:
    """Take up to ``want`` cores for a parallel call: the number taken, or 0
    if fewer than 2 are free."""
    cdef int f = ld_int(_budget), got
    cdef bint swept = False
    while True:
        got = want if want < f else f
        if got < want and not swept:
            swept = True
            if _swept():
                f = ld_int(_budget)
                continue
        if got < 2:
            return 0
        if cas_int(_budget, &f, f - got):
            _held_more(got)
            return got


cdef inline bint _hold_core() noexcept nogil:
    """One core for a parallel-sized call that runs serially, if one is free."""
    cdef int f = ld_int(_budget)
    while f > 0:
        if cas_int(_budget, &f, f - 1):
            _held_more(1)
            max_int(&_peak, add_int(&_in_flight, 1) + 1)
            return True
    return False


cdef inline int _take_section(int want) noexcept nogil:
    """A section's cores: up to ``want``, and at least the calling thread's
    own core, even if none is free."""
    cdef int f = ld_int(_budget), got
    cdef bint swept = False
    while True:
        got = want if want < f else f
        if got < want and not swept:
            swept = True
            if _swept():
                f = ld_int(_budget)
                continue
        if got < 1:
            got = 1
        if cas_int(_budget, &f, f - got):
            _held_more(got)
            return got


cdef inline void _give_cores(int n) noexcept nogil:
    """Cores back to the budget (out of the slot first: the slot never
    claims more than was taken)."""
    _held_more(-n)
    add_int(_budget, n)


cdef inline int _free_now() noexcept nogil:
    return ld_int(_budget)


cdef void _host_leave() noexcept nogil:
    """The process's own budget again, with the cores its calls in progress
    hold; its slot in the host's is free."""
    global _host, _mine, _mine_index, _budget, _free
    cdef be_host *h = _host
    cdef int i = _mine_index
    if h == NULL:
        return
    _free = _usable - ld_int(&_mine.held)
    _budget = &_free
    _host = NULL
    _mine = NULL
    _mine_index = -1
    host_release(h, i, _mine_pid)
