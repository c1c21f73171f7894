# Feedback: a call's end, its time recorded and judged (the contention
# check, back-off and probes; the estimate's lessons).
# (an include file of engine.pyx: see its docstring)

cdef inline void _teach(float (*ring)[RING], double *rate, signed char *count,
                        Entry *e, Py_ssize_t work, long long ns) noexcept nogil:
    """A measured call: its rate among the last RING at its size, and
    their median (under e.lock).  A median, not the best: the best of one
    choice's calls is often a lucky one (a boosted clock, a warm cache), and
    the two choices must be compared alike."""
    cdef int b = _bucket(work), n, i, j
    cdef float v[RING]
    cdef float x
    n = count[b]
    ring[b][n % RING] = <float>(ns * 1e-9 / work)
    if count[b] < 100:
        count[b] += 1
    n = count[b] if count[b] < RING else RING
    for i in range(n):  # insertion sort of at most RING values
        x = ring[b][i]
        j = i
        while j > 0 and v[j - 1] > x:
            v[j] = v[j - 1]
            j -= 1
        v[j] = x
    rate[b] = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    _learn(e, b)


cdef inline void _learn(Entry *e, int b) noexcept nogil:
    """Both choices measured at log2 size b, twice each at least: their
    medians decide it (under e.lock)."""
    if e.ser_n[b] >= 2 and e.par_n[b] >= 2:
        e.learned[b] = 2 if e.par_rate[b] * (1 + C_MARGIN) < e.ser_rate[b] else 1


cdef void _end(dispatch.Call *c) noexcept nogil:
    """dispatch.end(): cores back, time recorded and judged."""
    cdef Slot *s = _slot(c.kernel)
    cdef Entry *e
    cdef long long t_end, ns
    cdef int t = c.threads
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
        st_ll(&tm.last_parallel, t_end)
        if e != NULL:
            add_ll(&e.ns_parallel, ns)
            if not (c.flags & F_COLD):
                _observe(e, t, c.work, ns, c.flags, t_end)
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
            add_ll(&e.ns_serial, ns)
            add_ll(&e.n_serial_timed, 1)
            if c.flags & F_BACKED_OFF:
                add_ll(&e.spent, ns)
            # the estimate learns from the calls it decides, not forced ones
            if (e.estimate and c.work > 0 and not (c.flags & F_FORCED)
                    and trylock(&e.lock)):
                _teach(e.ser_ring, e.ser_rate, e.ser_n, e, c.work, ns)
                unlock(&e.lock)
    c.flags = 0
    c.kernel = -1


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
    if not trylock(&e.lock):
        return  # another call is updating it: skip this observation
    i = _rate_index(e, t, True)
    e.rate_used[i] = t_end
    if (e.estimate and not (flags & (F_BACKED_OFF | F_FORCED | F_NOT_HOT))
            and t >= _full_count()):
        _teach(e.par_ring, e.par_rate, e.par_n, e, work, ns)
    rate = ns * 1e-9 / (work if work > 0 else 1)
    best = e.best[i][b]
    if best == 0 or rate < best or (
            rate > C_SLOW * best and e.seeded[i][b] >= 0 and e.seeded[i][b] != b
            and not flags & F_PROBE):
        # (a yardstick taken from another size, where the calibration did
        # not measure, gives way to this size's first slow call: a kernel's
        # rate can drop past a cache's edge, and that is not contention)
        e.best[i][b] = best = rate
        e.seeded[i][b] = -1
    if flags & F_FORCED:
        pass  # a forced count: a measurement, but not the table's decision
    elif flags & F_BACKED_OFF:
        add_ll(&e.spent, ns)  # paces the next probe
    elif flags & F_PROBE:
        e.probing = 0
        if rate > C_SLOW * best:  # still contended: probe again later
            st_ll(&e.spent, 0)
            st_ll(&e.probe_cost, ns)
        else:
            _lift(e, t_end)
    elif rate > C_SLOW * best:
        e.slow_run += 1
        e.severe_run = e.severe_run + 1 if rate > C_SEVERE * best else 0
        if e.slow_run >= C_BACKOFF_AFTER or e.severe_run >= 2:
            e.slow_run = e.severe_run = 0
            _back_off(e, t // 2, ns, t_end)
    else:
        e.slow_run = e.severe_run = 0
    unlock(&e.lock)


cdef void _back_off(Entry *e, int cap, long long cost, long long t) noexcept nogil:
    if t - e.recovered_at < RELAPSE_NS:
        # the contention came back right after a probe found it gone
        e.ratio = e.ratio * 2 if e.ratio * 2 < MAX_RATIO else MAX_RATIO
    else:
        e.ratio = C_PROBE_RATIO
    st_ll(&e.spent, 0)
    st_ll(&e.probe_cost, cost)
    st_int(&e.cap, cap if cap >= 1 else 1)
    st_int(&e.backoff, 1)
    add_ll(&e.n_backoffs, 1)


cdef void _lift(Entry *e, long long t) noexcept nogil:
    e.recovered_at = t
    st_int(&e.backoff, 0)
    st_int(&e.cap, 0)
    st_ll(&e.spent, 0)
    add_ll(&e.n_recoveries, 1)
