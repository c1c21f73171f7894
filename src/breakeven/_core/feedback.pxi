# Feedback: a call's end, its time recorded and judged (the contention
# check, back-off and probes; the estimate's lessons).
# (an include file of engine.pyx: see its docstring)

cdef inline double _weight(const Arm *a) noexcept nogil:
    return a.n if a.n < C_ARM_WEIGHT else C_ARM_WEIGHT


cdef inline void _add(Arm *a, double x) noexcept nogil:
    """One more measurement in an arm: its running mean and variance, the
    last ARM_WEIGHT weighing most."""
    cdef double w, d
    if a.n < (1 << 30):
        a.n += 1
    w = 1.0 / _weight(a)
    d = x - a.mean
    a.mean += w * d
    a.var = (1 - w) * (a.var + w * d * d)


cdef inline double _gain_z(const Arm *s, const Arm *p) noexcept nogil:
    """By how many standard errors parallel's mean time beats serial's by
    MARGIN (negative: falls short of it), discounted for few calls (as
    Student's t is: the spread of a few calls is itself uncertain); 0
    without EVIDENCE_MIN calls of each."""
    cdef double d, se2, few = s.n if s.n < p.n else p.n
    if few < C_EVIDENCE_MIN:
        return 0
    d = s.mean - p.mean * (1 + C_MARGIN)
    se2 = s.var / _weight(s) + p.var * (1 + C_MARGIN) * (1 + C_MARGIN) / _weight(p)
    if se2 <= d * d * 1e-12:  # (no noise at all)
        return INFINITY if d > 0 else -INFINITY if d < 0 else 0
    return d / sqrt(se2) / (1 + 1.5 / (few - 1))


cdef inline void _teach(Entry *e, Arm *arm, Py_ssize_t work,
                        long long ns) noexcept nogil:
    """A measured call of a choice (under e.lock): its time per unit of work
    in the choice's arm at its size, and what the evidence now settles."""
    cdef int b = _bucket(work)
    cdef signed char was = e.learned[b]
    cdef Arm *other = &e.par[0] if arm == &e.ser[0] else &e.ser[0]
    cdef double z, x = ns * 1e-9 / work, cap = 0
    # winsorized: a call slower than CLIP times its choice's mean counts as
    # that slow, so that one preempted call does not outweigh dozens (a
    # loop's expected cost is a wake-up's or a preemption's only through
    # its calls' mean).  The second call counts at most CLIP times the
    # first, and a first more than CLIP times slower than the second is
    # dropped (it was the one preempted); a parallel call before its
    # choice has a mean, at most CLIP times serial's.  (Not serial by
    # parallel's: where parallel is many times faster, that would cut
    # every serial call.)
    if arm[b].n == 1 and x * C_CLIP < arm[b].mean:
        arm[b].n = 0
        arm[b].mean = arm[b].var = 0
    if arm[b].n >= 1:
        cap = C_CLIP * arm[b].mean
    elif arm == &e.par[0] and other[b].n >= 2:
        cap = C_CLIP * other[b].mean
    _add(&arm[b], cap if 0 < cap < x else x)
    z = _gain_z(&e.ser[b], &e.par[b])
    if z > C_CONFIDENT:
        e.learned[b] = 2
    elif z < -C_CONFIDENT_SERIAL:
        e.learned[b] = 1
    if e.learned[b] != was:
        _set_fast_min(e)
    elif arm == e.ser and not (e.has_table and e.hot_min < INFINITY):
        _raise_model_min(e, b)  # the estimate's, or a table's that never goes parallel


cdef void _teach_speed(Entry *e, int t, Py_ssize_t work, long long ns) noexcept nogil:
    """A hot parallel call on t threads (under e.lock) took ``ns``: on one of
    the estimate's counts, the speed-up over serial it shows past the
    team's start, from the serial calls of its size (EVIDENCE_MIN of them:
    another size's rate may be a cache's), not where the start is over four
    fifths of its time (its error would be most of the figure); at most four
    times the count, which caches can give (data that fits the caches of
    many cores streams several times faster than from memory)."""
    cdef int i = _count_index(t), b = _bucket(work)
    cdef double rs, body, s
    if i < 0 or _counts[i] != t or e.ser[b].n < C_EVIDENCE_MIN:
        return
    rs = e.ser[b].mean
    body = ns - _counts_hot_ns[i]
    if rs <= 0 or 4 * body < _counts_hot_ns[i]:
        return
    s = rs * work * 1e9 / body
    _add(&e.speed[i][b], s if s < 4 * t else 4 * t)


