# A call: begin() = the rule's choice, then what it implies; the C API.
# (an include file of engine.pyx: see its docstring)

cdef int _begin(dispatch.Call *c, int kernel, int typenum,
                Py_ssize_t work) noexcept nogil:
    """dispatch.begin(): the rule's choice, then what it implies."""
    cdef Slot *s = _slot(kernel)
    cdef int d = _dtype_index(typenum), t
    cdef Entry *e
    cdef Choice ch
    c.flags = 0
    c.threads = 1
    if s == NULL or d < 0:
        c.kernel = -1
        return 1
    if not ld_acq_int(&_configured):
        _configure_now()
    e = _entry(s, d)
    c.kernel = kernel
    c.dtype = d
    c.work = work
    ch.tm = &_teams[s.team]
    t = _choose(e, work, M_CALL, 0, &ch)
    c.flags = ch.flags
    if e != NULL and ch.explore_step != X_NONE:
        _explore_commit(e, &ch)
    if t > 0:
        t = _commit(s, e, c, &ch, t)
    else:
        t = 1
    c.threads = t
    if e != NULL:
        _count(e, c, t, work)
    return t


cdef inline void _explore_commit(Entry *e, const Choice *ch) noexcept nogil:
    """An estimated call's exploration: the counter advanced, or a parallel
    exploration started (its second call is due) or completed."""
    if ch.explore_step == X_SECOND:
        e.explore_left -= 1
        return
    add_ll(&e.explore, 1)
    if ch.explore_step == X_START:
        e.explore_size = ch.explore_bucket
        e.explore_serial = ch.explore_serial
        # (serial: a second call, the first one's caches are parallel's)
        e.explore_left = 1 if ch.explore_serial else EXPLORE_RUN


cdef int _commit(const Slot *s, Entry *e, dispatch.Call *c, Choice *ch,
                 int t) noexcept nogil:
    """What a real call's choice implies, in one place: counted among the
    callers and held to its fair share (step 6), its cores taken from the
    section or the budget (step 7; too few free: waited for, where waiting
    pays), then run serially or in parallel."""
    cdef int got
    if ch.hold_back:
        st_ll(&ch.tm.held_back, ch.t_now)
    if t > 1 and not tl_section:
        c.flags |= F_CALLER
        t = _fair_share(t, add_int(_callers_at(), 1) + 1, ch)
    if t > 1:
        if tl_section:
            t = t if t < tl_section else tl_section
            c.flags |= F_SECTION
        else:
            got = _take_cores(t, ch.t_now)
            if got < 2 and not c.flags & F_FORCED:
                got = _wait_for_cores(e, t, c.work, ch.t_now)
            t = got if got > 1 else 1
    if ch.t_now - _last_active(ch.tm) > RENT_GAP:  # a new run of calls
        if ch.tm.run_calls > 0:
            _add(&ch.tm.run_len, ch.tm.run_calls)
        ch.tm.run_calls = 0
        ch.tm.rent = 0
    ch.tm.run_calls += 1
    if ch.corrected == 2:  # a call a measured wake-up sent serial
        if t < 2:
            ch.tm.rent += ch.serial_ns - (ch.parallel_ns - ch.wake_seen)
            ch.tm.credit += ch.serial_ns
        elif c.flags & F_EXPLORE:
            ch.tm.credit = 0
    if t < 2:
        _serially(c, ch)
        return 1
    if t == ch.threads and not c.flags & F_COUNT:
        c.flags |= F_WHOLE
    _in_parallel(s, e, c, ch, t)
    return t


cdef inline void _serially(dispatch.Call *c, const Choice *ch) noexcept nogil:
    """A call past its threshold that runs serially: it holds a core of the
    budget while it runs (even if none is free); a backed-off one is timed (its
    time paces the next probe).  Its start and its end (F_PAST) count as
    the last call past a threshold: a call that follows it closely is one
    of a loop, not a lone call, however long this one ran."""
    st_ll(&ch.tm.last_call, ch.t_now)
    c.flags |= F_PAST
    if not tl_section:
        c.flags |= F_HELD if _hold_core() else F_OVER
    if c.flags & F_BACKED_OFF:
        c.flags |= F_TIMED
        c.start = ch.t_now
    c.flags &= ~(F_PROBE | F_SECTION)


