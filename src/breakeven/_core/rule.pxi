# The rule: how many threads a call gets, as a choice without side effects.
# (an include file of engine.pyx: see its docstring)
#
# _choose() runs the rule's steps in order (the module docstring lists
# them) and fills a Choice: the threads, the flags end() needs, and why,
# in fields that explain() turns into words.  It changes nothing: a real
# call's share of the cores, the cores themselves, the BLAS cap and the
# clocks are applied after it, in one place (_commit, calls.pxi), and a dry
# run (decide(), explain()) is the same choice without the commit.

# what decided (Choice.table)
cdef enum:
    T_NONE = 0      # no table for this kernel and dtype
    T_HOT = 1
    T_COLD = 2
    T_FORCED = 3    # threads(n, exact=True)
    T_FORKED = 4
    T_ESTIMATE = 5  # no table: the model, from the kernel's serial rate
    T_LEARNED = 6   # no table: both choices measured at this size

# mode of _choose
cdef enum:
    M_CALL = 0     # a real call: its share and cores are taken by _commit
    M_DRY = 1      # what a call now would get
    M_HOT = 2      # ... as a call in a loop (the team awake)
    M_IDLE = 3     # ... as a lone call after `idle` ns

# what an estimated call's exploration leaves to _commit (Choice.explore_step)
cdef enum:
    X_NONE = 0
    X_COUNTED = 1  # a call that could explore: the explore counter advances
    X_START = 2    # ... and starts an exploration of calls in a row
    X_SECOND = 3   # a later call of that exploration


ctypedef struct Choice:
    # the kernel's OpenMP team (set by the caller of _choose)
    Team *tm
    # what _commit and end() need (set by every _choose)
    int threads          # what the rule gives (a real call: before its share)
    int flags            # F_* for end(): F_FORCED, F_PROBE, F_BACKED_OFF, F_EXPLORE
    bint lone            # judged as a lone call (the team asleep)
    long long t_now      # ns, when the call was decided (0: no clock read)
    int team_awake       # the awake part of the team, if looked up (0: not)
    bint hold_back       # held to the awake part: later calls in a loop wake the rest
    int explore_step     # X_* (set for a kernel with an estimate only)
    int explore_bucket
    # why, for explain() (filled as the steps run; a dry run starts from
    # zero_choice() and threshold INFINITY)
    int table           # T_*
    int gap             # the cold table's index
    long long idle      # ns since the last call past a threshold
    double threshold    # the table's first parallel work (INFINITY: never)
    int table_threads   # what the table gave
    int cap             # threads() cap that lowered it (0: none)
    int backoff         # backed off to this many (0: not)
    bint probe
    int limit           # min(usable, omp_get_max_threads()) if it lowered it
    int max_threads     # omp_get_max_threads() seen
    int pool_limit      # threadpoolctl's limit (0: none)
    bint nested         # inside an OpenMP region
    int section         # cores of the caller's open section (0: none)
    int free            # cores free in the budget
    bint budget         # the budget lowered it
    bint held           # would hold a core while running serially
    bint explore        # the other choice, to measure it
    bint explore_serial  # ... serial (its exploration: two calls in a row)
    int corrected       # the calls corrected the table: 1 hot, 2 a lone call's
    double wake_seen    # ... the wake-up (ns) the calls measured
    double wake_assumed  # ... and the one the table assumed
    double serial_ns    # the estimate's predicted serial time (0: none)
    double parallel_ns  # ... and parallel time
    int share           # lowered to this fair share of the CPUs (0: not)
    int callers         # ... among this many callers
    int awake           # held to the awake part of the team, this wide (0: not)
    long long wait      # would wait this long (ns) for cores to be free (-1: not)
    long long wait_most  # ... at most this long


cdef extern from "runtime.h":
    void zero_choice "be_zero"(Choice *c) noexcept nogil


cdef inline int _bits(int t) noexcept nogil:
    cdef int k = 0
    while t > 1 and k < 31:
        t >>= 1
        k += 1
    return k


