# Python side: process state, counters and the test hooks
# (breakeven.testing).
# (an include file of engine.pyx: see its docstring)

def set_usable(int n):
    """The usable CPUs (after a change of affinity or quota; or simulated):
    the budget is reset to it, the process's own (it leaves the host's:
    :mod:`breakeven._core.host` joins again where it should)."""
    global _usable, _free, _in_flight, _peak, _callers
    if n < 1:
        raise ValueError(f"usable CPUs must be >= 1, got {n}")
    _host_leave()
    _usable = n
    _free = n
    _in_flight = 0
    _peak = 0
    _callers = 0
    _teams_asleep(-(1LL << 62), 0)


cdef void _teams_asleep(long long t, int width) noexcept nogil:
    """Every team's last calls ended at ``t``, the widest ``width`` threads
    wide (0: no team awake)."""
    cdef int i, k, b = _bits(width)
    for i in range(MAX_TEAMS):
        st_ll(&_teams[i].last_parallel, t)
        st_ll(&_teams[i].last_call, t)
        st_ll(&_teams[i].held_back, -(1LL << 62))
        for k in range(32):
            st_int(&_teams[i].wide_n[k], width if width > 1 and k == b else 0)
            st_ll(&_teams[i].wide_end[k], t if width > 1 and k == b else -(1LL << 62))


for _i in range(MAX_TEAMS):  # until breakeven._core.runtimes says otherwise
    _teams[_i].fork_rule = FORK_NEVER
set_usable(_count_usable_cpus())


def usable():
    """The usable CPUs the core clamps to."""
    return _usable


def max_threads():
    """The most threads a call may use as OpenMP allows: ``omp_get_max_threads()``
    (or simulated), lowered to a limit set through threadpoolctl."""
    return _max_threads()


def simulate_max_threads(int n):
    """Test hook: omp_get_max_threads() seen as ``n`` (0: the real one)."""
    global _sim_max
    _sim_max = n if n > 0 else 0


def budget():
    """(usable, free, in flight, peak in flight): free in the budget in
    force (the host's, once joined), in flight in this process."""
    return _usable, _free_now(), _in_flight, _peak


# ---- the host's budget (see budget.pxi, host.h and host.py) ------------

cdef object _host_keep = None    # the mapping and its view, while joined


def host_segment_size():
    """The size in bytes of a host budget's segment (host.h's layout)."""
    return host_size()


def host_supported():
    """Whether this platform can share a budget between processes."""
    return bool(host_here())


def host_format(mapping, int usable):
    """Write a new segment's header into ``mapping`` (a writable buffer of
    :func:`host_segment_size` bytes): ``usable`` cores, all free."""
    cdef unsigned char[::1] view = mapping
    if view.shape[0] != host_size():
        raise ValueError("a host segment has the size host_segment_size() gives")
    host_init(<be_host *>&view[0], usable)


def host_join(mapping):
    """Join the host budget in ``mapping`` (a writable, shared buffer):
    None, or what is wrong with it (then the process keeps its own).  The
    cores this process holds now move to the host's budget with it."""
    global _host, _mine, _mine_index, _mine_pid, _budget, _host_keep
    cdef unsigned char[::1] view = mapping
    cdef be_host *h = <be_host *>&view[0]
    cdef const char *wrong
    cdef int i, pid, held
    if _host != NULL:
        host_leave()
    wrong = host_check(h, view.shape[0], _usable)
    if wrong != NULL:
        return wrong.decode()
    pid = getpid()
    i = host_claim(h, pid, proc_start(pid, NULL))
    if i < 0:
        return "every one of its slots is held by a living process"
    held = _usable - ld_int(&_free)  # cores of calls in progress
    if held:
        add_int(&h.free, -held)
        add_int(&h.slots[i].held, held)
    st_int(&h.slots[i].callers, ld_int(&_callers))  # and its callers
    st_int(&_callers, 0)
    _host_keep = (mapping, view)
    _mine_index, _mine_pid = i, pid
    _mine = &h.slots[i]
    _host = h
    _budget = &h.free
    return None


def host_leave():
    """Leave the host's budget (if joined): the process's own again, with
    the cores its calls in progress hold."""
    global _host_keep
    _host_leave()
    _host_keep = None


