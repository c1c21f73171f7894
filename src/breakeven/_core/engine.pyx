"""The dispatch core: every per-call decision, and all per-process dispatch state.

One rule decides how many threads a call gets (:func:`_decide`).  It runs
for the built-in drop-ins, for kernels of other libraries through the public
Cython API (``breakeven/dispatch.pxd``), for ``@breakeven.kernel`` callables,
for :func:`breakeven.decide`, and, as a dry run, for
:func:`breakeven.explain`.  For a call of kernel ``k`` (a slot) on dtype
``d`` with work ``w``:

1. a forked child of a process that ran OpenMP regions runs serially
   (libgomp's thread pool does not survive ``fork``);
2. ``threads(n, exact=True)`` in force on the calling thread: ``n``;
3. otherwise the step table: a kernel with no table for ``d`` runs serially;
   below the hot table's threshold, serially (no clock read); past it, the
   hot table, or, for a lone call (no call past a threshold within the
   team's calibrated sleep time, and no section open), the cold table of the
   longest measured idle time not longer than this one's;
4. capped by ``threads(n)``; a kernel backed off for contention gets its
   reduced count (or, when a probe is due, its full count);
5. clamped by the usable CPUs, ``omp_get_max_threads()`` and a limit set
   through threadpoolctl; serial inside an OpenMP region;
6. within an open ``section()``, at most its cores; else taken from the
   process's core budget (fewer if fewer are free);
7. fewer than 2: serial; a call past its threshold that runs serially still
   holds a core of the budget while it runs, if one is free.

``end()`` returns the cores, records the time, and feeds the contention
check: a parallel call more than SLOW times slower than the best seen for
its thread count and size counts as contended; BACKOFF_AFTER such calls in a
row (or two SEVERE ones) halve the kernel's threads; a probe at the full
count runs once the backed-off calls have taken PROBE_RATIO times the last
slow call's time, and lifts the back-off if it runs at normal speed.

Concurrency: the core budget and the counters are updated with atomic
instructions, a kernel's contention state under a spin lock that a caller
finding it taken simply skips (a lost observation only delays a back-off by
one call), and the tables are written with the GIL held while calls may read
them (a call racing a reconfiguration may see a mix of old and new steps;
every index is bounded, so the worst it gets is an odd thread count, and
every kernel is correct for any thread count).
"""
from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport INFINITY
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from breakeven cimport dispatch
from breakeven._core.omp cimport omp_get_max_threads, omp_in_parallel

import numpy as np

from breakeven._cpu import usable_cpus as _count_usable_cpus

cdef extern from *:
    """
    #include <limits.h>
    #include <time.h>
    #if !defined(_WIN32)
    #include <pthread.h>
    #endif

    #define BE_LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
    #define BE_ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
    #define BE_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
    #define BE_LD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define BE_ST_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

    static inline int be_cas_int(int *p, int *expected, int desired) {
        return __atomic_compare_exchange_n(p, expected, desired, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
    static inline int be_cas_ptr(void **p, void *expected, void *desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline int be_trylock(int *lock) {
        return __atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE) == 0;
    }
    static inline void be_lock(int *lock) {
        while (!be_trylock(lock)) {
            while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
    #if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
    #endif
            }
        }
    }
    static inline void be_unlock(int *lock) {
        __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
    }
    static inline void be_max_int(int *p, int v) {
        int old = __atomic_load_n(p, __ATOMIC_RELAXED);
        while (v > old && !__atomic_compare_exchange_n(p, &old, v, 1,
                __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { }
    }

    /* the slots (breakeven._core.engine.Slot pointers), grown with the GIL held */
    static void **be_slots = NULL;
    static int be_n_slots = 0;
    static inline void **be_slots_load(void) {
        return __atomic_load_n(&be_slots, __ATOMIC_ACQUIRE);
    }
    static inline void be_slots_store(void **v) {
        __atomic_store_n(&be_slots, v, __ATOMIC_RELEASE);
    }
    static inline void *be_load_ptr(void **p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }

    /* The process-wide thread limit that threadpoolctl sets through
       breakeven's controller (breakeven/_threadpool.py), which finds this
       module by these two exported symbols; 0 = no limit. */
    #if defined(_WIN32)
    #define BE_EXPORT __declspec(dllexport)
    #else
    #define BE_EXPORT __attribute__((visibility("default")))
    #endif
    static int be_pool_limit = 0;
    BE_EXPORT int breakeven_get_thread_limit(void) {
        return __atomic_load_n(&be_pool_limit, __ATOMIC_RELAXED);
    }
    BE_EXPORT void breakeven_set_thread_limit(int n) {
        __atomic_store_n(&be_pool_limit, n > 0 ? n : 0, __ATOMIC_RELAXED);
    }

    /* threads() and section() of the calling thread */
    static __thread int be_tl_exact = 0;    /* threads(n, exact=True): n */
    static __thread int be_tl_cap = 0;      /* threads(n): n; 0 = none */
    static __thread int be_tl_section = 0;  /* cores of an open section */

    /* The clock: CLOCK_MONOTONIC in nanoseconds, or the simulated one. */
    static int be_sim_clock = 0;
    static long long be_sim_now = 0;
    static inline long long be_now(void) {
        struct timespec ts;
        if (__atomic_load_n(&be_sim_clock, __ATOMIC_RELAXED))
            return __atomic_load_n(&be_sim_now, __ATOMIC_RELAXED);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }

    /* fork: the child of a process that ran OpenMP regions stays serial */
    static int be_omp_started = 0;
    static int be_forked = 0;
    static void (*be_on_fork_child)(void) = NULL;
    static void be_fork_child(void) {
        if (__atomic_load_n(&be_omp_started, __ATOMIC_RELAXED))
            be_forked = 1;
        be_tl_section = 0;
        if (be_on_fork_child != NULL)
            be_on_fork_child();
    }
    static int be_register_atfork(void (*child)(void)) {
        be_on_fork_child = child;
    #if !defined(_WIN32)
        return pthread_atfork(NULL, NULL, be_fork_child);
    #else
        return 0;
    #endif
    }
    """
    int ld_int "BE_LD"(int *p) noexcept nogil
    long long ld_ll "BE_LD"(long long *p) noexcept nogil
    void st_int "BE_ST"(int *p, int v) noexcept nogil
    void st_ll "BE_ST"(long long *p, long long v) noexcept nogil
    int add_int "BE_ADD"(int *p, int v) noexcept nogil
    long long add_ll "BE_ADD"(long long *p, long long v) noexcept nogil
    int ld_acq_int "BE_LD_ACQ"(int *p) noexcept nogil
    void st_rel_int "BE_ST_REL"(int *p, int v) noexcept nogil
    bint cas_int "be_cas_int"(int *p, int *expected, int desired) noexcept nogil
    bint cas_ptr "be_cas_ptr"(void **p, void *expected, void *desired) noexcept nogil
    bint trylock "be_trylock"(int *lock) noexcept nogil
    void lock "be_lock"(int *lock) noexcept nogil
    void unlock "be_unlock"(int *lock) noexcept nogil
    void max_int "be_max_int"(int *p, int v) noexcept nogil
    void **slots_load "be_slots_load"() noexcept nogil
    void slots_store "be_slots_store"(void **v) noexcept nogil
    void *load_ptr "be_load_ptr"(void **p) noexcept nogil
    void **_slots "be_slots"
    int _n_slots "be_n_slots"
    int pool_limit "breakeven_get_thread_limit"() noexcept nogil
    void set_pool_limit "breakeven_set_thread_limit"(int n) noexcept nogil
    int tl_exact "be_tl_exact"
    int tl_cap "be_tl_cap"
    int tl_section "be_tl_section"
    int sim_clock "be_sim_clock"
    long long sim_now "be_sim_now"
    long long now "be_now"() noexcept nogil
    int omp_started "be_omp_started"
    int g_forked "be_forked"
    int register_atfork "be_register_atfork"(void (*child)() noexcept nogil) noexcept


