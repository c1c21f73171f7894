# The estimate: threads for a kernel without a table, from its timed calls
# and the team's costs.
# (an include file of engine.pyx: see its docstring)

cdef inline double _serial_rate(const Entry *e, int b) noexcept nogil:
    """The serial seconds per unit of work the model takes at log2 size b:
    the mean of two or more calls at this size; else the least of any
    smaller size measured twice or more (a first call is often slowed by
    cold caches and first touches of memory, and a rate per unit seldom
    falls as the size grows: this errs towards serial, and the serial calls
    it makes measure the size); else the least of the 4 sizes above measured
    twice; 0 if none (the call then runs serially, and is timed)."""
    cdef int i
    cdef double r = 0
    if e.ser[b].n >= 2:
        return e.ser[b].mean
    for i in range(b):
        if e.ser[i].n >= 2 and (r == 0 or e.ser[i].mean < r):
            r = e.ser[i].mean
    if r > 0:
        return r
    for i in range(b + 1, b + 5 if b + 5 < BUCKETS else BUCKETS):
        if e.ser[i].n >= 2 and (r == 0 or e.ser[i].mean < r):
            r = e.ser[i].mean
    return r


cdef inline double _parallel_ns(const Entry *e, int b, int t, Py_ssize_t work,
                                bint model) noexcept nogil:
    """A hot parallel call's expected time (ns) at log2 size b on t threads:
    the calls' mean at this size, else the calibration's time for t (the
    contention check's yardstick, seeded from the profile), else, with
    ``model``, the model's from the serial rate; 0 if none."""
    cdef int i
    cdef double rs
    if e.par[b].n >= 2:
        return e.par[b].mean * work * 1e9
    for i in range(MAX_TC):
        if e.rate_threads[i] == t and e.best[i][b] > 0:
            return e.best[i][b] * work * 1e9
    rs = _serial_rate(e, b) if model else 0
    return _model_parallel_ns(e, rs * work * 1e9, t, b) if rs > 0 else 0


cdef inline int _count_index(int t) noexcept nogil:
    """The estimate's count t, or the next one above it (the largest if
    none is; -1 before the host's counts are known)."""
    cdef int i
    for i in range(_n_counts):
        if _counts[i] >= t:
            return i
    return _n_counts - 1


cdef inline bint _speed_seen(const Entry *e, int i, int b, double *s) noexcept nogil:
    """What the calls measured of count _counts[i]'s speed-up at log2 size b
    (EVIDENCE_MIN calls), else at the sizes either side (their mean, or
    the one measured), into ``s``; False if nothing was."""
    cdef const Arm *lo = &e.speed[i][b - 1 if b > 0 else b]
    cdef const Arm *hi = &e.speed[i][b + 1 if b < BUCKETS - 1 else b]
    cdef bint below = lo.n >= C_EVIDENCE_MIN, above = hi.n >= C_EVIDENCE_MIN
    if e.speed[i][b].n >= C_EVIDENCE_MIN:
        s[0] = e.speed[i][b].mean
    elif below and above:
        s[0] = (lo.mean + hi.mean) / 2
    elif below or above:
        s[0] = lo.mean if below else hi.mean
    else:
        return False
    return True


cdef double _speedup(const Entry *e, int i, int b) noexcept nogil:
    """The speed-up over serial the estimate expects of the kernel on count
    ``_counts[i]`` at log2 size b: what its calls measured there or at the
    sizes either side (_speed_seen); else no more than what they measured
    on the nearest larger count (fewer threads seldom lose by much to more
    once these stop scaling); else, from the nearest smaller count
    measured, scaled up as well as it scaled (linearly if it reached
    EFFICIENCY, not at all if half of that); at most the count times
    EFFICIENCY."""
    cdef int j
    cdef double t = _counts[i], s = t * C_EFFICIENCY, r, m, eff
    if _speed_seen(e, i, b, &m):
        return m
    for j in range(i + 1, _n_counts):
        if _speed_seen(e, j, b, &m):
            if m < s:
                s = m
            break
    for j in range(i - 1, -1, -1):
        if _speed_seen(e, j, b, &m):
            eff = m / _counts[j] / C_EFFICIENCY
            eff = 2 * eff - 1 if eff < 1 else 1
            r = m * (1 + (t / _counts[j] - 1) * (eff if eff > 0 else 0))
            if r < s:
                s = r
            break
    return s