def host_joined():
    """Whether this process takes its cores from the host's budget."""
    return _host != NULL


def host_state():
    """The host budget joined (None if not): its usable cores, free cores,
    peak held, cores swept back, this process's slot, and per slot in use
    (pid, held, lent, peak, calls, short, waits, wait seconds, alive)."""
    cdef be_host *h = _host
    cdef be_host_slot *s
    cdef int i, pid
    if h == NULL:
        return None
    rows = []
    for i in range(h.n_slots):
        s = &h.slots[i]
        pid = ld_acq_int(&s.pid)
        if pid <= 0:
            continue
        rows.append((pid, ld_int(&s.held), ld_int(&s.lent), ld_int(&s.peak),
                     ld_ll(&s.calls),
                     ld_ll(&s.short_), ld_ll(&s.waits), ld_ll(&s.wait_ns) / 1e9,
                     pid == _mine_pid or not _gone(pid, ld_ll(&s.start))))
    return {"usable": h.usable, "free": ld_int(&h.free), "peak": ld_int(&h.peak),
            "swept": ld_ll(&h.swept), "slot": _mine_index, "slots": rows}


cdef bint _gone(int pid, long long start):
    cdef char state = 0
    cdef long long t = proc_start(pid, &state)
    return t >= 0 and (t != start or state == b'Z' or state == b'X')


def host_extra_slot():
    """Test hook (the simulation of several processes): another slot of the
    joined budget for this process, as if it were another process: its
    index (-1 if none is free)."""
    if _host == NULL:
        raise RuntimeError("not in a host budget")
    return host_claim(_host, _mine_pid, proc_start(_mine_pid, NULL))


def host_act_as(int i):
    """Test hook: the calls that follow are those of the process of slot
    ``i`` (from :func:`host_extra_slot`, or this process's own)."""
    global _mine, _mine_index
    if _host == NULL or not 0 <= i < _host.n_slots:
        raise ValueError(f"no slot {i} in a joined host budget")
    _mine = &_host.slots[i]
    _mine_index = i


def host_release_slot():
    """Test hook: the process of the slot acted as (:func:`host_act_as`)
    leaves: what it holds and lends back, its slot free."""
    if _host == NULL:
        raise RuntimeError("not in a host budget")
    host_release(_host, _mine_index, _mine_pid)


def host_sweep_now():
    """Give back the cores of dead processes now (whatever the time since
    the last sweep): how many came back."""
    if _host == NULL:
        return 0
    return host_sweep(_host, _mine_pid, now(), 0)


def host_held():
    """Cores held host-wide, as the slots count them (the sum of every
    slot's holdings); -1 if not joined."""
    cdef be_host *h = _host
    cdef int i, n = 0
    if h == NULL:
        return -1
    for i in range(h.n_slots):
        if ld_acq_int(&h.slots[i].pid) > 0:
            n += ld_int(&h.slots[i].held)
    return n


def reset_peak():
    global _peak
    _peak = _in_flight


def set_clock_scale(double scale):
    """Test hook: calls are seen as ``scale`` times longer."""
    global _clock_scale
    _clock_scale = scale


def simulate_clock(bint on, double seconds=0.0):
    """Test hook: the core's clock reads ``seconds`` (and stays there until
    set again) while ``on``; else CLOCK_MONOTONIC.  Switching between the
    two forgets when the last calls ended (their times are of the other
    clock)."""
    global sim_clock, sim_now
    st_ll(&sim_now, <long long>(seconds * 1e9))
    if sim_clock != on:
        _teams_asleep(-(1LL << 62), 0)
    st_int(&sim_clock, on)


def clock():
    """The core's clock, in seconds."""
    return now() / 1e9


def set_idle(double seconds):
    """Test hook: the last parallel call (of the whole team), and the last
    call past a threshold, ended ``seconds`` ago (negative: they will end in
    the future, so the team counts as awake for that long)."""
    _teams_asleep(now() - <long long>(seconds * 1e9), _usable)


def idle(int team=0):
    """Seconds since the last parallel call or call past a threshold (of
    the team's kernels)."""
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    cdef long long recent = max(_teams[team].last_parallel, _teams[team].last_call)
    return (now() - recent) / 1e9