# ---------------------------------------------------------------------------
# constants of the rule
# ---------------------------------------------------------------------------

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
    RING = 8         # the estimate's recent measurements per size and choice
    SAMPLE_EVERY = 16  # one serial call in this many is timed

# call flags (dispatch.Call.flags)
cdef enum:
    F_EXPLORE = 256    # the estimate's other choice, to measure it
    F_NOT_HOT = 512    # not back to back with the last parallel call
    F_HELD = 1         # holds a core of the budget while it runs serially
    F_COLD = 2         # found the team asleep: its time includes the wake-up
    F_TIMED = 4        # timed serial call
    F_BACKED_OFF = 8   # ran with fewer threads for contention
    F_PROBE = 16       # a probe at the full thread count
    F_SECTION = 32     # cores of the caller's section, not of the budget
    F_BLAS = 64        # capped BLAS, to restore
    F_FORCED = 128     # threads(n, exact=True)
    F_CALLER = 1024    # counted among the callers sharing the cores

# what decided (Why.table)
cdef enum:
    T_NONE = 0      # no table for this kernel and dtype
    T_HOT = 1
    T_COLD = 2
    T_FORCED = 3    # threads(n, exact=True)
    T_FORKED = 4
    T_ESTIMATE = 5  # no table: the model, from the kernel's serial rate
    T_LEARNED = 6   # no table: both choices measured at this size

# The estimate (a kernel without a table): a parallel call of t threads is
# taken to cost serial / (t * EFFICIENCY) + the team's hot start; a call
# timed serially teaches the serial rate, a parallel one the parallel rate,
# per log2 size, and once a size has both (twice each), the medians of the
# last calls of each decide.  At most one call in EXPLORE_EVERY tries the
# other choice while it has fewer than EXPLORE_UNTIL measurements at that
# size (then one in EXPLORE_LATER), and only where the model puts it at
# most EXPLORE_LOSS times as slow: exploring costs at most
# (EXPLORE_LOSS - 1) / EXPLORE_EVERY of the time, for a while.
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
cdef int EXPLORE_UNTIL = 8
cdef long long EXPLORE_LATER = 256
# In estimate mode a size's serial calls are all timed until EXPLORE_UNTIL
# of them are; then, of at least ESTIMATE_TIME_ALL work, one in
# ESTIMATE_SAMPLE, and smaller ones one in SAMPLE_EVERY (a clock read costs
# as much as a small call): they keep the serial rate up to date.
cdef Py_ssize_t ESTIMATE_TIME_ALL = 4096
cdef long long ESTIMATE_SAMPLE = 4

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
# contention: it may have woken the team (see _decide).
cdef long long UNJUDGED_AFTER = 1000000
# A parallel call starting this long (ns) after the last one ended does not
# teach the estimate its parallel rate (see _decide).
cdef long long HOT_GAP = 100000
cdef int MAX_RATIO = 64 * PROBE_RATIO

DTYPES = ("float64", "float32", "int64", "int32", "complex128", "complex64")
# The most steps of a table and cold tables (one per idle time) the core
# keeps: a profile holds no more.
STEPS_MAX = MAX_STEPS
GAPS_MAX = MAX_GAPS


# ---------------------------------------------------------------------------
# per-kernel state
# ---------------------------------------------------------------------------

ctypedef struct Steps:
    int n
    Py_ssize_t work[MAX_STEPS]
    int threads[MAX_STEPS]