cdef double _model_parallel_ns(const Entry *e, double ts, int t, int b) noexcept nogil:
    """The model's time (ns) of a hot call of t threads at log2 size b whose
    serial time is ``ts`` ns: ``ts`` over the count's speed-up (_speedup),
    plus the team's start on that count (a count between the estimate's:
    scaled down from the next one, with its start)."""
    cdef int i = _count_index(t)
    cdef double s
    if i < 0:
        return ts / (t * C_EFFICIENCY) + _team_hot_ns
    s = _speedup(e, i, b)
    if _counts[i] > t:
        s = s * t / _counts[i]
    return ts / s + _counts_hot_ns[i]


cdef int _best_count(const Entry *e, double ts, int b, int full,
                     double *tp) noexcept nogil:
    """The thread count of at most ``full`` the model puts fastest for a call
    at log2 size b whose serial time is ``ts`` ns, and its time in ``tp``
    (ns): a count must beat every smaller one by MARGIN (as calibration's
    tables do: fewer threads hold fewer cores)."""
    cdef int i = 0, t, best = full
    cdef double x
    tp[0] = INFINITY
    while True:
        t = _counts[i] if i < _n_counts and _counts[i] < full else full
        x = _model_parallel_ns(e, ts, t, b)
        if x * (1 + C_MARGIN) < tp[0]:
            tp[0] = x
            best = t
        if t == full:
            break
        i += 1
    return best


cdef inline double _wake_ns(long long idle) noexcept nogil:
    """What waking the team costs after ``idle`` ns, as the profile says
    (the longest measured idle time not longer than it)."""
    cdef int g = _wake_index(idle)
    return _wake_cost[g] if g >= 0 else 0


cdef inline int _wake_index(long long idle) noexcept nogil:
    """The profile's wake-up entry for ``idle`` ns (-1: none)."""
    cdef int i, g = 0 if _n_wake > 0 else -1
    for i in range(1, _n_wake):
        if idle >= _wake_gap[i]:
            g = i
    return g


cdef inline int _idle_bucket(long long idle) noexcept nogil:
    """The log2 idle time of ``idle`` ns, as Team.wake counts it (-1: the
    team is hot)."""
    cdef int k = _bucket(idle) - 1 - WAKE_FROM
    if k < 0:
        return -1
    return k if k < WAKE_BUCKETS else WAKE_BUCKETS - 1


cdef inline double _wake_measured(const Team *tm, long long idle) noexcept nogil:
    """What waking the team after ``idle`` ns costs (ns) as the calls
    measured it: the most of the means at this idle time and the shorter
    ones (a longer idle time never makes it cheaper), each of at least
    WAKE_EVIDENCE calls; -1 where none is."""
    cdef int i, k = _idle_bucket(idle)
    cdef double w = -1
    for i in range(k + 1):
        if tm.wake[i].n >= C_WAKE_EVIDENCE and tm.wake[i].mean > w:
            w = tm.wake[i].mean
    return w


cdef inline signed char _settled(const Entry *e, int b) noexcept nogil:
    """What the calls settled at log2 size b: its own evidence, else what
    both sizes either side settled alike."""
    if e.learned[b] or b == 0 or b == BUCKETS - 1:
        return e.learned[b]
    return e.learned[b - 1] if e.learned[b - 1] == e.learned[b + 1] else 0


cdef int _estimated(const Entry *e, Py_ssize_t work, int full, Choice *ch,
                    bint explore) noexcept nogil:
    """The threads of a call of a kernel without a table, as a call in a
    loop: what its calls settled at this size, else the model from its
    serial rate and the team's costs; 1 without a serial rate yet.  With
    ``explore`` (a real call), the other choice now and then (see
    EXPLORE_EVERY).  (A wake-up is the caller's: _wake_checked.)"""
    cdef int b = _bucket(work), t, tc = full
    cdef signed char learned = _settled(e, b)
    cdef double rs, ts, tp
    if full < 2:
        return 1
    rs = _serial_rate(e, b)
    ts = rs * work * 1e9
    if rs > 0:
        tc = _best_count(e, ts, b, full, &tp)  # the model's count
    tp = _parallel_ns(e, b, tc, work, True)
    ch.table = T_LEARNED if learned else T_ESTIMATE
    ch.serial_ns = ts
    ch.parallel_ns = tp if rs > 0 or e.par[b].n >= 2 else 0
    if rs <= 0:
        return 1  # nothing known yet: serially, and the call is timed
    if learned:
        t = tc if learned == 2 else 1
    else:
        t = tc if tp * (1 + C_MARGIN) < ts else 1
    if not explore:
        return t
    return _explored(e, b, t, tc, ts, ch)


