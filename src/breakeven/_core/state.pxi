# The core's state: the rule's constants, each kernel's tables and what its
# calls taught, and the process's state.
# (an include file of engine.pyx: see its docstring)

cdef enum:
    MAX_STEPS = 16   # steps of a table (thread counts above serial)
    MAX_GAPS = 8     # cold tables, one per measured idle time
    BUCKETS = 64     # log2 sizes of the contention check
    # thread counts whose rates are kept per kernel and dtype (every count a
    # calibration tries, on hosts of up to ~2^15 CPUs)
    MAX_TC = 16
    N_DTYPES = 6
    N_TYPENUMS = 32  # NumPy type numbers mapped to dtype indices
    MAX_BLAS = 8
    SAMPLE_EVERY = 16  # one serial call in this many is timed (a power of 2)
    SAMPLE_BITS = 4    # its log2

# call flags (dispatch.Call.flags)
cdef enum:
    F_EXPLORE = 256    # the estimate's other choice, to measure it
    F_NOT_HOT = 512    # not back to back with the last parallel call
    F_HELD = 1         # holds a free core of the budget while it runs serially
    F_COLD = 2         # found the team asleep: its time includes the wake-up
    F_TIMED = 4        # timed serial call
    F_BACKED_OFF = 8   # ran with fewer threads for contention
    F_PROBE = 16       # a probe at the full thread count
    F_SECTION = 32     # cores of the caller's section, not of the budget
    F_BLAS = 64        # capped BLAS, to restore
    F_FORCED = 128     # threads(n, exact=True)
    F_CALLER = 1024    # counted among the callers sharing the cores
    F_PAST = 2048      # past its threshold, run serially: its end is a loop's
    F_OVER = 4096      # runs serially on a core the budget did not have
    F_WHOLE = 8192     # ran on the count the rule chose (not cut by share or cores)
    F_COUNT = 16384    # the estimate's exploration of another count: its speed-up
    F_RUN_START = 32768  # among the first RUN_START calls of a run of one size
    F_NEW_SIZE = 65536  # a size other than the last call's: another size's caches
    F_SAMPLE = 131072  # a serial call timed as a sample (one in SAMPLE_EVERY)
    F_SWITCH = 262144  # the other choice than the last call's at its size: caches
    F_FAR = 524288     # one call exploring serial far behind: taught as it is
    # not what the rule would choose: its time teaches no arm
    F_UNJUDGED = F_BACKED_OFF | F_FORCED | F_PROBE

# The first RUN_START calls of a run of calls of one size (of a kernel and
# dtype whose calls come in runs longer than that) teach no arm: they meet
# the caches another size left, and may run several times slower than the
# rest, serial and parallel alike, so that an arm taught more of them than
# the other would lose by where its calls fell, not by what it costs.
# (Calls that change size every time or almost are all taught: there, every
# call meets such caches.)
RUN_START = 3
cdef int C_RUN_START = RUN_START