ctypedef struct Entry:
    # What every call reads or writes first, together in the first cache
    # lines: a call below its threshold touches nothing else.
    int has_table
    double hot_min       # the smallest work the hot table sends parallel
    long long n_serial   # counters (atomic)
    long long n_parallel
    int backoff          # the back-off: read by begin() without the lock
    int cap
    long long spent       # ns the backed-off calls took since the last probe
    long long probe_cost  # ns the last slow call took
    int ratio             # the probe spacing in force
    int probing
    long long recovered_at
    # the other counters
    long long thread_sum
    long long n_backoffs
    long long n_probes
    long long n_recoveries
    long long ns_parallel
    long long ns_serial
    long long n_serial_timed
    int most_threads
    long long n_explored
    # no table: the estimate, refined by the calls (see _estimated)
    int estimate
    long long explore
    int explore_left      # calls of explore_size still to run in parallel
    int explore_size
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
    # the estimate's measurements, per log2 size: seconds per unit of work
    # of the last RING calls run serially and at the host's full count, their
    # medians (0: none yet), how many calls measured them (at most 100), and
    # what they decided (0: not yet, 1: serial, 2: parallel)
    float ser_ring[BUCKETS][RING]
    float par_ring[BUCKETS][RING]
    double ser_rate[BUCKETS]
    double par_rate[BUCKETS]
    signed char ser_n[BUCKETS]
    signed char par_n[BUCKETS]
    signed char learned[BUCKETS]

ctypedef struct Slot:
    int uses_blas
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
cdef long long _last_parallel = -(1LL << 62)  # ns, end of the last parallel call
cdef long long _last_call = -(1LL << 62)      # ns, of the last call past a threshold
# Calls in progress that wanted several threads (outside sections): each is
# a caller the cores are shared among.
cdef int _callers = 0
# The end (ns) and width of the last parallel call of each bit length of its
# thread count: the threads of the widest one within the sleep time are
# awake, the rest of the pool has gone to sleep.
cdef long long _wide_end[32]
cdef int _wide_n[32]
# ns of the last call held to the awake part of the team: a call soon after
# it is in a loop, and wakes the rest (once) instead
cdef long long _held_back = -(1LL << 62)
cdef double _clock_scale = 1.0
# The host's team costs, for the estimate: a hot region's start (ns) and the
# wake-up after each measured idle time (ns from, ns cost).
cdef double _team_hot_ns = 2000.0
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


# ---------------------------------------------------------------------------
# BLAS, held at one thread while a kernel calling it runs in parallel
# ---------------------------------------------------------------------------

ctypedef int (*blas_get_fn)() noexcept nogil
ctypedef void (*blas_set_fn)(int) noexcept nogil

cdef blas_get_fn _blas_get[MAX_BLAS]
cdef blas_set_fn _blas_set[MAX_BLAS]
cdef int _blas_saved[MAX_BLAS]
cdef int _n_blas = -1       # -1: not looked up yet
cdef int _blas_users = 0    # calls and sections holding the cap
cdef int _blas_lock = 0


cdef void _find_blas() noexcept nogil:
    """Ask the Python side for the BLAS thread setters, once."""
    if ld_acq_int(&_n_blas) >= 0:
        return
    with gil:
        if _n_blas < 0:
            try:
                set_blas(_blas_hook() if _blas_hook is not None else [])
            except Exception:  # no BLAS we can cap: nothing to cap
                set_blas([])


def set_blas(pairs):
    """The BLAS libraries to cap, as ``(get_num_threads, set_num_threads)``
    C function addresses (functions that need no GIL)."""
    global _n_blas
    cdef Py_ssize_t i
    pairs = list(pairs)[:MAX_BLAS]
    lock(&_blas_lock)
    try:
        if _blas_users:
            raise RuntimeError("BLAS is capped now: set the libraries later")
        for i, (get, set_) in enumerate(pairs):
            _blas_get[i] = <blas_get_fn><size_t>get
            _blas_set[i] = <blas_set_fn><size_t>set_
        st_rel_int(&_n_blas, len(pairs))
    finally:
        unlock(&_blas_lock)


def blas_state():
    """(BLAS libraries capped by the core, or -1 before the look-up; calls and
    sections holding the cap now)."""
    return _n_blas, _blas_users


cdef void _blas_cap() noexcept nogil:
    global _blas_users
    cdef int i
    _find_blas()
    lock(&_blas_lock)
    if _blas_users == 0:
        for i in range(_n_blas):
            _blas_saved[i] = _blas_get[i]()
            if _blas_saved[i] != 1:
                _blas_set[i](1)
    _blas_users += 1
    unlock(&_blas_lock)


cdef void _blas_restore() noexcept nogil:
    global _blas_users
    cdef int i
    lock(&_blas_lock)
    _blas_users -= 1
    if _blas_users == 0:
        for i in range(_n_blas):
            if _blas_saved[i] != 1:
                _blas_set[i](_blas_saved[i])
    unlock(&_blas_lock)


# ---------------------------------------------------------------------------
# the budget
# ---------------------------------------------------------------------------

cdef inline int _take(int want) noexcept nogil:
    """Take up to ``want`` cores for a parallel call: the number taken, or 0
    if fewer than 2 are free."""
    cdef int f = ld_int(&_free), got
    while True:
        got = want if want < f else f
        if got < 2:
            return 0
        if cas_int(&_free, &f, f - got):
            return got


cdef inline bint _hold() noexcept nogil:
    """One core for a parallel-sized call that runs serially, if one is free."""
    cdef int f = ld_int(&_free)
    while f > 0:
        if cas_int(&_free, &f, f - 1):
            max_int(&_peak, add_int(&_in_flight, 1) + 1)
            return True
    return False


# ---------------------------------------------------------------------------
# the rule
# ---------------------------------------------------------------------------

ctypedef struct Why:
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
    bint explore        # the estimate's other choice
    double serial_ns    # the estimate's predicted serial time (0: none)
    double parallel_ns  # ... and parallel time
    int share           # lowered to this fair share of the CPUs (0: not)
    int callers         # ... among this many callers
    int awake           # held to the awake part of the team, this wide (0: not)


cdef inline int _bits(int t) noexcept nogil:
    cdef int k = 0
    while t > 1 and k < 31:
        t >>= 1
        k += 1
    return k


