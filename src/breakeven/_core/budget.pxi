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
        int lent
        long long busy_until
        long long lent_until
        int callers
    ctypedef struct be_host:
        int version
        int size
        int usable
        int n_slots
        int free
        int peak
        long long swept
        int running
        int top
        be_host_slot slots[1]
    int HOST_SLOTS "BE_HOST_SLOTS"
    int getpid "be_getpid"() noexcept nogil
    void sched_yield "be_yield"() noexcept nogil
    int host_here "be_host_supported"() noexcept nogil
    int host_size "be_host_size"() noexcept nogil
    long long proc_start "be_proc_start"(int pid, char *state) noexcept nogil
    int host_claim "be_host_claim"(be_host *h, int pid, long long start) noexcept nogil
    int host_sweep "be_host_sweep"(be_host *h, int self_pid, long long now,
                                   long long every) noexcept nogil
    void host_release "be_host_release"(be_host *h, int i, int pid) noexcept nogil
    int host_reclaim "be_host_reclaim"(be_host *h, int self_pid,
                                       long long now) noexcept nogil
    int host_active "be_host_active"(be_host *h, int self, long long now) noexcept nogil
    void host_init "be_host_init"(be_host *h, int usable) noexcept nogil
    const char *host_check "be_host_check"(be_host *h, long long size,
                                           int usable) noexcept nogil


# A call that finds fewer cores free than it wants sweeps the host's slots
# for processes that died holding some, at most this often, host-wide.
SWEEP_SECONDS = 0.1
cdef long long SWEEP_EVERY = <long long>(SWEEP_SECONDS * 1e9)

cdef int *_budget = &_free       # the free count: the process's or the host's
cdef be_host *_host = NULL       # the host's segment, if joined
cdef be_host_slot *_mine = NULL  # this process's slot in it
cdef int _mine_index = -1
cdef int _mine_pid = 0
# the process's own budget: its last parallel call's expected end (ns), and
# the waits for cores
cdef long long _busy_until = 0
cdef long long _n_waits = 0
cdef long long _wait_ns = 0


cdef inline void _held_more(int n) noexcept nogil:
    """n cores taken (n < 0: given back), in the process's host slot."""
    cdef be_host_slot *m = _mine
    if m != NULL:
        max_int(&m.peak, add_int(&m.held, n) + n)
        if n > 0:
            add_ll(&m.calls, 1)


cdef inline void _running(int n) noexcept nogil:
    """A parallel call's n threads started (n < 0: ended), host-wide."""
    cdef be_host *h = _host
    if h != NULL:
        max_int(&h.peak, add_int(&h.running, n) + n)


cdef inline bint _swept(long long t_now) noexcept nogil:
    """The budget looked short: take back the cores of other processes'
    teams gone to sleep, and give back those of dead processes (at most
    every SWEEP_EVERY ns host-wide); whether any came back."""
    if _mine == NULL:
        return False
    add_ll(&_mine.short_, 1)
    return (host_reclaim(_host, _mine_pid, t_now)
            + host_sweep(_host, _mine_pid, t_now, SWEEP_EVERY)) > 0


cdef inline int _take_lent(int want) noexcept nogil:
    """Up to ``want`` of the cores this process's idle team spins on (host
    budget): the number taken."""
    cdef be_host_slot *m = _mine
    cdef int lent, got
    if m == NULL:
        return 0
    lent = ld_int(&m.lent)
    while lent > 0:
        got = want if want < lent else lent
        if cas_int(&m.lent, &lent, lent - got):
            return got
    return 0


cdef inline int _host_share(int want, long long t_now) noexcept nogil:
    """In the host's budget, a call takes at most its process's fair share
    of the usable CPUs among the processes using cores now (itself
    included): what step 6 does among the callers of one process."""
    cdef int others, share
    if _host == NULL:
        return want
    others = host_active(_host, _mine_index, t_now)
    if others == 0:
        return want
    share = _host.usable // (others + 1)
    return want if want < share else share


