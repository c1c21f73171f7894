# Python side: slots, tables, the team's costs and the profile hooks.
# (an include file of engine.pyx: see its docstring)

cdef void _map_dtypes():
    cdef int num
    for num in range(N_TYPENUMS):
        _dtype_of[num] = -1
    for ch in np.typecodes["All"]:
        try:
            dt = np.dtype(ch)
        except TypeError:
            continue
        if dt.num < N_TYPENUMS and dt.name in DTYPES:
            _dtype_of[dt.num] = DTYPES.index(dt.name)


_map_dtypes()


def dtype_index(dtype):
    """The core's index of a dtype (``DTYPES``), or -1."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        return -1
    return DTYPES.index(name) if name in DTYPES else -1


# kernel names by slot, and slots by name
_names = []
_slot_of = {}


def add_slot(str name, bint uses_blas=False):
    """The slot of the kernel called ``name``: its own if it has one (with
    ``uses_blas`` updated), else a new one."""
    global _cap_slots
    cdef Slot **bigger
    cdef Slot *s
    cdef int n
    if name in _slot_of:
        k = _slot_of[name]
        _slot(k).uses_blas = uses_blas
        return k
    if _n_slots == _cap_slots:
        n = 16 if _cap_slots == 0 else 2 * _cap_slots
        bigger = <Slot **>calloc(n, sizeof(Slot *))
        if bigger == NULL:
            raise MemoryError()
        if _n_slots:
            memcpy(bigger, _slots, _n_slots * sizeof(Slot *))
        # the old array stays allocated: a caller may be reading it
        slots_store(<void **>bigger)
        _cap_slots = n
    s = <Slot *>calloc(1, sizeof(Slot))
    if s == NULL:
        raise MemoryError()
    s.uses_blas = uses_blas
    (<Slot **>_slots)[_n_slots] = s
    _names.append(name)
    _slot_of[name] = _n_slots
    st_rel_int(&_n_slots, _n_slots + 1)
    return _n_slots - 1


def slot_name(int kernel):
    """The name of the kernel in this slot."""
    return _names[kernel]


def slot_of(str name):
    """The slot of the kernel called ``name``, or -1."""
    return _slot_of.get(name, -1)


cdef Entry *_entry_of(int kernel, int d) except NULL:
    cdef Slot *s = _slot(kernel)
    cdef Entry *e
    if s == NULL:
        raise IndexError(f"no slot {kernel}")
    if d < 0 or d >= N_DTYPES:
        raise IndexError(f"no dtype index {d}")
    e = _entry(s, d)
    if e == NULL:
        raise MemoryError()
    return e


cdef void _steps_from(Steps *s, table) except *:
    table = tuple(table)[:MAX_STEPS]
    s.n = 0
    for i, (w, t) in enumerate(table):
        s.work[i] = max(0, min(int(w), 2**62))
        s.threads[i] = max(1, min(int(t), 2**30))
    s.n = len(table)


def set_estimate(int kernel, int d):
    """No table for this kernel and dtype: the estimate decides, and learns
    from the calls (see EFFICIENCY)."""
    cdef Entry *e = _entry_of(kernel, d)
    e.has_table = 0
    e.estimate = 1
    _set_fast_min(e)


def set_team(double hot_s, wake=(), counts=()):
    """The host's team costs, for the estimate: a hot region's start on all
    the threads, ``[(idle_seconds, wake_seconds), ...]`` (shortest idle
    first), and the thread counts it chooses among with each one's hot
    start, ``[(threads, seconds), ...]`` (fewest first; the last MAX_TC)."""
    global _team_hot_ns, _n_wake, _n_counts
    cdef int i
    wake = sorted(wake)[:MAX_GAPS]
    counts = sorted((int(t), float(s)) for t, s in counts if t > 1)[-MAX_TC:]
    _team_hot_ns = hot_s * 1e9
    _n_wake = _n_counts = 0
    for i, (gap, cost) in enumerate(wake):
        _wake_gap[i] = <long long>(gap * 1e9)
        _wake_cost[i] = cost * 1e9
    _n_wake = len(wake)
    for i, (t, cost) in enumerate(counts):
        _counts[i] = t
        _counts_hot_ns[i] = cost * 1e9
    _n_counts = len(counts)


def team():
    """(hot start seconds, [(idle seconds, wake seconds), ...], [(threads,
    hot start seconds), ...])."""
    return (_team_hot_ns / 1e9,
            [(_wake_gap[i] / 1e9, _wake_cost[i] / 1e9) for i in range(_n_wake)],
            [(_counts[i], _counts_hot_ns[i] / 1e9) for i in range(_n_counts)])


def speedups(int kernel, int d, Py_ssize_t work):
    """The speed-ups over serial the estimate expects of a kernel at the
    log2 size of ``work``, per thread count it chooses among: ``[(threads,
    speed-up, calls measured), ...]`` (0 calls: from the sizes or counts
    either side, or the model)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int b = _bucket(work)
    return [(_counts[i], _speedup(e, i, b), e.speed[i][b].n) for i in range(_n_counts)]