cdef inline void _in_parallel(const Slot *s, Entry *e, dispatch.Call *c,
                              const Choice *ch, int t) noexcept nogil:
    """A parallel call: its cores in flight, whether its time can be judged,
    the BLAS cap, and its start."""
    cdef long long since
    max_int(&_peak, add_int(&_in_flight, t) + t)
    # A call that may find the team asleep may pay its wake-up: a lone
    # call, but also the first parallel call after serial ones (the second
    # call of a loop whose first ran serially from the cold table, a probe
    # after backed-off calls).  The runtime may put its threads to sleep
    # well before the calibrated sleep time, when the wake-up was still too
    # small to count: a millisecond without a parallel region is enough.
    # Its time says nothing of contention.  So is a call wider than the part
    # of the team still awake (found by the rule when it read the hot table;
    # looked up here otherwise).
    if ch.lone or ch.t_now - ld_ll(&ch.tm.last_parallel) > (
            _sleep_after if 0 < _sleep_after < UNJUDGED_AFTER else UNJUDGED_AFTER) \
            or (_sleep_after > 0 and t > (
                ch.team_awake if ch.team_awake
                else _awake(ch.tm, ch.t_now, t, &since))):
        c.flags |= F_COLD
    # The team may have begun to doze: no measure of the parallel rate,
    # which the check compares as calls in a loop make it; nor right after
    # a wake-up, when a woken virtual CPU may not run yet (HOT_RUN).
    if ch.t_now - ld_ll(&ch.tm.last_parallel) > HOT_GAP:
        ch.tm.hot_run = 0
        c.flags |= F_NOT_HOT
    else:
        ch.tm.hot_run += 1
        if ch.tm.hot_run < HOT_RUN:
            c.flags |= F_NOT_HOT
    if not ld_int(&ch.tm.started):  # the team's first region here
        _team_starts(ch.tm)
    if s.uses_blas and not tl_section:
        _blas_cap()
        c.flags |= F_BLAS
    c.start = now()
    if not tl_section:  # when its cores should be free again, for a waiter
        _publish_end(c.start + <long long>_expected_ns(e, t, c.work))


cdef inline void _count(Entry *e, dispatch.Call *c, int t,
                        Py_ssize_t work) noexcept nogil:
    """The call's counters (stats()); a serial call is timed to measure its
    size (a call off the fast path whose size has fewer than EXPLORE_UNTIL
    timed or is not settled, and the serial choice of an exploration), else
    as a sample (one in SAMPLE_EVERY), and teaches the check its serial
    rate."""
    cdef long long n
    if work >= e.fast_min:
        _run_position(e, c, work, t)
    if t > 1:
        if c.flags & F_PROBE:
            add_ll(&e.n_probes, 1)
        add_ll(&e.n_parallel, 1)
        add_ll(&e.thread_sum, t)
        max_int(&e.most_threads, t)
    else:
        n = add_ll(&e.n_serial, 1)
        if c.flags & F_TIMED:
            pass  # (backed off: timed already)
        elif work >= e.fast_min and (
                c.flags & F_EXPLORE or e.ser[_bucket(work)].n < C_EXPLORE_UNTIL
                or not e.learned[_bucket(work)]):
            c.flags |= F_TIMED
            c.start = now()
        elif _sampled(n):  # (a sample of the calls timed for no purpose)
            c.flags |= F_TIMED | F_SAMPLE
            c.start = now()
    if c.flags & F_EXPLORE:
        add_ll(&e.n_explored, 1)


cdef inline bint _sampled(long long n) noexcept nogil:
    """Whether the n-th serial call is one of the sample (one in
    SAMPLE_EVERY): spread by a multiplicative hash of n, not every
    SAMPLE_EVERY-th call, which a loop whose sizes repeat with a period
    dividing it would sample at one size only."""
    return (<unsigned long long>n * 0x9E3779B97F4A7C15ULL) >> (64 - SAMPLE_BITS) == 0