cdef inline void _lend_back(int keep) noexcept nogil:
    """The cores lent to this process's idle team beyond ``keep`` go back
    to the host's budget (a call held to its share leaves them to the
    other processes)."""
    cdef be_host_slot *m = _mine
    cdef int lent
    if m == NULL:
        return
    lent = ld_int(&m.lent)
    while lent > keep:
        if cas_int(&m.lent, &lent, keep):
            add_int(_budget, lent - keep)
            return


cdef inline int _take_cores(int want, long long t_now) noexcept nogil:
    """Take up to ``want`` cores for a parallel call: the number taken, or 0
    if fewer than 2 are free.  In the host's budget, at most its process's
    share among the processes using cores, and the cores this process's
    idle team spins on first.  ``t_now``: the call's clock reading."""
    cdef int share = _host_share(want, t_now) if _host != NULL else want
    cdef int mine, rest, f, got
    cdef bint swept = False
    if share < want:  # other processes use cores: are they all alive?
        swept = True
        if _swept(t_now):
            share = _host_share(want, t_now)
    if share < want:
        _lend_back(share)
        want = share
    if want < 2:
        return 0
    mine = _take_lent(want)
    rest = want - mine
    f = ld_int(_budget)
    while True:
        got = rest if rest < f else f
        if got < 0:
            got = 0
        if got < rest and not swept:
            swept = True
            if _swept(t_now):
                f = ld_int(_budget)
                continue
        if mine + got < 2:
            if mine:
                add_int(&_mine.lent, mine)
            return 0
        if got == 0 or cas_int(_budget, &f, f - got):
            _held_more(mine + got)
            _running(mine + got)
            return mine + got


cdef inline bint _hold_core() noexcept nogil:
    """The core a parallel-sized call that runs serially occupies: taken
    even if none is free (the count goes below zero), so that no parallel
    call starts beside it on the core it runs on.  (A call below its
    threshold is too short to count, and never touches the budget.)
    Whether a core was free for it (then it counts among the threads in
    flight, which never exceed the usable CPUs)."""
    cdef bint free = _take_lent(1) > 0 or add_int(_budget, -1) > 0
    _held_more(1)
    if free:
        max_int(&_peak, add_int(&_in_flight, 1) + 1)
    return free


cdef inline int _take_section(int want) noexcept nogil:
    """A section's cores: up to ``want``, and at least the calling thread's
    own core, even if none is free."""
    cdef int f = ld_int(_budget), got
    cdef bint swept = False
    while True:
        got = want if want < f else f
        if got < want and not swept:
            swept = True
            if _swept(now()):
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


cdef inline void _give_team_cores(int n, long long t_end) noexcept nogil:
    """A parallel call's cores at its end: in the host's budget, lent to
    the process's team, which spins on them until it sleeps (the
    calibrated sleep time); in its own, back in the budget."""
    cdef be_host_slot *m = _mine
    _running(-n)
    if m == NULL or _sleep_after <= 0:
        _give_cores(n)
        return
    st_ll(&m.lent_until, t_end + _sleep_after)
    _held_more(-n)
    add_int(&m.lent, n)


cdef inline int *_callers_at() noexcept nogil:
    """The count of calls in progress that want several threads (step 6):
    the process's, kept in its host slot once joined."""
    cdef be_host_slot *m = _mine
    return &m.callers if m != NULL else &_callers


cdef inline int _free_now() noexcept nogil:
    """The cores a call of this process could take now."""
    cdef be_host_slot *m = _mine
    return ld_int(_budget) + (ld_int(&m.lent) if m != NULL else 0)


cdef void _host_leave() noexcept nogil:
    """The process's own budget again, with the cores its calls in progress
    hold; its slot in the host's is free."""
    global _host, _mine, _mine_index, _budget, _free
    cdef be_host *h = _host
    cdef int i = _mine_index
    if h == NULL:
        return
    _free = _usable - ld_int(&_mine.held)  # (its lent cores: free again)
    add_int(&_callers, ld_int(&_mine.callers))
    _budget = &_free
    _host = NULL
    _mine = NULL
    _mine_index = -1
    host_release(h, i, _mine_pid)


# ---- waiting for cores --------------------------------------------------