cdef void _raise_model_min(Entry *e, int b) noexcept nogil:
    """Raise the estimate's fast-path bound past size b (under e.lock) once
    b has the serial calls (EXPLORE_UNTIL of them) that show the model
    ruling parallel out there: over EXPLORE_LOSS times serial even at the
    size's largest work, and no size up to b settled parallel.  (Smaller
    sizes, measured or not, are ruled out with it: the team's start weighs
    more on less work.)"""
    cdef int i, full = _full_count()
    cdef double ts, tp, top = <double>(<Py_ssize_t>1 << b)
    if e.ser[b].n < C_EXPLORE_UNTIL or e.model_min >= top:
        return
    ts = e.ser[b].mean * top * 1e9
    if full > 1 and _best_count(e, ts, b, full, &tp) > 1 and (
            tp <= C_EXPLORE_LOSS * ts):
        return
    for i in range(b + 1):
        if e.learned[i] == 2:
            return
    e.model_min = top
    _set_fast_min(e)


cdef void _set_fast_min(Entry *e) noexcept nogil:
    """The fast path's bound (Entry.fast_min) from the table's threshold,
    the sizes the calls settled parallel, and the model's bound."""
    cdef int b
    cdef double low = e.hot_min if e.has_table else INFINITY, bound
    for b in range(BUCKETS):
        if e.learned[b] == 2:
            if <double>(<Py_ssize_t>1 << b >> 1) < low:
                low = <double>(<Py_ssize_t>1 << b >> 1)
            break
    bound = low / C_CHECK_BELOW
    if not (e.has_table and e.hot_min < INFINITY) and e.model_min < bound:
        bound = e.model_min  # (a table that never goes parallel: the model's)
    e.fast_min = bound


cdef void _end(dispatch.Call *c) noexcept nogil:
    """dispatch.end(): cores back, time recorded and judged."""
    cdef Slot *s = _slot(c.kernel)
    cdef Entry *e
    cdef long long t_end, ns
    cdef int t = c.threads
    cdef double wake
    cdef Team *tm
    if s == NULL or c.dtype < 0 or c.dtype >= N_DTYPES:
        return
    tm = &_teams[s.team]
    if c.flags & F_CALLER:
        add_int(_callers_at(), -1)
    e = <Entry *>load_ptr(<void **>&s.entries[c.dtype])
    if t > 1:
        t_end = now()
        st_ll(&tm.wide_end[_bits(t)], t_end)
        st_int(&tm.wide_n[_bits(t)], t)
        ns = <long long>((t_end - c.start) * _clock_scale)
        if c.flags & F_BLAS:
            _blas_restore()
        # out of flight before the cores are free again: the count in
        # flight never exceeds what was taken
        add_int(&_in_flight, -t)
        if not (c.flags & F_SECTION):
            _give_team_cores(t, t_end)
        wake = 0
        # (not at a run's start either, nor at a size other than the last
        # call's: the caches another size left would count as the wake-up,
        # in proportion to the work)
        if (e != NULL and c.flags & F_NOT_HOT and c.flags & F_WHOLE
                and not c.flags & (F_UNJUDGED | F_RUN_START | F_NEW_SIZE)):
            wake = _saw_wake(tm, e, t, c.work, ns, c.start - ld_ll(&tm.last_parallel))
        st_ll(&tm.last_parallel, t_end)
        tm.rent = 0  # the team is awake
        if e != NULL:
            add_ll(&e.ns_parallel, ns)
            if not (c.flags & F_COLD):
                # judged for contention without the wake-up such calls pay
                _observe(e, t, c.work, ns - <long long>wake if ns > wake else 0,
                         c.flags, t_end)
    else:
        if c.flags & F_PAST:
            st_ll(&tm.last_call, now())
        if c.flags & F_HELD:
            add_int(&_in_flight, -1)
            _give_cores(1)
        elif c.flags & F_OVER:
            _give_cores(1)
        if c.flags & F_TIMED and e != NULL:
            ns = <long long>((now() - c.start) * _clock_scale)
            if c.flags & F_SAMPLE:
                add_ll(&e.ns_sampled, ns)
                add_ll(&e.n_sampled, 1)
            else:
                add_ll(&e.ns_serial, ns)
                add_ll(&e.n_serial_timed, 1)
            if c.flags & F_BACKED_OFF:
                add_ll(&e.spent, ns)
            # the check learns from the calls the rule decides: not forced
            # ones, nor those backed off for contention; nor a run's start,
            # nor a switch from parallel (the caches are parallel's)
            if c.work > 0 and not c.flags & (
                    F_FORCED | F_BACKED_OFF | F_RUN_START | F_SWITCH) and (
                    trylock(&e.lock)):
                _teach(e, e.ser, c.work, ns)
                unlock(&e.lock)
    c.flags = 0
    c.kernel = -1


cdef inline long long _last_active(const Team *tm) noexcept nogil:
    """When the team's last call past a threshold ended (or a serial one
    started)."""
    cdef long long a = ld_ll(&tm.last_parallel), b = ld_ll(&tm.last_call)
    return a if a > b else b