cdef inline int _awake(Team *tm, long long t_now, int want,
                       long long *since) noexcept nogil:
    """The threads of the team still awake (the widest parallel call that
    ended within the sleep time; 1 if none), and in ``since`` when a call of
    at least ``want`` threads last ended."""
    cdef int k, n, awake = 1
    cdef long long end
    since[0] = -(1LL << 62)
    for k in range(1, _bits(_usable) + 2):
        n = ld_int(&tm.wide_n[k])
        if n < 2:
            continue
        end = ld_ll(&tm.wide_end[k])
        if t_now - end <= _sleep_after and n > awake:
            awake = n
        if n >= want and end > since[0]:
            since[0] = end
    return awake


cdef inline int _lookup(const Steps *s, Py_ssize_t work) noexcept nogil:
    cdef int t = 1, i, n = s.n
    if n > MAX_STEPS:
        n = MAX_STEPS
    for i in range(n):
        if work < s.work[i]:
            break
        t = s.threads[i]
    return t


cdef inline double _first_parallel(const Steps *s) noexcept nogil:
    cdef int i
    for i in range(s.n if s.n <= MAX_STEPS else MAX_STEPS):
        if s.threads[i] > 1:
            return <double>s.work[i]
    return INFINITY


cdef inline int _gap_index(const Entry *e, long long idle) noexcept nogil:
    """The cold table for a team idle this long: the longest measured idle
    time not longer than it."""
    cdef int i, g = 0
    for i in range(1, e.n_gaps if e.n_gaps <= MAX_GAPS else MAX_GAPS):
        if idle >= e.gap[i]:
            g = i
    return g


cdef inline long long _idle_now(int mode, long long idle, Choice *ch) noexcept nogil:
    """Step 3's clock: how long the team has been idle, and (``ch.lone``)
    whether the call is a lone one: no call past a threshold within the
    team's sleep time, and no section open.  It starts the fields of a
    call past its threshold (the fast path below it leaves them alone)."""
    ch.t_now = now() if mode == M_CALL or mode == M_DRY else 0
    ch.lone = ch.hold_back = False
    ch.team_awake = 0
    if tl_section or _sleep_after <= 0 or mode == M_HOT:
        return 0
    if mode != M_IDLE:
        idle = ld_ll(&ch.tm.last_parallel)
        if ld_ll(&ch.tm.last_call) > idle:
            idle = ld_ll(&ch.tm.last_call)
        idle = ch.t_now - idle
    ch.lone = idle > _sleep_after
    return idle


cdef inline int _partly_awake(const Entry *e, Py_ssize_t work, int t, int mode,
                              Choice *ch) noexcept nogil:
    """Step 3, a call in a loop: if only part of the team is awake (a whole
    team asleep is a lone call's case), the cold table of the time since a
    team this wide last ran says whether waking the rest pays; else the
    awake ones run it."""
    cdef long long since
    cdef int g, cold
    if (e.n_gaps == 0 or _sleep_after <= 0 or tl_section or mode == M_HOT
            or ch.t_now - ld_ll(&ch.tm.held_back) <= _sleep_after):
        return t
    ch.team_awake = _awake(ch.tm, ch.t_now, t, &since)
    if not 1 < ch.team_awake < t:
        return t
    g = _gap_index(e, ch.t_now - since)
    cold = _lookup(&e.cold[g], work)
    if cold >= t:
        return t
    ch.gap = g
    ch.hold_back = True
    ch.awake = ch.team_awake
    return cold if cold > ch.team_awake else ch.team_awake


cdef int _from_estimate(Entry *e, Py_ssize_t work, int mode, long long idle,
                        Choice *ch) noexcept nogil:
    """Step 3 for a kernel without a table: the estimate as a call in a
    loop (a serial decision needs no clock), then with the team's wake-up
    if it is idle (a lone call: the profile's or the one measured, the
    more; and no exploration)."""
    cdef int t, full = _full_count()
    t = _estimated(e, work, full, ch, mode == M_CALL)
    if t < 2:
        return 0
    idle = _idle_now(mode, idle, ch)
    if ch.lone:
        ch.flags &= ~F_EXPLORE
        ch.explore = False
        if ch.explore_step != X_NONE:
            ch.explore_step = X_COUNTED
        ch.idle = idle
        ch.table = T_ESTIMATE
    t = _wake_checked(e, work, t, _wake_ns(idle) if ch.lone else 0, False,
                      _team_idle(mode, idle, ch), mode, ch)
    # Serial for the wake-up alone, the call is still past its threshold
    # (1, not 0): it counts as a call of a loop, so that the next one, if
    # it comes within the sleep time, finds the team's wake-up paid for by
    # the loop's calls (see _wake_checked).
    return t if t > 1 else 1