# The estimate (a kernel without a table): a parallel call of t threads is
# taken to cost serial / (t * EFFICIENCY) + the team's hot start.  At most
# one call in EXPLORE_EVERY tries the other choice (a table's as well as the
# estimate's) while the size is unsettled or the other choice has fewer
# than EXPLORE_UNTIL measurements there (then one in EXPLORE_LATER), and
# only where the model puts it at most EXPLORE_LOSS times as slow:
# exploring costs at most (EXPLORE_LOSS - 1) / EXPLORE_EVERY of the time,
# for a while.
EFFICIENCY = 0.9
EXPLORE_EVERY = 32
EXPLORE_LOSS = 2.0
cdef double C_EFFICIENCY = EFFICIENCY
cdef long long C_EXPLORE_EVERY = EXPLORE_EVERY
cdef double C_EXPLORE_LOSS = EXPLORE_LOSS
# More threads must beat fewer by this much to be preferred: the estimate's
# rule here, and calibration's when it chooses a table (breakeven._profile.steps).
MARGIN = 0.05
cdef double C_MARGIN = MARGIN
# Once a size's other choice has this many measurements, it is explored
# once in EXPLORE_LATER calls only (what the calls meet can change: a size
# called among others meets cold caches, the same size in a loop warm ones).
EXPLORE_UNTIL = 8
cdef int C_EXPLORE_UNTIL = EXPLORE_UNTIL
EXPLORE_LATER = 256
cdef long long C_EXPLORE_LATER = EXPLORE_LATER
# The online check (every kernel, whatever decided it): per log2 size, the
# mean and variance of the serial calls' time per unit of work, and of the
# parallel calls' that ran hot on the count the rule chose (like with like:
# a parallel call that woke the team, or was cut short of cores, is not
# compared with a serial one).  A mean, not a median: costs are
# heavy-tailed, and the expected cost is what a choice costs in the end.
# The last ARM_WEIGHT calls weigh most (an exponential mean after that
# many), so that a mean follows a host that changes.  A choice is settled
# when the evidence is confident: parallel when it beats serial by MARGIN
# by more than CONFIDENT standard errors, serial when it falls short of
# that by more than CONFIDENT_SERIAL of them (serial, which holds fewer
# cores, wins a tie), each with EVIDENCE_MIN calls at least (with few calls,
# the standard errors count for more: see _gain_z); otherwise the
# choice stays as it was (the table's, or the model's, or what was settled
# before): noise does not flip a settled choice.
EVIDENCE_MIN = 2
# A call's time counts at most CLIP times its choice's mean (see _teach).
CLIP = 4.0
cdef double C_CLIP = CLIP
ARM_WEIGHT = 64
CONFIDENT = 2.0
CONFIDENT_SERIAL = 1.0
cdef int C_EVIDENCE_MIN = EVIDENCE_MIN
cdef int C_ARM_WEIGHT = ARM_WEIGHT
cdef double C_CONFIDENT = CONFIDENT
cdef double C_CONFIDENT_SERIAL = CONFIDENT_SERIAL
# A table's choice is checked at sizes from its threshold / CHECK_BELOW up
# (below that the calls take the fast path, unchecked: parallel there would
# cost more than EXPLORE_LOSS times serial by any table worth its name).
CHECK_BELOW = 4
cdef double C_CHECK_BELOW = CHECK_BELOW
# The wake-up the calls measured after an idle time decides, once this
# many calls measured it (a mean: a few costly wake-ups among cheap ones
# are what a call should expect).
WAKE_EVIDENCE = 2
cdef int C_WAKE_EVIDENCE = WAKE_EVIDENCE
# A call a costly wake-up sent serial runs in parallel again, to measure the
# wake-up anew, once such calls have taken LONE_PACE times what that one
# is expected to lose: at most 1 / LONE_PACE of their time.
LONE_PACE = 32
cdef double C_LONE_PACE = LONE_PACE
# Calls a wake-up sent serial within this long (ns) of each other are a
# loop's: their losses add up, and once they would have paid for the
# wake-up, the team is woken (see _wake_checked).
cdef long long RENT_GAP = 1000000

SLOW = 3.0
SEVERE = 10.0
BACKOFF_AFTER = 4
PROBE_RATIO = 20
cdef double C_SLOW = SLOW
cdef double C_SEVERE = SEVERE
cdef int C_BACKOFF_AFTER = BACKOFF_AFTER
cdef int C_PROBE_RATIO = PROBE_RATIO
# Backing off again within this long of a probe that lifted a back-off
# (contention that comes and goes) doubles the probe spacing, up to 64 x.
cdef long long RELAPSE_NS = 2000000000
# A parallel call this long (ns) after the last one is not judged for
# contention: it may have woken the team (see _in_parallel, calls.pxi).
cdef long long UNJUDGED_AFTER = 1000000
# A parallel call starting this long (ns) after the last one ended found
# the team idle: it measures the wake-up, not the parallel rate (see
# _in_parallel, calls.pxi, and _saw_wake).
cdef long long HOT_GAP = 100000
# ... nor the first HOT_RUN - 1 parallel calls after one that found the team
# idle: a woken virtual CPU may take a while to run again.  (So the
# estimate's exploration of parallel runs EXPLORE_RUN + 1 calls in a row,
# the first waking the team.)
cdef int HOT_RUN = 2
cdef int EXPLORE_RUN = 2
cdef int MAX_RATIO = 64 * PROBE_RATIO

DTYPES = ("float64", "float32", "int64", "int32", "complex128", "complex64")
# The most steps of a table and cold tables (one per idle time) the core
# keeps: a profile holds no more.
STEPS_MAX = MAX_STEPS
GAPS_MAX = MAX_GAPS


ctypedef struct Steps:
    int n
    Py_ssize_t work[MAX_STEPS]
    int threads[MAX_STEPS]

ctypedef struct Arm:
    # the calls measured at one size and choice: the mean and variance of
    # their seconds per unit of work, weighted as in ARM_WEIGHT, and how
    # many there were (up to 2^30)
    double mean
    double var
    int n


