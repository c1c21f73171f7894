# The estimate: threads for a kernel without a table, from its timed calls
# and the team's costs.
# (an include file of engine.pyx: see its docstring)

cdef inline double _serial_rate(const Entry *e, int b) noexcept nogil:
    """The serial seconds per unit of work the model takes at log2 size b:
    the best of two or more calls at this size; else the best of any
    smaller size measured twice or more (a first call is often slowed by
    cold caches and first touches of memory, and a rate per unit seldom
    falls as the size grows: this errs towards serial, and the serial calls
    it makes measure the size); else the best of the 4 sizes above measured
    twice; 0 if none (the call then runs serially, and is timed)."""
    cdef int i
    cdef double r = 0
    if e.ser_n[b] >= 2:
        return e.ser_rate[b]
    for i in range(b):
        if e.ser_n[i] >= 2 and (r == 0 or e.ser_rate[i] < r):
            r = e.ser_rate[i]
    if r > 0:
        return r
    for i in range(b + 1, b + 5 if b + 5 < BUCKETS else BUCKETS):
        if e.ser_n[i] >= 2 and (r == 0 or e.ser_rate[i] < r):
            r = e.ser_rate[i]
    return r


cdef inline double _wake_ns(long long idle) noexcept nogil:
    """What waking the team costs after ``idle`` ns (the longest measured
    idle time not longer than it)."""
    cdef int i
    cdef double cost = _wake_cost[0] if _n_wake > 0 else 0
    for i in range(1, _n_wake):
        if idle >= _wake_gap[i]:
            cost = _wake_cost[i]
    return cost


cdef int _estimated(const Entry *e, Py_ssize_t work, int full, bint lone,
                    long long idle, Choice *ch, bint explore) noexcept nogil:
    """The threads of a call of a kernel without a table: what its calls
    taught (both choices measured at this size), else the model from its
    serial rate and the team's costs; 1 without a serial rate yet.  With
    ``explore`` (a real call), the other choice now and then (see
    EXPLORE_EVERY)."""
    cdef int b = _bucket(work), t
    cdef signed char learned = e.learned[b]
    cdef double rs, rp, ts, tp, wake = _wake_ns(idle) if lone else 0
    if full < 2:
        return 1
    rs = _serial_rate(e, b)
    rp = e.par_rate[b] if e.par_n[b] >= 2 else 0  # one call may be an outlier
    ts = rs * work * 1e9
    tp = rp * work * 1e9 if rp > 0 else ts / (full * C_EFFICIENCY) + _team_hot_ns
    tp += wake
    ch.table = T_LEARNED if learned and not lone else T_ESTIMATE
    ch.serial_ns = ts
    ch.parallel_ns = tp if rs > 0 or rp > 0 else 0
    if rs <= 0:
        return 1  # nothing known yet: serially, and the call is timed
    if learned and not lone:
        t = full if learned == 2 else 1
    else:
        t = full if tp * (1 + C_MARGIN) < ts else 1
    if not explore or lone:
        return t
    return _explored(e, b, t, full, ts, ch)


cdef int _explored(const Entry *e, int b, int t, int full, double ts,
                   Choice *ch) noexcept nogil:
    """The decision ``t``, or once in EXPLORE_EVERY calls the other choice
    (once in EXPLORE_LATER when it has been measured EXPLORE_UNTIL times at
    this size), where it is, by the model (serial time ``ts``; a parallel
    one of ``ts`` / (count x EFFICIENCY) + the team's start), at most
    EXPLORE_LOSS times as slow.  (By the model, not by what was measured:
    a measurement may be an outlier, or out of date, and must be measured
    again.)  What it implies for the explore counter and a parallel
    exploration's second call is left in ``ch.explore_step``."""
    cdef double model_tp = ts / (full * C_EFFICIENCY) + _team_hot_ns
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
    if (ts if t > 1 else model_tp) > C_EXPLORE_LOSS * (model_tp if t > 1 else ts):
        return t
    ch.explore_step = X_COUNTED
    n = ld_ll(&e.explore)  # _commit advances it
    every = (C_EXPLORE_EVERY if (e.par_n[b] if t == 1 else e.ser_n[b]) < EXPLORE_UNTIL
             else EXPLORE_LATER)
    if n % every != every - 1:
        return t
    ch.flags |= F_EXPLORE
    ch.explore = True
    if t == 1:
        ch.explore_step = X_START
    return 1 if t > 1 else full