def forked():
    """Whether this process is a forked child in which some kernels run
    serially (their team's runtime does not survive fork)."""
    return bool(forked_child)


def env_is_false(str name):
    """Whether the environment variable is set to false, as LLVM's and
    Intel's OpenMP runtimes read a boolean (the core's reading)."""
    cdef bytes b = name.encode()
    return bool(env_false(b))


def note_omp_started():
    note_parallel()


MAX_TEAM_COUNT = MAX_TEAMS


def set_kernel_team(int kernel, int team):
    """The kernel's OpenMP team (breakeven._core.runtimes decides it)."""
    cdef Slot *s = _slot(kernel)
    if s == NULL:
        raise IndexError(f"no slot {kernel}")
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    st_int(&s.team, team)


def kernel_team(int kernel):
    """The kernel's OpenMP team: 0, breakeven's own runtime's."""
    cdef Slot *s = _slot(kernel)
    if s == NULL:
        raise IndexError(f"no slot {kernel}")
    return ld_int(&s.team)


def set_team_fork(int team, int rule):
    """Whether the team's runtime survives fork: FORK_RULE_NEVER or
    FORK_RULE_UNLESS_KMP."""
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    if rule not in (FORK_NEVER, FORK_UNLESS_KMP):
        raise ValueError(f"no fork rule {rule}")
    _teams[team].fork_rule = rule


def team_survives_fork(int team):
    """Whether a child forked now could run the team's regions."""
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    return bool(_team_survives_fork(&_teams[team]))


def team_state(int team):
    """(started, survives fork, forked) of a team."""
    if not 0 <= team < MAX_TEAMS:
        raise IndexError(f"no team {team}")
    return (bool(_teams[team].started), bool(_team_survives_fork(&_teams[team])),
            bool(_teams[team].forked))


def thread_controls():
    """(exact, cap, section) of the calling thread: threads(n, exact=True),
    threads(n) and the cores of an open section (0: none)."""
    return tl_exact, tl_cap, tl_section


def backoff_state(int kernel, int d):
    """(backed off, thread cap, seconds spent since the last probe, the last
    slow call's seconds, the probe spacing)."""
    cdef Entry *e = _entry_of(kernel, d)
    return (bool(e.backoff), e.cap, e.spent / 1e9, e.probe_cost / 1e9, e.ratio)


def make_probe_due(int kernel, int d):
    """Test hook: the backed-off calls have taken long enough for a probe
    (of any work)."""
    cdef Entry *e = _entry_of(kernel, d)
    st_ll(&e.spent, 1LL << 62)


def stats(bint reset=False):
    """Per slot and dtype index with any call: a dict of counters."""
    cdef int k, d
    cdef Entry *e
    out = []
    for k in range(_n_slots):
        for d in range(N_DTYPES):
            e = (<Slot **>_slots)[k].entries[d]
            if e == NULL or e.n_serial + e.n_parallel == 0:
                continue
            out.append({
                "slot": k, "dtype": DTYPES[d],
                "serial": e.n_serial, "parallel": e.n_parallel,
                "thread_sum": e.thread_sum, "most_threads": e.most_threads,
                "backoffs": e.n_backoffs, "probes": e.n_probes,
                "recoveries": e.n_recoveries,
                "parallel_seconds": e.ns_parallel / 1e9,
                "serial_seconds_timed": e.ns_serial / 1e9,
                "serial_timed": e.n_serial_timed,
                "serial_seconds_sampled": e.ns_sampled / 1e9,
                "serial_sampled": e.n_sampled,
                "backed_off": bool(e.backoff), "cap": e.cap,
                "estimate": bool(e.estimate), "explored": e.n_explored,
                "learned": sum(1 for b in range(BUCKETS) if e.learned[b]),
                "waits": e.n_waits, "wait_seconds": e.ns_waited / 1e9,
            })
            if reset:
                e.n_serial = e.n_parallel = e.thread_sum = 0
                e.n_backoffs = e.n_probes = e.n_recoveries = 0
                e.ns_parallel = e.ns_serial = e.n_serial_timed = 0
                e.ns_sampled = e.n_sampled = 0
                e.most_threads = 0
                e.n_explored = 0
                e.n_waits = e.ns_waited = 0
    return out