cdef inline int _awake(long long t_now, int want, long long *since) noexcept nogil:
    """The threads of the team still awake (the widest parallel call that
    ended within the sleep time; 1 if none), and in ``since`` when a call of
    at least ``want`` threads last ended."""
    cdef int k, n, awake = 1
    cdef long long end
    since[0] = -(1LL << 62)
    for k in range(1, _bits(_usable) + 2):
        n = ld_int(&_wide_n[k])
        if n < 2:
            continue
        end = ld_ll(&_wide_end[k])
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


# mode of _decide
cdef enum:
    M_CALL = 0     # a real call: take cores, read and write the clocks
    M_DRY = 1      # what a call now would get (no side effect)
    M_HOT = 2      # ... as a call in a loop (the team awake)
    M_IDLE = 3     # ... as a lone call after `idle` ns


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


cdef int _estimated(Entry *e, Py_ssize_t work, int full, bint lone, long long idle,
                    dispatch.Call *c, Why *why, bint real) noexcept nogil:
    """The threads of a call of a kernel without a table: what its calls
    taught (both choices measured at this size), else the model from its
    serial rate and the team's costs; 1 without a serial rate yet.  A real
    call may explore the other choice (see EXPLORE_EVERY)."""
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
    if why != NULL:
        why.table = T_LEARNED if learned and not lone else T_ESTIMATE
        why.serial_ns = ts
        why.parallel_ns = tp if rs > 0 or rp > 0 else 0
    if rs <= 0:
        return 1  # nothing known yet: serially, and the call is timed
    if learned and not lone:
        return _explore(e, b, full if learned == 2 else 1, full, ts, tp, c, why,
                        real)
    t = full if tp * (1 + C_MARGIN) < ts else 1
    return _explore(e, b, t, full, ts, tp, c, why, real and not lone)


cdef int _explore(Entry *e, int b, int t, int full, double ts, double tp,
                  dispatch.Call *c, Why *why, bint real) noexcept nogil:
    """The decision ``t``, or once in EXPLORE_EVERY calls the other choice
    (once in EXPLORE_LATER when it has been measured EXPLORE_UNTIL times at
    this size), where it is, by the model (serial time ``ts``; a parallel
    one of ``ts`` / (count x EFFICIENCY) + the team's start), at most
    EXPLORE_LOSS times as slow.  (By the model, not by what was measured:
    a measurement may be an outlier, or out of date, and must be measured
    again.)"""
    cdef double model_tp = ts / (full * C_EFFICIENCY) + _team_hot_ns
    cdef long long n, every
    if not real or ts <= 0:
        return t
    if t == 1 and e.explore_left > 0 and e.explore_size == b:
        # the second call of a parallel exploration: the first one woke
        # the team (and is not measured); this one finds it awake
        e.explore_left -= 1
        c.flags |= F_EXPLORE
        if why != NULL:
            why.explore = True
        return full
    if (ts if t > 1 else model_tp) > C_EXPLORE_LOSS * (model_tp if t > 1 else ts):
        return t
    n = add_ll(&e.explore, 1)
    every = (C_EXPLORE_EVERY if (e.par_n[b] if t == 1 else e.ser_n[b]) < EXPLORE_UNTIL
             else EXPLORE_LATER)
    if n % every != every - 1:
        return t
    c.flags |= F_EXPLORE
    if why != NULL:
        why.explore = True
    if t == 1:
        e.explore_size = b
        e.explore_left = 1
    return 1 if t > 1 else full


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