ctypedef struct Entry:
    # What every call reads or writes first, together in the first cache
    # lines: a call below its threshold touches nothing else.
    int has_table
    double hot_min       # the smallest work the hot table sends parallel
    # calls of less work take the fast path: serial, unchecked (the hot
    # threshold over CHECK_BELOW, lower where the calls settled parallel;
    # for the estimate, where the model rules parallel out)
    double fast_min
    long long n_serial   # counters (atomic)
    long long n_parallel
    int backoff          # the back-off: read by begin() without the lock
    int cap
    long long spent       # ns the backed-off calls took since the last probe
    long long probe_cost  # ns the last slow call took
    long long probe_work  # ... and its work
    int ratio             # the probe spacing in force
    int probing
    long long recovered_at
    # the other counters
    long long thread_sum
    long long n_backoffs
    long long n_probes
    long long n_recoveries
    long long ns_parallel
    long long ns_serial       # serial calls timed for a purpose (all of them)
    long long n_serial_timed
    long long ns_sampled      # ... and as a sample of the others
    long long n_sampled
    int most_threads
    long long n_explored
    long long n_waits     # calls that waited for cores, and how long (ns)
    long long ns_waited
    # no table: the estimate, refined by the calls (see _estimated)
    int estimate
    long long explore
    int explore_left      # calls of explore_size still to run in parallel
    int explore_size
    int explore_serial    # ... or serially (an exploration of serial)
    # the tables (see the module docstring on concurrency)
    Steps hot
    int n_gaps
    long long gap[MAX_GAPS]  # ns idle from which cold[g] applies
    Steps cold[MAX_GAPS]
    # the contention check, under `lock`
    int lock
    int slow_run
    int severe_run
    int rate_threads[MAX_TC]
    long long rate_used[MAX_TC]
    double best[MAX_TC][BUCKETS]      # best seconds per unit of work seen
    signed char seeded[MAX_TC][BUCKETS]  # which size seeded each entry (-1: seen)
    # the online check's evidence per log2 size (see ARM_WEIGHT), and what
    # it settled (0: nothing yet, 1: serial, 2: parallel); the least work
    # the estimate's model may send parallel or explore (see _model_bound)
    double model_min
    Arm ser[BUCKETS]
    Arm par[BUCKETS]
    signed char learned[BUCKETS]
    # the log2 size of the last call off the fast path, the calls of that
    # size in a row so far, and the mean length of such runs before
    int run_b
    int run_n
    int run_wide          # whether the last call ran in parallel
    Arm run_len
    # the speed-up over serial its parallel calls measured on each of the
    # estimate's thread counts (_counts) at each log2 size, past the
    # team's start (a size's data may fit the caches of many cores and not
    # of a few: the best count depends on the size)
    Arm speed[MAX_TC][BUCKETS]
cdef extern from "runtime.h":
    void zero_entry "be_zero"(Entry *e) noexcept nogil


ctypedef struct Slot:
    int uses_blas
    int team         # the kernel's OpenMP team (an index of _teams)
    Entry *entries[N_DTYPES]

# The slots (be_slots, be_n_slots above) grow with the GIL held; an array
# replaced by a bigger one is kept (a caller may still be reading it), and a
# Slot never moves.
cdef int _cap_slots = 0
cdef signed char _dtype_of[N_TYPENUMS]

# process state
cdef int _usable = 1
cdef int _free = 1
cdef int _in_flight = 0
cdef int _peak = 0
cdef int _sim_max = 0          # simulated omp_get_max_threads (0: the real one)
cdef int _configured = 0       # the profile's tables are loaded
cdef long long _sleep_after = 0  # ns idle after which the team sleeps (0: never)
# Calls in progress that wanted several threads (outside sections): each is
# a caller the cores are shared among.
cdef int _callers = 0
# The OpenMP teams: one per OpenMP runtime the kernels' loops run on.
# Team 0 is the runtime breakeven's own kernels run on; a kernel of a
# library that loaded another runtime (its own libgomp beside breakeven's
# libomp, say) runs its loops on that runtime's threads, which wake and
# sleep on their own: its team is another (breakeven._core.runtimes gives
# each registered kernel its team).  Whether a team is awake is its own.
cdef enum:
    MAX_TEAMS = 4
    # log2 idle times whose wake-up the calls measure: from 2^WAKE_FROM ns
    # (65 us; a team idle for less is hot) to 2^(WAKE_FROM + WAKE_BUCKETS - 1)
    WAKE_FROM = 16
    WAKE_BUCKETS = 20