cdef inline int _from_table(Entry *e, Py_ssize_t work, int mode, long long idle,
                            Choice *ch) noexcept nogil:
    """Step 3: the threads the kernel's hot table gives, or a lone call's
    cold table, each as the calls checked it; or its estimate; 0 (serial,
    and not past a threshold) with no table, below the threshold or when
    the estimate says serial.  (Below the fast path's bound, _choose has
    returned already.)"""
    cdef int t
    if e == NULL or not (e.has_table or e.estimate):
        return 0
    if not e.has_table:
        return _from_estimate(e, work, mode, idle, ch)
    ch.table = T_HOT
    ch.threshold = e.hot_min
    ch.explore_step = X_NONE
    idle = _idle_now(mode, idle, ch)
    if ch.lone and e.n_gaps > 0:
        ch.idle = idle
        ch.gap = _gap_index(e, idle)
        ch.table = T_COLD
        ch.threshold = _first_parallel(&e.cold[ch.gap])
        return _wake_checked(e, work, _lookup(&e.cold[ch.gap], work),
                             _wake_ns(idle), True, _team_idle(mode, idle, ch),
                             mode, ch)
    ch.lone = False
    t = _hot_checked(e, work, _lookup(&e.hot, work), mode, ch)
    if t == 0:
        return 0
    if t > 1:
        t = _partly_awake(e, work, t, mode, ch)
    if t > 1 and not ch.hold_back:
        t = _wake_checked(e, work, t, 0, True, _team_idle(mode, idle, ch), mode, ch)
    return t


cdef int _hot_checked(Entry *e, Py_ssize_t work, int t, int mode,
                      Choice *ch) noexcept nogil:
    """The hot table's ``t`` as the calls checked it: the other choice where
    the calls settled it (CONFIDENT), else the table's; and now and then
    the other choice, to measure it (as the estimate explores).  0 for a
    serial call below the table's threshold."""
    cdef int b = _bucket(work), full = _full_count()
    cdef signed char settled = _settled(e, b)
    cdef double ts
    ch.table_threads = t
    if settled == 1 and t > 1:
        t = 1
        ch.corrected = 1
    elif settled == 2 and t < 2 and full > 1:
        t = full
        ch.corrected = 1
    if ch.corrected:
        ch.serial_ns = e.ser[b].mean * work * 1e9
        ch.parallel_ns = e.par[b].mean * work * 1e9
    elif mode == M_CALL and full > 1:
        ts = _serial_rate(e, b) * work * 1e9
        t = _explored(e, b, t if t > 1 else 1, full, ts, ch)
    if t < 2 and work < e.hot_min and not ch.corrected:
        return 0
    return t


cdef inline long long _team_idle(int mode, long long idle,
                                 const Choice *ch) noexcept nogil:
    """How long the team has been without a parallel call (ns): given, for
    a dry run as a lone call; 0 for one as a call in a loop."""
    if mode == M_IDLE:
        return idle
    if ch.t_now == 0 or tl_section:
        return 0
    return ch.t_now - ld_ll(&ch.tm.last_parallel)