cdef int _decide(Slot *s, Entry *e, Py_ssize_t work, dispatch.Call *c, Why *why,
                 int mode, long long idle) noexcept nogil:
    """The rule (module docstring).  With mode M_CALL it takes the cores it
    grants and fills ``c`` for end(); the other modes change nothing."""
    cdef int t, i, limit, g = 0, got, f, n, share, awake = 0
    cdef long long t_now = 0, recent, since
    cdef bint lone = False, real = mode == M_CALL
    cdef const Steps *steps
    if why != NULL:
        why.table = T_NONE
        why.threshold = INFINITY
    if ld_int(&g_forked):
        if why != NULL:
            why.table = T_FORKED
        return 1
    if tl_exact:
        t = tl_exact
        c.flags |= F_FORCED
        if why != NULL:
            why.table = T_FORCED
        if real:
            t_now = now()
    else:
        if e == NULL:
            return 1
        if not e.has_table and not e.estimate:
            return 1
        if e.has_table:
            if why != NULL:
                why.table = T_HOT
                why.threshold = e.hot_min
            if work < e.hot_min:
                return 1
        else:
            # the estimate, first as a call in a loop: a serial decision
            # needs no clock (a lone call is judged below)
            limit = _full_count()
            t = _estimated(e, work, limit, False, 0, c, why, real)
            if t < 2:
                return 1
        if real or mode == M_DRY:
            t_now = now()
        if not tl_section and _sleep_after > 0 and mode != M_HOT:
            if mode == M_IDLE:
                lone = idle > _sleep_after
            else:
                recent = ld_ll(&_last_parallel)
                if ld_ll(&_last_call) > recent:
                    recent = ld_ll(&_last_call)
                idle = t_now - recent
                lone = idle > _sleep_after
        if not e.has_table:
            steps = NULL
            if lone:  # the team would have to wake up: judged with its cost
                c.flags &= ~F_EXPLORE
                if why != NULL:
                    why.idle = idle
                t = _estimated(e, work, limit, True, idle, c, why, False)
                if t < 2:
                    return 1
        elif lone and e.n_gaps > 0:
            for i in range(1, e.n_gaps if e.n_gaps <= MAX_GAPS else MAX_GAPS):
                if idle >= e.gap[i]:
                    g = i
            steps = &e.cold[g]
            if why != NULL:
                why.table = T_COLD
                why.gap = g
                why.idle = idle
                why.threshold = _first_parallel(steps)
        else:
            lone = False
            steps = &e.hot
        if steps != NULL:
            t = _lookup(steps, work)
        if (steps == &e.hot and t > 1 and e.n_gaps > 0 and _sleep_after > 0
                and not tl_section and mode != M_HOT
                and t_now - ld_ll(&_held_back) > _sleep_after):
            awake = _awake(t_now, t, &since)
            if 1 < awake < t:
                # part of the team is awake (a whole team asleep is a lone
                # call's or a loop's case, above), the rest asleep: the cold table
                # of the time since a team this wide last ran says whether
                # waking them pays (else the awake ones run it)
                for i in range(1, e.n_gaps if e.n_gaps <= MAX_GAPS else MAX_GAPS):
                    if t_now - since >= e.gap[i]:
                        g = i
                i = _lookup(&e.cold[g], work)
                if i < t:
                    t = i if i > awake else awake
                    if why != NULL:
                        why.awake = awake
                        why.gap = g
                    if real:
                        st_ll(&_held_back, t_now)
        if why != NULL:
            why.table_threads = t
        if tl_cap and t > tl_cap:
            t = tl_cap
            if why != NULL:
                why.cap = tl_cap
        if ld_int(&e.backoff) and t > ld_int(&e.cap):
            if ld_ll(&e.spent) >= <long long>ld_int(&e.ratio) * ld_ll(&e.probe_cost):
                c.flags |= F_PROBE
                if why != NULL:
                    why.probe = True
            else:
                t = ld_int(&e.cap)
                c.flags |= F_BACKED_OFF
                if why != NULL:
                    why.backoff = t
    limit = _max_threads()
    if why != NULL:
        why.max_threads = _sim_max if _sim_max > 0 else omp_get_max_threads()
        why.pool_limit = pool_limit()
    if _usable < limit:
        limit = _usable
    if t > limit:
        t = limit
        if why != NULL:
            why.limit = limit
    if t > 1 and omp_in_parallel():
        t = 1
        if why != NULL:
            why.nested = True
    if t > 1 and not tl_section:
        # the cores shared fairly among the callers that want several
        if real:
            n = add_int(&_callers, 1) + 1
            c.flags |= F_CALLER
        else:
            n = ld_int(&_callers) + 1
        share = _usable // n
        if t > share:
            t = share if share > 1 else 1
            if why != NULL:
                why.share = t
                why.callers = n
    f = ld_int(&_free)
    if why != NULL:
        why.free = f
        why.section = tl_section
    if t > 1:
        if tl_section:
            if t > tl_section:
                t = tl_section
            c.flags |= F_SECTION
        elif real:
            got = _take(t)
            if got < t and why != NULL:
                why.budget = True
            t = got if got > 1 else 1
        elif t > f:
            t = f if f > 1 else 1
            if why != NULL:
                why.budget = True
    if t < 2:
        if why != NULL:
            why.held = not tl_section and f > 0
        if real:
            st_ll(&_last_call, t_now)
            if not tl_section and _hold():
                c.flags |= F_HELD
            if c.flags & F_BACKED_OFF:  # its time paces the next probe
                c.flags |= F_TIMED
                c.start = t_now
        c.flags &= ~(F_PROBE | F_SECTION)
        return 1
    if real:
        max_int(&_peak, add_int(&_in_flight, t) + t)
        # A call that may find the team asleep may pay its wake-up: a lone
        # call, but also the first parallel call after serial ones (the
        # second call of a loop whose first ran serially from the cold
        # table, a probe after backed-off calls).  The runtime may put its
        # threads to sleep well before the calibrated sleep time, when the
        # wake-up was still too small to count: a millisecond without a
        # parallel region is enough.  Its time says nothing of contention.
        # So is a call wider than the part of the team still awake (found
        # above, when the hot table was read; looked up here otherwise).
        if lone or t_now - ld_ll(&_last_parallel) > (
                _sleep_after if 0 < _sleep_after < UNJUDGED_AFTER else UNJUDGED_AFTER) \
                or (_sleep_after > 0 and t > (
                    awake if awake else _awake(t_now, t, &since))):
            c.flags |= F_COLD
        if t_now - ld_ll(&_last_parallel) > HOT_GAP:
            # the team may have begun to doze: no measure of the parallel
            # rate for the estimate, which compares calls in a loop
            c.flags |= F_NOT_HOT
        st_int(&omp_started, 1)
        if s.uses_blas and not tl_section:
            _blas_cap()
            c.flags |= F_BLAS
        c.start = now()
    return t


cdef int _begin(dispatch.Call *c, int kernel, int typenum,
                Py_ssize_t work) noexcept nogil:
    """dispatch.begin(): the threads a call gets, and the call recorded."""
    cdef Slot *s = _slot(kernel)
    cdef int d = _dtype_index(typenum), t
    cdef Entry *e
    cdef long long n
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
    t = _decide(s, e, work, c, NULL, M_CALL, 0)
    c.threads = t
    if e != NULL:
        if t > 1:
            if c.flags & F_PROBE:
                add_ll(&e.n_probes, 1)
            add_ll(&e.n_parallel, 1)
            add_ll(&e.thread_sum, t)
            max_int(&e.most_threads, t)
        else:
            n = add_ll(&e.n_serial, 1)
            if c.flags & F_TIMED:
                pass
            elif (n % SAMPLE_EVERY == 0 or (e.estimate and (
                    c.flags & F_EXPLORE or e.ser_n[_bucket(work)] < EXPLORE_UNTIL
                    or (work >= ESTIMATE_TIME_ALL and n % ESTIMATE_SAMPLE == 0)))):
                # a sample for stats(); an estimated kernel's serial calls
                # teach it its serial rate
                c.flags |= F_TIMED
                c.start = now()
        if c.flags & F_EXPLORE:
            add_ll(&e.n_explored, 1)
    return t