cdef double _saw_wake(Team *tm, Entry *e, int t, Py_ssize_t work, long long ns,
                      long long idle) noexcept nogil:
    """A parallel call took ``ns`` after the team was idle ``idle`` ns: what
    it paid beyond a hot call of its size (the calls' mean, else the
    calibration's time, else the model's) is a wake-up, measured.  Returns
    the mean wake-up measured after such an idle time (ns; 0: none)."""
    cdef int k = _idle_bucket(idle)
    cdef double hot = _parallel_ns(e, _bucket(work), t, work, True), mean
    if k < 0 or hot <= 0 or not trylock(&tm.lock):
        return 0
    _add(&tm.wake[k], ns - hot if ns > hot else 0.0)
    mean = tm.wake[k].mean
    unlock(&tm.lock)
    return mean


cdef int _rate_index(Entry *e, int t, bint make) noexcept nogil:
    """The rate table of thread count t (under e.lock); with ``make``, one is
    taken over (the least recently used) if t has none."""
    cdef int i, oldest = 0
    for i in range(MAX_TC):
        if e.rate_threads[i] == t:
            return i
    if not make:
        return -1
    for i in range(MAX_TC):
        if e.rate_threads[i] == 0:  # a free table
            oldest = i
            break
        if e.rate_used[i] < e.rate_used[oldest]:
            oldest = i
    e.rate_threads[oldest] = t
    for i in range(BUCKETS):
        e.best[oldest][i] = 0
        e.seeded[oldest][i] = -100
    return oldest


cdef void _observe(Entry *e, int t, Py_ssize_t work, long long ns, int flags,
                   long long t_end) noexcept nogil:
    """A parallel call of t threads took ns: the contention check."""
    cdef int i, b = _bucket(work)
    cdef double rate, best
    cdef bint slow
    if not trylock(&e.lock):
        return  # another call is updating it: skip this observation
    i = _rate_index(e, t, True)
    e.rate_used[i] = t_end
    if not flags & (F_UNJUDGED | F_NOT_HOT | F_RUN_START | F_SWITCH) and work > 0:
        if flags & F_WHOLE:
            _teach(e, e.par, work, ns)
        if flags & (F_WHOLE | F_COUNT) and not e.has_table:
            _teach_speed(e, t, work, ns)
    rate = ns * 1e-9 / (work if work > 0 else 1)
    best = e.best[i][b]
    # The yardstick: the best rate of the calls that found the team hot
    # (not one whose time is less the wake-up measured on average: that
    # difference can be as small as any, and a yardstick it set would judge
    # every later call slow).
    if not flags & F_NOT_HOT and (best == 0 or rate < best or (
            rate > C_SLOW * best and e.seeded[i][b] >= 0 and e.seeded[i][b] != b
            and not flags & F_PROBE)):
        # (a yardstick taken from another size, where the calibration did
        # not measure, gives way to this size's first slow call: a kernel's
        # rate can drop past a cache's edge, and that is not contention)
        e.best[i][b] = best = rate
        e.seeded[i][b] = -1
    slow = best > 0 and rate > C_SLOW * best
    if flags & F_FORCED:
        pass  # a forced count: a measurement, but not the table's decision
    elif flags & F_BACKED_OFF:
        add_ll(&e.spent, ns)  # paces the next probe
    elif flags & F_PROBE:
        e.probing = 0
        if slow:  # still contended: probe again later
            st_ll(&e.spent, 0)
            st_ll(&e.probe_cost, ns)
            st_ll(&e.probe_work, work)
        else:
            _lift(e, t_end)
    elif flags & (F_RUN_START | F_NEW_SIZE):
        pass  # its time is partly the caches another size left: not judged
    elif slow:
        e.slow_run += 1
        e.severe_run = e.severe_run + 1 if rate > C_SEVERE * best else 0
        if e.slow_run >= C_BACKOFF_AFTER or e.severe_run >= 2:
            e.slow_run = e.severe_run = 0
            _back_off(e, t // 2, ns, work, t_end)
    else:
        e.slow_run = e.severe_run = 0
    unlock(&e.lock)


cdef void _back_off(Entry *e, int cap, long long cost, Py_ssize_t work,
                    long long t) noexcept nogil:
    if t - e.recovered_at < RELAPSE_NS:
        # the contention came back right after a probe found it gone
        e.ratio = e.ratio * 2 if e.ratio * 2 < MAX_RATIO else MAX_RATIO
    else:
        e.ratio = C_PROBE_RATIO
    st_ll(&e.spent, 0)
    st_ll(&e.probe_cost, cost)
    st_ll(&e.probe_work, work)
    st_int(&e.cap, cap if cap >= 1 else 1)
    st_int(&e.backoff, 1)
    add_ll(&e.n_backoffs, 1)


cdef void _lift(Entry *e, long long t) noexcept nogil:
    e.recovered_at = t
    st_int(&e.backoff, 0)
    st_int(&e.cap, 0)
    st_ll(&e.spent, 0)
    add_ll(&e.n_recoveries, 1)