cdef inline void _run_position(Entry *e, dispatch.Call *c,
                               Py_ssize_t work, int t) noexcept nogil:
    """Where the call falls in its run of calls of one size (F_NEW_SIZE: the
    first; F_RUN_START: among the first RUN_START of a run, where runs are
    longer than that; F_SWITCH: serial after a parallel call of its size,
    which finds the data in the caches of the cores parallel ran on, or
    parallel after a serial one, which finds it in one core's, unless
    F_FAR).
    (Kept without a lock: concurrent callers only blur the runs.)"""
    cdef int b = _bucket(work)
    if b == e.run_b and e.run_n > 0 and (t > 1) != e.run_wide and not (
            c.flags & F_FAR):
        c.flags |= F_SWITCH
    e.run_wide = t > 1
    if b != e.run_b:
        if e.run_n > 0:  # (the first call follows no other size)
            _add(&e.run_len, e.run_n)
            c.flags |= F_NEW_SIZE
        e.run_b = b
        e.run_n = 0
    if e.run_n < (1 << 30):
        e.run_n += 1
    if e.run_n <= C_RUN_START and e.run_len.n >= 2 and (
            e.run_len.mean > C_RUN_START + 1):
        c.flags |= F_RUN_START


cdef void _configure_now() noexcept nogil:
    """The first call of the process: load the profile (with the GIL)."""
    with gil:
        if not _configured and _load_hook is not None:
            try:
                _load_hook()
            except Exception:  # never fail a call: run without tables
                pass
        st_rel_int(&_configured, 1)


cdef dispatch.api_table _api
_api.version = 1
_api.size = sizeof(dispatch.api_table)
_api.begin = _begin
_api.end = _end
_api.usable_cpus = usable_count
_C_API = PyCapsule_New(<void *>&_api, b"breakeven._core._C_API", NULL)


cdef void _team_starts(Team *tm) noexcept nogil:
    """A team's first region in this process: its runtime reads
    KMP_INIT_AT_FORK about now (when it starts), which decides whether a
    forked child can run it."""
    if env_false(b"KMP_INIT_AT_FORK"):
        st_int(&tm.kmp_no_fork, 1)
    st_int(&tm.started, 1)


cdef inline bint _team_survives_fork(const Team *tm) noexcept nogil:
    return tm.fork_rule == FORK_UNLESS_KMP and not tm.kmp_no_fork \
        and not env_false(b"KMP_INIT_AT_FORK")


cdef void note_parallel() noexcept nogil:
    """An OpenMP region ran on breakeven's own team (a kernel called
    directly): after a fork, the child may have to stay serial."""
    if not ld_int(&_teams[0].started):
        _team_starts(&_teams[0])


cdef void _after_fork_in_child() noexcept nogil:
    """A forked child holds no core: its own budget is whole again, and in
    the host's it takes a slot of its own (or, if none is free, keeps its
    own budget).  Its teams have no threads: each is asleep, and one whose
    runtime's pool does not survive fork (libgomp's, which hangs at the
    child's first region; LLVM's and Intel's when KMP_INIT_AT_FORK is
    false) and that ran a region in the parent cannot run here at all: its
    kernels run serially (rule step 1).  Otherwise LLVM's and Intel's
    runtimes start a new pool in the child."""
    global _free, _in_flight, _peak, _blas_users, _blas_lock, _callers
    global _host, _mine, _mine_index, _mine_pid, _budget, forked_child
    cdef int i, k
    for i in range(MAX_TEAMS):
        if _teams[i].started and not _team_survives_fork(&_teams[i]):
            _teams[i].forked = 1
            forked_child = 1
        _teams[i].started = 0
        _teams[i].kmp_no_fork = 0
        _teams[i].last_parallel = _teams[i].last_call = -(1LL << 62)
        _teams[i].held_back = -(1LL << 62)
        for k in range(32):
            _teams[i].wide_n[k] = 0
    _free = _usable
    if _host != NULL:
        _mine_pid = getpid()
        i = host_claim(_host, _mine_pid, proc_start(_mine_pid, NULL))
        if i >= 0:
            _mine_index = i
            _mine = &_host.slots[i]
        else:
            _budget = &_free
            _host = NULL
            _mine = NULL
            _mine_index = -1
    _in_flight = 0
    _callers = 0
    _peak = 0
    _blas_users = 0
    _blas_lock = 0


register_atfork(_after_fork_in_child)