cdef void _configure_now() noexcept nogil:
    """The first call of the process: load the profile (with the GIL)."""
    with gil:
        if not _configured and _load_hook is not None:
            try:
                _load_hook()
            except Exception:  # never fail a call: run without tables
                pass
        st_rel_int(&_configured, 1)


cdef void _end(dispatch.Call *c) noexcept nogil:
    """dispatch.end(): cores back, time recorded and judged."""
    cdef Slot *s = _slot(c.kernel)
    cdef Entry *e
    cdef long long t_end, ns
    cdef int t = c.threads
    if s == NULL or c.dtype < 0 or c.dtype >= N_DTYPES:
        return
    if c.flags & F_CALLER:
        add_int(&_callers, -1)
    e = <Entry *>load_ptr(<void **>&s.entries[c.dtype])
    if t > 1:
        t_end = now()
        st_ll(&_wide_end[_bits(t)], t_end)
        st_int(&_wide_n[_bits(t)], t)
        ns = <long long>((t_end - c.start) * _clock_scale)
        if c.flags & F_BLAS:
            _blas_restore()
        # out of flight before the cores are free again: the count in
        # flight never exceeds what was taken
        add_int(&_in_flight, -t)
        if not (c.flags & F_SECTION):
            add_int(&_free, t)
        st_ll(&_last_parallel, t_end)
        if e != NULL:
            add_ll(&e.ns_parallel, ns)
            if not (c.flags & F_COLD):
                _observe(e, t, c.work, ns, c.flags, t_end)
    else:
        if c.flags & F_HELD:
            add_int(&_in_flight, -1)
            add_int(&_free, 1)
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


cdef int _usable_cpus() noexcept nogil:
    return _usable


# ---------------------------------------------------------------------------
# the C API (breakeven/dispatch.pxd), exported through a capsule
# ---------------------------------------------------------------------------

cdef dispatch.api_table _api
_api.version = 1
_api.size = sizeof(dispatch.api_table)
_api.begin = _begin
_api.end = _end
_api.usable_cpus = _usable_cpus
_C_API = PyCapsule_New(<void *>&_api, b"breakeven._core._C_API", NULL)


cdef void note_parallel() noexcept nogil:
    """An OpenMP region ran (a kernel called directly): after a fork, the
    child must stay serial."""
    st_int(&omp_started, 1)


cdef void _after_fork_in_child() noexcept nogil:
    global _free, _in_flight, _peak, _blas_users, _blas_lock, _callers
    _free = _usable
    _in_flight = 0
    _callers = 0
    _peak = 0
    _blas_users = 0
    _blas_lock = 0


register_atfork(_after_fork_in_child)


# ---------------------------------------------------------------------------
# Python side: slots, tables, profile hooks
# ---------------------------------------------------------------------------

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


cdef void _fill(Steps *s, table) except *:
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


def set_team(double hot_s, wake=()):
    """The host's team costs, for the estimate: a hot region's start, and
    ``[(idle_seconds, wake_seconds), ...]`` (shortest idle first)."""
    global _team_hot_ns, _n_wake
    cdef int i
    wake = sorted(wake)[:MAX_GAPS]
    _team_hot_ns = hot_s * 1e9
    _n_wake = 0
    for i, (gap, cost) in enumerate(wake):
        _wake_gap[i] = <long long>(gap * 1e9)
        _wake_cost[i] = cost * 1e9
    _n_wake = len(wake)


def team():
    """(hot start seconds, [(idle seconds, wake seconds), ...])."""
    return _team_hot_ns / 1e9, [(_wake_gap[i] / 1e9, _wake_cost[i] / 1e9)
                                for i in range(_n_wake)]


def estimate_state(int kernel, int d):
    """Per log2 size with anything measured: (size bucket, serial seconds per
    unit, parallel seconds per unit, decided: 0 no, 1 serial, 2 parallel,
    serial calls measured, parallel calls measured; counts stop at 100)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int b
    return [(b, e.ser_rate[b], e.par_rate[b], e.learned[b], e.ser_n[b], e.par_n[b])
            for b in range(BUCKETS) if e.ser_rate[b] > 0 or e.par_rate[b] > 0]


def set_table(int kernel, int d, hot, cold):
    """A kernel's tables for dtype index ``d``: ``hot`` steps
    ``((work_min, threads), ...)`` and ``cold`` tables ``[(idle_seconds,
    steps), ...]``, shortest idle first (at least one)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int g
    e.has_table = 0
    e.estimate = 0
    _fill(&e.hot, hot)
    cold = list(cold)[:MAX_GAPS] or [(0.0, hot)]
    for g, (gap, steps) in enumerate(cold):
        e.gap[g] = <long long>(gap * 1e9)
        _fill(&e.cold[g], steps)
    e.n_gaps = len(cold)
    e.hot_min = _first_parallel(&e.hot)
    e.has_table = 1


def clear_table(int kernel, int d):
    """No table for this kernel and dtype, and no estimate: its calls run
    serially."""
    cdef Entry *e = _entry_of(kernel, d)
    e.has_table = 0
    e.estimate = 0


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
    _fill(&s, steps)
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


def best_rate(int kernel, int d, int threads, Py_ssize_t work):
    """The best seconds per unit of work seen for this thread count and size
    (0 if none)."""
    cdef Entry *e = _entry_of(kernel, d)
    cdef int i
    lock(&e.lock)
    i = _rate_index(e, threads, False)
    r = e.best[i][_bucket(work)] if i >= 0 else 0.0
    unlock(&e.lock)
    return r


cdef extern from *:
    """
    #include <string.h>
    #define memset_entry(e) memset((e), 0, sizeof(*(e)))
    """
    void memset_entry(Entry *e) noexcept nogil


def configure(double sleep_after_s):
    """The host's figures: the idle time after which the OpenMP team sleeps
    (0: it never does).  Marks the core configured."""
    global _sleep_after
    _sleep_after = <long long>(sleep_after_s * 1e9)
    st_rel_int(&_configured, 1)