def estimate_state(int kernel, int d):
    """Per log2 size with anything measured: (size bucket, serial seconds per
    unit, parallel seconds per unit, decided: 0 no, 1 serial, 2 parallel,
    serial calls measured, parallel calls measured; counts stop at 100)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int b
    return [(b, e.ser[b].mean, e.par[b].mean, e.learned[b], e.ser[b].n, e.par[b].n)
            for b in range(BUCKETS) if e.ser[b].n or e.par[b].n]


def evidence(int kernel, int d, Py_ssize_t work):
    """What the calls measured at this work's log2 size: ((serial mean,
    standard deviation, calls), (parallel ...), settled: 0 nothing, 1
    serial, 2 parallel), times per unit of work in seconds."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int b = _bucket(work)
    return ((e.ser[b].mean, sqrt(e.ser[b].var), e.ser[b].n),
            (e.par[b].mean, sqrt(e.par[b].var), e.par[b].n), e.learned[b])


def wake_seen(int team=0):
    """The wake-ups a team's calls measured, per log2 idle time: [(idle
    seconds from, mean seconds, standard deviation, calls), ...] for each
    idle time measured."""
    cdef Team *tm
    cdef int k
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    tm = &_teams[team]
    return [(2.0 ** (WAKE_FROM + k) / 1e9, tm.wake[k].mean / 1e9,
             sqrt(tm.wake[k].var) / 1e9, tm.wake[k].n)
            for k in range(WAKE_BUCKETS) if tm.wake[k].n]


def set_table(int kernel, int d, hot, cold):
    """A kernel's tables for dtype index ``d``: ``hot`` steps
    ``((work_min, threads), ...)`` and ``cold`` tables ``[(idle_seconds,
    steps), ...]``, shortest idle first (at least one)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int g
    e.has_table = 0
    e.estimate = 0
    _steps_from(&e.hot, hot)
    cold = list(cold)[:MAX_GAPS] or [(0.0, hot)]
    for g, (gap, steps) in enumerate(cold):
        e.gap[g] = <long long>(gap * 1e9)
        _steps_from(&e.cold[g], steps)
    e.n_gaps = len(cold)
    e.hot_min = _first_parallel(&e.hot)
    e.has_table = 1
    _set_fast_min(e)


def clear_table(int kernel, int d):
    """No table for this kernel and dtype, and no estimate: its calls run
    serially."""
    cdef Entry *e = _entry_of(kernel, d)
    e.has_table = 0
    e.estimate = 0
    e.fast_min = INFINITY


def tables(int kernel, int d):
    """(hot steps, [(idle seconds, cold steps), ...]) as the core holds them,
    or None."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int g
    if not e.has_table:
        return None
    return (_steps_tuple(&e.hot),
            [(e.gap[g] / 1e9, _steps_tuple(&e.cold[g])) for g in range(e.n_gaps)])


def threads_for(steps, Py_ssize_t work):
    """The threads a step table ``((work_min, threads), ...)`` gives a call
    of this work (1 means serial): the core's own look-up."""
    cdef Steps s
    _steps_from(&s, steps)
    return _lookup(&s, work)


cdef tuple _steps_tuple(Steps *s):
    return tuple((s.work[i], s.threads[i]) for i in range(s.n))


def seed_rate(int kernel, int d, int threads, Py_ssize_t work, double rate):
    """Seed the contention check with a calibrated rate (seconds per unit of
    work of a parallel call of ``threads`` at this size); sizes without one
    take the nearest seeded size's."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int i, b, b0 = _bucket(work)
    if rate <= 0 or threads < 2:
        return
    lock(&e.lock)
    i = _rate_index(e, threads, True)
    e.rate_used[i] = now()
    e.best[i][b0] = rate
    e.seeded[i][b0] = b0
    for b in range(BUCKETS):
        if e.best[i][b] == 0 or (e.seeded[i][b] >= 0 and e.seeded[i][b] != b
                                 and abs(e.seeded[i][b] - b) > abs(b0 - b)):
            e.best[i][b] = rate
            e.seeded[i][b] = b0
    unlock(&e.lock)


def configure(double sleep_after_s):
    """The host's figures: the idle time after which the OpenMP team sleeps
    (0: it never does).  Marks the core configured."""
    global _sleep_after
    _sleep_after = <long long>(sleep_after_s * 1e9)
    st_rel_int(&_configured, 1)


def unconfigure():
    """Forget every table and all learnt state (rates, back-off, counters);
    the next call loads the profile again."""
    cdef int k, d
    cdef Entry *e
    st_rel_int(&_configured, 0)
    for k in range(_n_slots):
        for d in range(N_DTYPES):
            e = (<Slot **>_slots)[k].entries[d]
            if e != NULL:
                lock(&e.lock)
                zero_entry(e)
                _init_entry(e)
    for k in range(MAX_TEAMS):
        memset(_teams[k].wake, 0, sizeof(_teams[k].wake))
        _teams[k].rent = _teams[k].credit = 0
        _teams[k].run_calls = 0
        memset(&_teams[k].run_len, 0, sizeof(Arm))
    _teams_asleep(-(1LL << 62), 0)


def configured():
    return bool(_configured)


def set_hooks(load=None, blas=None):
    """``load()``: loads the profile and configures the core (called, with
    the GIL, by the first call); ``blas()``: the BLAS setters for
    :func:`set_blas` (called the first time BLAS must be capped)."""
    global _load_hook, _blas_hook
    _load_hook, _blas_hook = load, blas