cdef int _explored(const Entry *e, int b, int t, int tc, double ts,
                   Choice *ch) noexcept nogil:
    """The decision ``t``, or once in EXPLORE_EVERY calls the other choice
    (once in EXPLORE_LATER when the size is settled and the other choice
    has been measured EXPLORE_UNTIL times there), where it is at most
    EXPLORE_LOSS times as slow: by the model for parallel on the model's
    count ``tc`` (serial time ``ts``), by the model or the parallel calls'
    mean, the slower, for serial.  (Not by what was measured alone: a fast
    measurement may be an outlier, or out of date, and must be measured
    again; a slow parallel mean only makes serial worth measuring.)  A
    parallel decision explores whichever of serial and the next smaller and
    larger of the estimate's counts its calls measured least at this size
    (F_COUNT: the counts' speed-ups).  An exploration runs in a row at its
    size: parallel's EXPLORE_RUN + 1 calls (the first ones wake the team),
    serial's two (the first finds the caches parallel left), or one where
    serial is far behind (F_FAR: the caches matter little there).  What it
    implies for the explore counter and the exploration's later calls is
    left in ``ch.explore_step``."""
    cdef double tp
    cdef long long n, every
    cdef int i, j, k, best, least
    cdef bint far
    if ts <= 0:
        return t
    tp = _model_parallel_ns(e, ts, tc, b)
    ch.explore_bucket = b
    ch.explore_serial = False
    if e.explore_left > 0 and e.explore_size == b and (t == 1) != e.explore_serial:
        # the next call of an exploration: of parallel, the first one woke
        # the team (and is not measured), this one finds it awake; of
        # serial, the first found the caches parallel left (not measured)
        ch.explore_step = X_SECOND
        ch.flags |= F_EXPLORE
        ch.explore = True
        ch.explore_serial = t > 1
        return 1 if t > 1 else tc
    if t > 1 and e.par[b].n >= 2 and e.par[b].mean * ts / _serial_rate(e, b) > tp:
        tp = e.par[b].mean * ts / _serial_rate(e, b)  # (ts / rate: the work)
    far = (ts if t > 1 else tp) > C_EXPLORE_LOSS * (tp if t > 1 else ts)
    if far and (t == 1 or _n_counts < 2 and e.ser[b].n >= C_EVIDENCE_MIN):
        return t
    ch.explore_step = X_COUNTED
    n = ld_ll(&e.explore)  # _commit advances it
    every = (C_EXPLORE_EVERY if not e.learned[b] or (
        e.par[b].n if t == 1 else e.ser[b].n) < C_EXPLORE_UNTIL else C_EXPLORE_LATER)
    if n % every != every - 1:
        return t
    ch.flags |= F_EXPLORE
    ch.explore = True
    if t == 1:
        ch.explore_step = X_START
        return tc
    # of serial (unless far behind and measured), the next smaller count
    # and the next larger one, the one measured least at this size (by
    # turns if alike): serial first, twice, even where it is far behind,
    # for the speed-ups are measured against it
    best = 1 if (not far or e.ser[b].n < C_EVIDENCE_MIN) else 0
    least = e.ser[b].n if best else 1 << 30
    i = _count_index(t) if not e.has_table else -2  # (a table's count: calibrated)
    for k in range(2 if i >= 0 else 0):
        j = i - 1 if (k + n // every) % 2 else i + 1
        if 0 <= j < _n_counts and _counts[j] != t and _counts[j] <= _full_count() \
                and e.speed[j][b].n < least and e.ser[b].n >= C_EVIDENCE_MIN:
            best = _counts[j]
            least = e.speed[j][b].n
    if best > 1:
        ch.flags |= F_COUNT
        return best
    if best == 0:
        ch.flags &= ~F_EXPLORE
        ch.explore = False
        return t
    if far:  # (serial far behind, measured while it has few calls: one
        ch.flags |= F_FAR  # call, the caches weigh little against its time)
        return 1
    ch.explore_step = X_START
    ch.explore_serial = True
    return 1
