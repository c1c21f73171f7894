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
    return _model_parallel_ns(rs * work * 1e9) if rs > 0 else 0


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
    cdef int b = _bucket(work), t
    cdef signed char learned = _settled(e, b)
    cdef double rs, ts, tp
    if full < 2:
        return 1
    rs = _serial_rate(e, b)
    ts = rs * work * 1e9
    tp = _parallel_ns(e, b, full, work, True)
    ch.table = T_LEARNED if learned else T_ESTIMATE
    ch.serial_ns = ts
    ch.parallel_ns = tp if rs > 0 or e.par[b].n >= 2 else 0
    if rs <= 0:
        return 1  # nothing known yet: serially, and the call is timed
    if learned:
        t = full if learned == 2 else 1
    else:
        t = full if tp * (1 + C_MARGIN) < ts else 1
    if not explore:
        return t
    return _explored(e, b, t, full, ts, ch)


cdef int _explored(const Entry *e, int b, int t, int full, double ts,
                   Choice *ch) noexcept nogil:
    """The decision ``t``, or once in EXPLORE_EVERY calls the other choice
    (once in EXPLORE_LATER when the size is settled and the other choice
    has been measured EXPLORE_UNTIL times there), where it is at most
    EXPLORE_LOSS times as slow: by the model for parallel (serial time
    ``ts``; a parallel one of ``ts`` / (count x EFFICIENCY) + the team's
    start), by the model or the parallel calls' mean, the slower, for
    serial.  (Not by what was measured alone: a fast measurement may be an
    outlier, or out of date, and must be measured again; a slow parallel
    mean only makes serial worth measuring.)  What it implies for the
    explore counter and a parallel exploration's second call is left in
    ``ch.explore_step``."""
    cdef double tp = ts / (full * C_EFFICIENCY) + _team_hot_ns
    cdef long long n, every
    if ts <= 0:
        return t
    ch.explore_bucket = b
    if t == 1 and e.explore_left > 0 and e.explore_size == b:
        # the second call of a parallel exploration: the first one woke
        # the team (and is not measured); this one finds it awake
        ch.explore_step = X_SECOND
        ch.flags |= F_EXPLORE
        ch.explore = True
        return full
    if t > 1 and e.par[b].n >= 2 and e.par[b].mean * ts / _serial_rate(e, b) > tp:
        tp = e.par[b].mean * ts / _serial_rate(e, b)  # (ts / rate: the work)
    if (ts if t > 1 else tp) > C_EXPLORE_LOSS * (tp if t > 1 else ts):
        return t
    ch.explore_step = X_COUNTED
    n = ld_ll(&e.explore)  # _commit advances it
    every = (C_EXPLORE_EVERY if not e.learned[b] or (
        e.par[b].n if t == 1 else e.ser[b].n) < EXPLORE_UNTIL else C_EXPLORE_LATER)
    if n % every != every - 1:
        return t
    ch.flags |= F_EXPLORE
    ch.explore = True
    if t == 1:
        ch.explore_step = X_START
    return 1 if t > 1 else full