def unconfigure():
    """Forget every table and all learnt state (rates, back-off, counters);
    the next call loads the profile again."""
    global _last_parallel, _last_call
    cdef int k, d
    cdef Entry *e
    st_rel_int(&_configured, 0)
    for k in range(_n_slots):
        for d in range(N_DTYPES):
            e = (<Slot **>_slots)[k].entries[d]
            if e != NULL:
                lock(&e.lock)
                memset_entry(e)
                _init_entry(e)
    _last_parallel = _last_call = -(1LL << 62)


def configured():
    return bool(_configured)


def set_hooks(load=None, blas=None):
    """``load()``: loads the profile and configures the core (called, with
    the GIL, by the first call); ``blas()``: the BLAS setters for
    :func:`set_blas` (called the first time BLAS must be capped)."""
    global _load_hook, _blas_hook
    _load_hook, _blas_hook = load, blas


# ---------------------------------------------------------------------------
# Python side: process state and test hooks
# ---------------------------------------------------------------------------

def set_usable(int n):
    """The usable CPUs (after a change of affinity or quota; or simulated):
    the budget is reset to it."""
    global _usable, _free, _in_flight, _peak, _callers, _held_back
    cdef int k
    if n < 1:
        raise ValueError(f"usable CPUs must be >= 1, got {n}")
    _usable = n
    _free = n
    _in_flight = 0
    _peak = 0
    _callers = 0
    _held_back = -(1LL << 62)
    for k in range(32):  # no team awake
        _wide_n[k] = 0
        _wide_end[k] = -(1LL << 62)


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
    """(usable, free, in flight, peak in flight)."""
    return _usable, _free, _in_flight, _peak


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
        st_ll(&_last_parallel, -(1LL << 62))
        st_ll(&_last_call, -(1LL << 62))
    st_int(&sim_clock, on)


def clock():
    """The core's clock, in seconds."""
    return now() / 1e9


def set_idle(double seconds):
    """Test hook: the last parallel call (of the whole team), and the last
    call past a threshold, ended ``seconds`` ago (negative: they will end in
    the future, so the team counts as awake for that long)."""
    global _last_parallel, _last_call, _held_back
    cdef long long t = now() - <long long>(seconds * 1e9)
    cdef int k, b = _bits(_usable)
    st_ll(&_last_parallel, t)
    st_ll(&_last_call, t)
    st_ll(&_held_back, -(1LL << 62))
    for k in range(32):
        st_int(&_wide_n[k], _usable if k == b else 0)
        st_ll(&_wide_end[k], t if k == b else -(1LL << 62))


def idle():
    """Seconds since the last parallel call or call past a threshold."""
    cdef long long recent = max(_last_parallel, _last_call)
    return (now() - recent) / 1e9


def forked():
    """Whether this process is a forked child that runs serially."""
    return bool(g_forked)


def note_omp_started():
    note_parallel()


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
    """Test hook: the backed-off calls have taken long enough for a probe."""
    cdef Entry *e = _entry_of(kernel, d)
    add_ll(&e.spent, <long long>e.ratio * e.probe_cost)


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
                "backed_off": bool(e.backoff), "cap": e.cap,
                "estimate": bool(e.estimate), "explored": e.n_explored,
                "learned": sum(1 for b in range(BUCKETS) if e.learned[b]),
            })
            if reset:
                e.n_serial = e.n_parallel = e.thread_sum = 0
                e.n_backoffs = e.n_probes = e.n_recoveries = 0
                e.ns_parallel = e.ns_serial = e.n_serial_timed = 0
                e.most_threads = 0
                e.n_explored = 0
    return out


# ---------------------------------------------------------------------------
# Python side: the decision, and calls made from Python
# ---------------------------------------------------------------------------

def decide(int kernel, int d, Py_ssize_t work, idle=None):
    """The rule as a dry run: what a call of this work would get now
    (``idle`` None), as a call in a loop (``idle`` 0) or as a lone call after
    ``idle`` seconds.  Returns (threads, why) with ``why`` a dict."""
    cdef Slot *s = _slot(kernel)
    cdef Entry *e = NULL
    cdef Why why
    cdef dispatch.Call c
    cdef int t, mode = M_DRY
    cdef long long idle_ns = 0
    if s == NULL:
        raise IndexError(f"no slot {kernel}")
    if not 0 <= d < N_DTYPES:
        raise IndexError(f"no dtype index {d}")
    if idle is not None:
        mode = M_HOT if idle <= 0 else M_IDLE
        idle_ns = <long long>(float(idle) * 1e9)
    e = _entry(s, d)
    memset_why(&why)
    c.flags = 0
    t = _decide(s, e, work, &c, &why, mode, idle_ns)
    return t, {
        "table": ("none", "hot", "cold", "forced", "forked", "estimate",
                  "learned")[why.table],
        "explore": bool(why.explore), "serial_ns": why.serial_ns,
        "parallel_ns": why.parallel_ns,
        "gap": why.gap, "idle": why.idle / 1e9,
        "threshold": None if why.threshold == INFINITY else int(why.threshold),
        "table_threads": why.table_threads, "cap": why.cap,
        "backoff": why.backoff, "probe": bool(why.probe),
        "limit": why.limit, "max_threads": why.max_threads,
        "pool_limit": why.pool_limit, "usable": _usable,
        "nested": bool(why.nested), "section": why.section, "free": why.free,
        "budget": bool(why.budget), "held": bool(why.held),
        "share": why.share, "callers": why.callers, "awake": why.awake,
        "forced": tl_exact, "sleep_after": _sleep_after / 1e9,
    }


cdef extern from *:
    """
    #define memset_why(w) memset((w), 0, sizeof(*(w)))
    """
    void memset_why(Why *w) noexcept nogil