cdef inline double _expected_ns(Entry *e, int t, Py_ssize_t work) noexcept nogil:
    """What a call of ``work`` on ``t`` threads is expected to take (ns):
    the best rate its kernel has shown at that count and size (the
    contention check's), or 0 if it has shown none."""
    cdef int i, b = _bucket(work)
    if e == NULL or t < 2:
        return 0
    for i in range(MAX_TC):
        if e.rate_threads[i] == t:
            return e.best[i][b] * work * 1e9
    return 0


cdef inline void _publish_end(long long end) noexcept nogil:
    """A parallel call started that should end at ``end`` (ns)."""
    if _mine != NULL:
        st_ll(&_mine.busy_until, end)
    else:
        st_ll(&_busy_until, end)


cdef long long _soonest_end(long long t_now) noexcept nogil:
    """When the first parallel call in flight should end (ns; an overdue one:
    now), -1 if none is known."""
    cdef be_host *h = _host
    cdef long long soonest = -1, end
    cdef int i
    if h == NULL:
        if ld_int(&_in_flight) > 0:
            end = ld_ll(&_busy_until)
            soonest = end if end > t_now else t_now
        return soonest
    for i in range(ld_int(&h.top)):
        if ld_acq_int(&h.slots[i].pid) <= 0 or ld_int(&h.slots[i].held) < 2:
            continue
        end = ld_ll(&h.slots[i].busy_until)
        end = end if end > t_now else t_now
        if soonest < 0 or end < soonest:
            soonest = end
    return soonest


cdef long long _wait_deadline(Entry *e, int want, Py_ssize_t work,
                              long long t_now, long long *soonest) noexcept nogil:
    """Whether a call past its threshold that found fewer than 2 cores free
    should wait for them: until when (ns), or -1 (run serially); in
    ``soonest``, when the first call in flight should end.

    Waiting pays when the wait (until the first call in flight should end)
    plus the call's parallel time ``p`` is below its serial time, taken as
    ``p * want * EFFICIENCY`` (the estimate's model): the call waits at most
    ``p * (want * EFFICIENCY - 1)``.  It does not wait without a measured
    parallel time for its size, nor with the simulated clock."""
    cdef double p = _expected_ns(e, want, work)
    cdef double most = p * (want * C_EFFICIENCY - 1)
    soonest[0] = -1
    if p <= 0 or most <= 0 or ld_int(&sim_clock):
        return -1
    soonest[0] = _soonest_end(t_now)
    if soonest[0] < 0 or soonest[0] - t_now > most:
        return -1
    return t_now + <long long>most


cdef extern from "Python.h":
    ctypedef struct PyThreadState:
        pass
    int PyGILState_Check() nogil
    PyThreadState *PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState *state) nogil


cdef int _wait_for_cores(Entry *e, int want, Py_ssize_t work,
                         long long t_now) noexcept nogil:
    """A call past its threshold that found fewer than 2 cores free: wait
    for them if that pays (:func:`_wait_deadline`), and take them; the
    cores taken (0: run serially).  A caller holding the GIL (the drop-ins
    call begin() with it) releases it while it waits: the process's other
    threads, whose calls may hold the cores it waits for, run meanwhile."""
    cdef long long soonest, t
    cdef long long deadline = _wait_deadline(e, want, work, t_now, &soonest)
    cdef int got
    cdef PyThreadState *state = NULL
    if deadline < 0:
        return 0
    if PyGILState_Check():
        state = PyEval_SaveThread()
    while True:
        sched_yield()  # the core to the calls it waits for
        t = now()
        got = _take_cores(want, t)
        if got >= 2 or t > deadline:
            break
    if state != NULL:
        PyEval_RestoreThread(state)
    if _mine != NULL:
        add_ll(&_mine.waits, 1)
        add_ll(&_mine.wait_ns, t - t_now)
    else:
        add_ll(&_n_waits, 1)
        add_ll(&_wait_ns, t - t_now)
    if e != NULL:
        add_ll(&e.n_waits, 1)
        add_ll(&e.ns_waited, t - t_now)
    return got