cdef int _wake_checked(Entry *e, Py_ssize_t work, int t, double assumed,
                       bint baked, long long idle, int mode,
                       Choice *ch) noexcept nogil:
    """A parallel ``t`` for a team idle ``idle`` ns, checked against the
    wake-up the calls measured after such an idle time: a table whose
    choice already paid ``assumed`` for it (``baked``: a cold table; the hot
    one assumes none) is corrected where the measured one is more; the
    estimate takes the more of the two.  The call then runs in parallel
    only if a hot call's time plus the wake-up beats serial by the margin.

    A wake-up serves the calls of the run after it (calls RENT_GAP apart at
    most): its cost is shared by the calls the run is expected to have
    left, by the mean length of the team's runs before (one, until two
    runs ended).  And calls of a run that a wake-up sent serial add up what
    serial lost them (the rent); once it would have paid for the wake-up,
    the next one wakes the team, and the rest of the run is hot: however
    long a run turns out to be, at most about twice the better of the two
    choices (renting skis until the rent would have bought them).  A call
    so sent serial runs in parallel now and then all the same
    (LONE_PACE), to measure the wake-up anew."""
    cdef int b
    cdef double w, hot, ts, owed, left = 1
    cdef bint in_run
    if t < 2 or tl_section:
        return t
    w = _wake_measured(ch.tm, idle)
    if baked and w <= assumed:
        return t
    if w < assumed:
        w = assumed
    if w <= 0:
        return t
    b = _bucket(work)
    hot = _parallel_ns(e, b, t, work, True)
    ts = _serial_rate(e, b) * work * 1e9
    if ts <= 0 and hot > _team_hot_ns:
        ts = (hot - _team_hot_ns) * t * C_EFFICIENCY  # the model, backwards
    if ts <= 0 or hot <= 0:
        return t
    # (a dry run as a lone call: as long since the last call as the team idle)
    in_run = (ch.t_now - _last_active(ch.tm) if ch.t_now else idle) <= RENT_GAP
    owed = w - ch.tm.rent if in_run else w
    if ch.tm.run_len.n >= 2:
        left = ch.tm.run_len.mean - (ch.tm.run_calls if in_run else 0)
        left = left if left > 1 else 1
    ch.serial_ns, ch.parallel_ns, ch.wake_seen = ts, hot + w, w
    ch.wake_assumed = assumed
    if (hot + (owed if owed > 0 else 0) / left) * (1 + C_MARGIN) < ts:
        return t
    ch.corrected = 2
    ch.table_threads = t
    if mode == M_CALL and ch.tm.credit >= C_LONE_PACE * (hot + w - ts):
        ch.flags |= F_EXPLORE
        ch.explore = True
        return t  # measured again (and the credit spent: _commit)
    return 1


cdef inline int _capped(Entry *e, Py_ssize_t work, int t,
                        Choice *ch) noexcept nogil:
    """Step 4: a threads() cap; a kernel backed off for contention gets its
    reduced count, or, when a probe is due, its full count: once the
    backed-off calls have taken the spacing in force times what this call
    would cost if it ran as slowly as the last slow call (its rate, at this
    call's work: a slow call of another size paces no probe of this one)."""
    if not ch.corrected:  # (else the table's own choice is kept, for explain)
        ch.table_threads = t
    if tl_cap and t > tl_cap:
        t = ch.cap = tl_cap
    if ld_int(&e.backoff) and t > ld_int(&e.cap):
        if ld_ll(&e.spent) >= ld_int(&e.ratio) * _probe_ns(e, work):
            ch.flags |= F_PROBE
            ch.probe = True
        else:
            t = ch.backoff = ld_int(&e.cap)
            ch.flags |= F_BACKED_OFF
    return t


cdef inline double _probe_ns(Entry *e, Py_ssize_t work) noexcept nogil:
    """What a probe of this work may lose (ns): its time at the last slow
    call's rate."""
    cdef Py_ssize_t w = ld_ll(&e.probe_work)
    cdef double cost = <double>ld_ll(&e.probe_cost)
    return cost * work / w if w > 0 and work > 0 else cost


cdef inline int _clamped(int t, Choice *ch) noexcept nogil:
    """Step 5: at most the usable CPUs, omp_get_max_threads() and a limit
    set through threadpoolctl; serial inside an OpenMP region."""
    cdef int limit = _max_threads()
    ch.max_threads = _sim_max if _sim_max > 0 else omp_get_max_threads()
    ch.pool_limit = pool_limit()
    if _usable < limit:
        limit = _usable
    if t > limit:
        t = ch.limit = limit
    if t > 1 and omp_in_parallel():
        t = 1
        ch.nested = True
    return t