cdef class Grant:
    """A call made from Python: :meth:`begin` takes the threads the rule
    grants, :meth:`end` returns them (and reports the time).  As a context
    manager, the block is the call."""

    cdef dispatch.Call call
    cdef int kernel, typenum
    cdef Py_ssize_t work
    cdef bint open

    def __cinit__(self, int kernel, int typenum, Py_ssize_t work):
        self.kernel, self.typenum, self.work = kernel, typenum, work
        self.call.kernel = -1
        self.call.flags = 0
        self.call.threads = 1

    def begin(self):
        if self.open:
            raise RuntimeError("this call has begun already")
        self.open = True
        return _begin(&self.call, self.kernel, self.typenum, self.work)

    def end(self):
        if self.open:
            self.open = False
            _end(&self.call)

    @property
    def threads(self):
        """The threads granted (1: serial)."""
        return self.call.threads

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc):
        self.end()
        return False

    def __dealloc__(self):
        if self.open:
            _end(&self.call)


def hammer(int kernel, int typenum, Py_ssize_t work, long long calls):
    """Test hook: ``calls`` begin/end pairs without the GIL, as a kernel's
    caller makes them; returns the most threads any got."""
    cdef dispatch.Call c
    cdef long long _i
    cdef int t, most = 0
    with nogil:
        for _i in range(calls):
            t = _begin(&c, kernel, typenum, work)
            if t > most:
                most = t
            _end(&c)
    return most


# ---------------------------------------------------------------------------
# the thread controls: threads() and section()
# ---------------------------------------------------------------------------

cdef int _as_count(object n, str who) except -1:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{who} takes an integer, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{who} takes n >= 1, got {n}")
    # any count past the usable CPUs means the same (clamped there)
    return n if n < 2**30 else 2**30


def threads(n, *, exact=False):
    """Cap (or, with ``exact=True``, force) the threads of dispatched calls
    made by this thread inside the block.

    ``threads(1)`` forces serial.  Nestable: an inner cap cannot raise an
    outer one (``exact`` forces regardless).  Thread-local.  The calls of a
    kernel of another library that asks breakeven (its Cython API) obey it
    too.

    Parameters
    ----------
    n : int
        At least 1.
    exact : bool
        Force exactly ``n`` threads (clamped to the usable CPUs) whatever the
        profile says: for benchmarks, tests and users who know better.

    Returns
    -------
    context manager
        For a ``with`` statement; ``as`` binds nothing.

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is less than 1.

    See Also
    --------
    section : Reserve cores and cap BLAS for a block of calls.
    explain : Shows the cap in a decision's reason.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> x = np.ones(10**7)
    >>> with breakeven.threads(1):
    ...     breakeven.explain(breakeven.sum, x).variant
    'serial'
    >>> with breakeven.threads(2, exact=True):  # clamped to the usable CPUs
    ...     d = breakeven.explain(breakeven.sum, x)
    >>> d.threads == min(2, breakeven.usable_cpus())
    True
    """

    return _Threads(_as_count(n, "threads()"), bool(exact))


cdef class _Threads:
    """A ``threads()`` block (see :func:`threads`)."""

    cdef int n, saved_exact, saved_cap
    cdef bint exact

    def __cinit__(self, int n, bint exact):
        self.n = n
        self.exact = exact

    def __enter__(self):
        global tl_exact, tl_cap
        self.saved_exact, self.saved_cap = tl_exact, tl_cap
        if self.exact:
            tl_exact = self.n
        elif tl_cap == 0 or self.n < tl_cap:
            tl_cap = self.n
        return None

    def __exit__(self, *exc):
        global tl_exact, tl_cap
        tl_exact, tl_cap = self.saved_exact, self.saved_cap
        return False


def section(n_threads=None):
    """One extended parallel section: reserve cores and cap BLAS once for a
    block of calls.

    Inside, this thread's dispatched calls use the reserved cores without
    touching the shared budget, are decided from the hot table (calls in a
    loop find the team awake), and kernels that call BLAS skip their
    per-call cap, since BLAS is held at one thread for the whole block: so a
    loop of many calls pays for all of it once.  Other Python threads see the
    reserved cores as taken.  Nestable.

    Parameters
    ----------
    n_threads : int, optional
        Cores to reserve (default: all usable CPUs, as far as free).

    Returns
    -------
    context manager
        For a ``with`` statement; ``as`` binds nothing.

    Raises
    ------
    TypeError
        If ``n_threads`` is neither an integer nor None.
    ValueError
        If ``n_threads`` is less than 1.

    See Also
    --------
    threads : Cap or force the threads of a block of calls.

    Notes
    -----
    BLAS is capped process-wide (a BLAS library has one thread setting), so
    BLAS calls of other Python threads run on one thread too while a section
    is open.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> x = np.linspace(0.0, 1.0, 100_000)
    >>> with breakeven.section():
    ...     for _ in range(10):
    ...         y = breakeven.exp(x)
    >>> bool(np.allclose(y, np.exp(x)))
    True
    """

    if n_threads is None:
        return _Section(0)
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise TypeError("section() takes an integer or None")
    return _Section(_as_count(n_threads, "section()"))


cdef class _Section:
    """A ``section()`` block (see :func:`section`)."""

    cdef int want, got
    cdef bint nested, entered

    def __cinit__(self, int want):
        self.want = want

    def __enter__(self):
        global tl_section
        cdef int want = self.want if 0 < self.want < _usable else _usable
        cdef int f
        if self.entered:
            raise RuntimeError("this section is open already")
        self.entered = True
        self.nested = tl_section != 0
        if self.nested:  # the outer section's reservation applies
            return None
        # at least the calling thread's own core, even if none is free
        f = ld_int(&_free)
        while True:
            self.got = want if want < f else f
            if self.got < 1:
                self.got = 1
            if cas_int(&_free, &f, f - self.got):
                break
        with nogil:
            _blas_cap()
        tl_section = self.got
        return None

    def __exit__(self, *exc):
        global tl_section
        self.entered = False
        if self.nested:
            return False
        tl_section = 0
        with nogil:
            _blas_restore()
        add_int(&_free, self.got)
        return False