ctypedef struct Team:
    long long last_parallel  # ns, end of its last parallel call
    long long last_call      # ns, of its last call past a threshold
    # ns of the last call held to the awake part of the team: a call soon
    # after it is in a loop, and wakes the rest (once) instead
    long long held_back
    # The end (ns) and width of the last parallel call of each bit length
    # of its thread count: the threads of the widest one within the sleep
    # time are awake, the rest of the pool has gone to sleep.
    long long wide_end[32]
    int wide_n[32]
    int started      # a parallel region ran on it (in this process)
    int fork_rule    # FORK_* below: whether its pool survives fork
    int kmp_no_fork  # KMP_INIT_AT_FORK was false when it started
    int forked       # this is a forked child, and the team cannot run here
    int hot_run      # parallel calls in a row since one that found it idle
    # What a parallel call that found it idle paid beyond a hot call (ns),
    # per log2 idle time (see _idle_bucket), as the calls measured it: its
    # wake-up.  The loss (ns) of the calls a wake-up sent serial since it
    # last ran, while they come close together (rent: see _wake_checked),
    # and the credit of such calls towards measuring the wake-up anew
    # (LONE_PACE).  The calls past a threshold of the run going on (calls
    # at most RENT_GAP apart), and the mean length of the runs before it.
    Arm wake[WAKE_BUCKETS]
    double rent
    double credit
    int run_calls
    Arm run_len
    int lock         # of wake

cdef Team _teams[MAX_TEAMS]

# Whether a team's pool survives fork, by its runtime
# (breakeven._core.runtimes.FORK_RULES says which).  LLVM's and Intel's
# runtimes start a new pool in the child from a fork handler they register
# when they start, unless KMP_INIT_AT_FORK is false then (scikit-learn sets
# it so when imported): the child's first region then hangs, as libgomp's.
cdef enum:
    FORK_NEVER = 1      # libgomp, or not known
    FORK_UNLESS_KMP = 2  # LLVM's, Intel's: unless KMP_INIT_AT_FORK is false
FORK_RULE_NEVER = FORK_NEVER
FORK_RULE_UNLESS_KMP = FORK_UNLESS_KMP
cdef double _clock_scale = 1.0
# The host's team costs, for the estimate: a hot region's start (ns) and the
# wake-up after each measured idle time (ns from, ns cost).
cdef double _team_hot_ns = 2000.0
# The thread counts the estimate chooses among (the calibration's
# candidates, breakeven._calibrate.settings.thread_candidates, up to the
# host's count; at most MAX_TC) and each one's hot start (ns): the team's
# start grows with its threads, so that a call too small for all of a
# many-core host's CPUs may still pay on a few.
cdef int _n_counts = 0
cdef int _counts[MAX_TC]
cdef double _counts_hot_ns[MAX_TC]
cdef int _n_wake = 0
cdef long long _wake_gap[MAX_GAPS]
cdef double _wake_cost[MAX_GAPS]
cdef object _load_hook = None   # loads the profile at the first call
cdef object _blas_hook = None   # finds the BLAS thread setters


cdef inline int _bucket(Py_ssize_t n) noexcept nogil:
    cdef int b = 0
    while n > 0 and b < BUCKETS - 1:
        n >>= 1
        b += 1
    return b


cdef inline Slot *_slot(int kernel) noexcept nogil:
    if kernel < 0 or kernel >= ld_acq_int(&_n_slots):
        return NULL
    return (<Slot **>slots_load())[kernel]


cdef void _init_entry(Entry *e) noexcept nogil:
    cdef int i, b
    e.hot_min = INFINITY
    e.fast_min = 0
    e.ratio = C_PROBE_RATIO
    e.recovered_at = -(1LL << 62)
    for i in range(MAX_TC):
        e.rate_threads[i] = 0
        for b in range(BUCKETS):
            e.seeded[i][b] = -100


cdef Entry *_entry(Slot *s, int d) noexcept nogil:
    """The slot's entry for dtype index d, made on first use."""
    cdef Entry *e = <Entry *>load_ptr(<void **>&s.entries[d])
    cdef Entry *made
    if e != NULL:
        return e
    made = <Entry *>calloc(1, sizeof(Entry))
    if made == NULL:
        return NULL
    _init_entry(made)
    if cas_ptr(<void **>&s.entries[d], NULL, made):
        return made
    free(made)  # another thread made it first
    return <Entry *>load_ptr(<void **>&s.entries[d])


cdef inline int _dtype_index(int typenum) noexcept nogil:
    if typenum < 0 or typenum >= N_TYPENUMS:
        return -1
    return _dtype_of[typenum]


cdef inline int _max_threads() noexcept nogil:
    """omp_get_max_threads() (or simulated), lowered to the limit set
    through threadpoolctl if there is one."""
    cdef int m = _sim_max if _sim_max > 0 else omp_get_max_threads()
    cdef int p = pool_limit()
    return p if 0 < p < m else m


cdef inline int _full_count() noexcept nogil:
    """The most threads a call may get here: the estimate's count."""
    cdef int m = _max_threads()
    return m if m < _usable else _usable


cdef int usable_count() noexcept nogil:
    return _usable