cdef inline int _fair_share(int t, int callers, Choice *ch) noexcept nogil:
    """Step 6: a call past its threshold takes at most its fair share of the
    usable CPUs among the ``callers`` that want several (itself included)."""
    cdef int share = _usable // (callers if callers > 1 else 1)
    if t > share:
        t = share if share > 1 else 1
        ch.share = t
        ch.callers = callers
    return t


cdef inline int _cores_seen(Entry *e, Py_ssize_t work, int t,
                            Choice *ch) noexcept nogil:
    """Step 7 as a dry run sees it: at most the cores of the caller's open
    section, else the cores free in the budget now; fewer than 2: waited
    for, if the call in flight should end soon enough that waiting pays
    (as _commit would), else serial."""
    cdef long long soonest, deadline
    ch.free = _free_now()
    ch.section = tl_section
    ch.wait = -1
    if t > 1:
        if tl_section:
            t = t if t < tl_section else tl_section
        elif ch.free < 2 and ch.t_now and not (ch.flags & F_FORCED):
            deadline = _wait_deadline(e, t, work, ch.t_now, &soonest)
            if deadline >= 0:
                ch.budget = True
                ch.wait = soonest - ch.t_now if soonest > ch.t_now else 0
                ch.wait_most = deadline - ch.t_now
                return t
            t = 1
            ch.budget = True
        elif t > ch.free:
            t = ch.free if ch.free > 1 else 1
            ch.budget = True
    ch.held = t < 2 and not tl_section
    return t


cdef inline int _choose(Entry *e, Py_ssize_t work, int mode, long long idle,
                        Choice *ch) noexcept nogil:
    """The rule's choice: see :func:`_choose_steps`.  The commonest call
    first, without a function call: step 3 below the fast path's bound
    (Entry.fast_min: well below the hot table's threshold, or where the
    estimate's model rules parallel out; not forked, not forced), serial,
    unchecked, with no clock read."""
    ch.flags = 0
    if (e != NULL and work < e.fast_min and not tl_exact
            and not ld_int(&forked_child) and (e.has_table or mode == M_CALL)):
        ch.table = T_HOT if e.has_table else T_ESTIMATE
        ch.threshold = e.hot_min
        ch.explore_step = X_NONE
        return 0
    return _choose_steps(e, work, mode, idle, ch)


cdef int _choose_steps(Entry *e, Py_ssize_t work, int mode, long long idle,
                       Choice *ch) noexcept nogil:
    """The rule's choice (module docstring, steps 1-7): the threads a call
    of this work gets, and why, in ``ch``.  No side effect.  A real call
    (M_CALL) stops before its share of the cores and the cores themselves,
    which _commit takes atomically by the same rules; a dry run goes on
    to them as they look now.  0 is a serial call below its threshold (or
    with no table, forked, or serial by its estimate), which touches
    nothing else; 1 or more, a call past it."""
    cdef int t
    ch.corrected = 0
    ch.explore_step = X_NONE
    if ld_int(&forked_child) and ld_int(&ch.tm.forked):  # 1: see _after_fork
        ch.table = T_FORKED
        ch.explore_step = X_NONE  # (else set by the estimate, if it runs)
        return 0
    if tl_exact:  # 2
        t = tl_exact
        ch.flags = F_FORCED
        ch.table = T_FORCED
        ch.t_now = now() if mode == M_CALL else 0
        ch.lone = ch.hold_back = False
        ch.team_awake = ch.explore_step = 0
    else:
        t = _from_table(e, work, mode, idle, ch)  # 3
        if t == 0:
            return 0
        t = _capped(e, work, t, ch)  # 4
    t = _clamped(t, ch)  # 5
    ch.threads = t
    if mode == M_CALL:
        return t
    if t > 1 and not tl_section:
        t = _fair_share(t, ld_int(_callers_at()) + 1, ch)  # 6
    t = ch.threads = _cores_seen(e, work, t, ch)  # 7
    return t
