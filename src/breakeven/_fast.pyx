"""The per-call path of the drop-in functions, in C.

A Python-level check of a call's inputs costs more than a small kernel: at
n = 16 a sum takes tens of nanoseconds, checking in Python that ``a`` is a
contiguous float64 ndarray takes hundreds, and a Python-level decision for a
parallel call costs microseconds (more while the OpenMP team spins on a
sibling hardware thread).  Here the checks use NumPy's C API and the common
decisions are made in C:

- work below the hot threshold: the serial kernel, at once;
- past it, with no ``threads()`` cap, no ``section()`` open, no back-off and
  the OpenMP team awake: the hot table's threads, clamped by the usable CPUs,
  ``omp_get_max_threads()`` and the core budget, then the parallel kernel,
  timed, with the contention check;
- anything else (lone calls, caps, sections, back-off, forked children,
  inputs NumPy must handle): the Python dispatcher (``breakeven._dispatch``),
  which shares this module's budget, clocks and flags.

Every counter here is read and written with the GIL held (the kernels
release it only while they compute), so Python threads cannot interleave
inside an update.
"""
cimport numpy as cnp

from cpython.float cimport PyFloat_AsDouble, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from libc.math cimport INFINITY
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from breakeven._elementwise cimport (
    axpy_parallel_d,
    axpy_parallel_f,
    exp_parallel_d,
    exp_parallel_f,
)
from breakeven._openmp_helpers cimport omp_get_max_threads, omp_in_parallel
from breakeven._reductions cimport (
    dot_parallel_d,
    dot_parallel_f,
    dot_serial_d,
    dot_serial_f,
    sum_parallel_d,
    sum_parallel_f,
    sum_serial_d,
    sum_serial_f,
)
from breakeven._scan cimport (
    cumsum_parallel_d,
    cumsum_parallel_f,
    cumsum_serial_d,
    cumsum_serial_f,
)
from breakeven._simd cimport be_axpy_d, be_axpy_f, be_exp_d, be_exp_f

from breakeven._histogram cimport MIN_CHUNK as _HIST_MIN_CHUNK
from breakeven._histogram cimport count as _histogram_count
from breakeven._nearest import nearest_parallel as _nearest_parallel
from breakeven._nearest import nearest_serial as _nearest_serial

import numpy as np

cnp.import_array()


cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of the array's dtype holding *data (np.float64(x), ...)
    object PyArray_Scalar(void *data, cnp.PyArray_Descr *descr, object base)
    # an empty array shaped like the prototype (np.empty_like)
    object PyArray_NewLikeArray(cnp.ndarray prototype, cnp.NPY_ORDER order,
                                cnp.PyArray_Descr *descr, int subok)

cdef extern from *:
    """
    /* breakeven.threads() and breakeven.section() of the calling thread:
       C thread-locals, so the C path honours them without asking Python. */
    static __thread int be_tl_exact = 0;    /* threads(n, exact=True): n */
    static __thread int be_tl_cap = 0;      /* threads(n): n; 0 = none */
    static __thread int be_tl_section = 0;  /* cores of an open section */
    /* 1 while this thread runs a parallel-sized call serially on a core
       taken from the budget (so that concurrent callers leave it alone) */
    static __thread int be_tl_held = 0;
    /* 1 from the routing of a lone parallel call (cold team) to its end:
       its time includes the team's wake-up and says nothing of contention */
    static __thread int be_tl_cold = 0;
    static void be_set_thread_controls(int exact, int cap, int section) {
        be_tl_exact = exact; be_tl_cap = cap; be_tl_section = section;
    }
    """
    int be_tl_exact
    int be_tl_cap
    int be_tl_section
    int be_tl_held
    int be_tl_cold
    void be_set_thread_controls(int exact, int cap, int section)

cdef object _NoValue = np._NoValue
cdef dict _slow = {}
cdef object _on_backoff = None
# False until the dispatcher has loaded a profile: every call goes to Python
# (which loads it).
cdef bint _configured = False

cdef enum:
    K_SUM = 0
    K_DOT = 1
    K_AXPY = 2
    K_EXP = 3
    K_CUMSUM = 4
    K_HISTOGRAM = 5
    K_NEAREST = 6
    N_KERNELS = 7
    MAX_STEPS = 8
    MAX_GAPS = 8
    BUCKETS = 65
    # Below this many elements the serial kernel runs with the GIL held
    # (releasing and retaking it costs more than the work).
    NOGIL_MIN = 8192

KERNEL_NAMES = ("sum", "dot", "axpy", "exp", "cumsum", "histogram", "nearest")
DTYPE_NAMES = ("float64", "float32")

# The hot table, [kernel][dtype]: _hot is its first parallel work (0 until a
# profile is loaded, so that every call goes to Python until then).
cdef double _hot[N_KERNELS][2]
cdef Py_ssize_t _step_work[N_KERNELS][2][MAX_STEPS]
cdef int _step_threads[N_KERNELS][2][MAX_STEPS]
cdef int _n_steps[N_KERNELS][2]
# the cold tables (a lone call: the team has gone to sleep), one for each
# measured idle time: table g applies from _cgap[k][d][g] seconds idle on
cdef Py_ssize_t _cstep_work[N_KERNELS][2][MAX_GAPS][MAX_STEPS]
cdef int _cstep_threads[N_KERNELS][2][MAX_GAPS][MAX_STEPS]
cdef int _n_csteps[N_KERNELS][2][MAX_GAPS]
cdef double _cgap[N_KERNELS][2][MAX_GAPS]
cdef int _n_cgaps[N_KERNELS][2]

# The core budget, shared with the Python dispatcher.
cdef int _usable = 1
cdef int _free = 1
cdef int _in_flight = 0
cdef int _peak = 0

cdef bint _forked = False

# Clocks (CLOCK_MONOTONIC seconds, as time.monotonic()): the end of the last
# parallel call, and of the last call past a hot threshold; and the idle time
# after which the team sleeps (0: never considered asleep).
cdef double _last_parallel = -1e9
cdef double _last_call = -1e9
cdef double _sleep_after = 0

# Contention check, [kernel][dtype]: best seconds per unit of work seen at
# each log2 size, for the thread count in _best_threads; runs of slow calls.
cdef double _best[N_KERNELS][2][BUCKETS]
cdef int _best_threads[N_KERNELS][2]
cdef int _seeded_from[N_KERNELS][2][BUCKETS]  # which size seeded each entry
cdef int _slow_run[N_KERNELS][2]
cdef int _severe_run[N_KERNELS][2]
cdef bint _backoff[N_KERNELS][2]
# While backed off: the thread cap, the time the kernel's calls have taken
# since the last probe, what the last slow call took, whether a probe is out.
cdef int _cap[N_KERNELS][2]
cdef double _spent[N_KERNELS][2]
cdef double _probe_cost[N_KERNELS][2]
cdef bint _probing[N_KERNELS][2]
cdef double _PROBE_RATIO = 20.0
# The probe spacing in force (a multiple of _PROBE_RATIO): doubled when a
# kernel backs off again soon after a probe lifted its back-off (contention
# that comes and goes), back to _PROBE_RATIO after a calm spell.
cdef double _ratio[N_KERNELS][2]
cdef double _recovered_at[N_KERNELS][2]
cdef double RELAPSE_WINDOW = 2.0  # seconds
cdef double MAX_RATIO_FACTOR = 64.0
cdef object _on_recover = None
# Multiplies the measured duration of parallel calls: 1 except in tests,
# which make calls look slow to exercise the contention check.
cdef double _clock_scale = 1.0
cdef double _SLOW = 3.0
cdef double _SEVERE = 10.0
cdef int _BACKOFF_AFTER = 4


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline int _bucket(Py_ssize_t n) noexcept nogil:
    cdef int b = 0
    while n > 0:
        n >>= 1
        b += 1
    return b


def _clear_tables():
    cdef int k, d, b
    for k in range(N_KERNELS):
        for d in range(2):
            _hot[k][d] = 0
            _n_steps[k][d] = 0
            _n_cgaps[k][d] = 0
            _best_threads[k][d] = 0
            _slow_run[k][d] = 0
            _severe_run[k][d] = 0
            _backoff[k][d] = False
            _cap[k][d] = 0
            _spent[k][d] = 0
            _probe_cost[k][d] = 0
            _probing[k][d] = False
            _ratio[k][d] = _PROBE_RATIO
            _recovered_at[k][d] = -1e9
            for b in range(BUCKETS):
                _best[k][d][b] = 0
                _seeded_from[k][d][b] = -100


_clear_tables()


# ---------------------------------------------------------------------------
# configuration, from the Python dispatcher
# ---------------------------------------------------------------------------


def configure(steps, double sleep_after_s, slow, severe, backoff_after, on_backoff,
              probe_ratio=20.0, on_recover=None, cold_steps=None):
    """Load the hot tables ``{(kernel, dtype): ((work_min, threads), ...)}``
    (missing ones: always the Python path), the team's sleep time, the
    contention constants and the back-off callback, and the cold tables
    ``{(kernel, dtype): [(idle_seconds, steps), ...]}`` (missing ones: lone
    calls take the Python path)."""
    global _sleep_after, _SLOW, _SEVERE, _BACKOFF_AFTER, _on_backoff, _configured
    global _PROBE_RATIO, _on_recover
    cdef int k, d, i
    _PROBE_RATIO = probe_ratio
    _clear_tables()
    _configured = True
    for (kname, dname), table in steps.items():
        if kname not in KERNEL_NAMES or dname not in DTYPE_NAMES:
            continue
        k, d = KERNEL_NAMES.index(kname), DTYPE_NAMES.index(dname)
        table = tuple(table)[:MAX_STEPS]
        _n_steps[k][d] = len(table)
        _hot[k][d] = INFINITY
        for i, (w, t) in enumerate(table):
            _step_work[k][d][i] = w
            _step_threads[k][d][i] = t
            if t > 1 and _hot[k][d] == INFINITY:
                _hot[k][d] = w
    cdef int g
    for (kname, dname), tables in (cold_steps or {}).items():
        if kname not in KERNEL_NAMES or dname not in DTYPE_NAMES:
            continue
        k, d = KERNEL_NAMES.index(kname), DTYPE_NAMES.index(dname)
        tables = list(tables)[:MAX_GAPS]
        _n_cgaps[k][d] = len(tables)
        for g, (gap, table) in enumerate(tables):
            _cgap[k][d][g] = gap
            table = tuple(table)[:MAX_STEPS]
            _n_csteps[k][d][g] = len(table)
            for i, (w, t) in enumerate(table):
                _cstep_work[k][d][g][i] = w
                _cstep_threads[k][d][g][i] = t
    _sleep_after = sleep_after_s
    _SLOW, _SEVERE, _BACKOFF_AFTER = slow, severe, backoff_after
    _on_backoff = on_backoff
    _on_recover = on_recover


def set_thread_controls(int exact, int cap, int section):
    """This thread's threads()/section() state: an exact thread count (0:
    none), a cap (0: none), the cores an open section holds (0: none)."""
    be_set_thread_controls(exact, cap, section)


def thread_controls():
    return be_tl_exact, be_tl_cap, be_tl_section


def seed_rate(str kernel, str dtype, int threads, Py_ssize_t work, double rate):
    """Seed the contention check with a calibrated rate (seconds per unit of
    work of a parallel call of ``threads`` at this size); sizes without one
    take the nearest seeded size's."""
    if kernel not in KERNEL_NAMES or dtype not in DTYPE_NAMES or rate <= 0:
        return
    cdef int k = KERNEL_NAMES.index(kernel), d = DTYPE_NAMES.index(dtype)
    cdef int b0 = _bucket(work), b
    if _best_threads[k][d] != threads:
        if _best_threads[k][d] > threads:
            return  # keep the rates of the most threads
        for b in range(BUCKETS):
            _best[k][d][b] = 0
        _best_threads[k][d] = threads
    _best[k][d][b0] = rate
    # fill empty sizes from the nearest seeded one (the first seed fills all)
    for b in range(BUCKETS):
        if _best[k][d][b] == 0 or _seeded_from[k][d][b] != b and \
                abs(_seeded_from[k][d][b] - b) > abs(b0 - b):
            _best[k][d][b] = rate
            _seeded_from[k][d][b] = b0
    _seeded_from[k][d][b0] = b0


def set_clock_scale(double scale):
    """Test hook: parallel calls are seen as ``scale`` times longer."""
    global _clock_scale
    _clock_scale = scale


def unconfigure():
    global _configured
    _configured = False
    _clear_tables()


def set_slow_paths(**paths):
    _slow.update(paths)


def slow_paths():
    """The Python functions calls go to when this path does not take them."""
    return dict(_slow)


# ---------------------------------------------------------------------------
# BLAS, capped to one thread while a kernel calling it runs in parallel
# ---------------------------------------------------------------------------

ctypedef int (*_blas_get_fn)() noexcept nogil
ctypedef void (*_blas_set_fn)(int) noexcept nogil

cdef enum:
    MAX_BLAS = 8

cdef _blas_get_fn _blas_get[MAX_BLAS]
cdef _blas_set_fn _blas_set[MAX_BLAS]
cdef int _blas_saved[MAX_BLAS]
# -1: not looked up yet, -2: a BLAS this path cannot cap (the Python path
# does, through threadpoolctl); else how many libraries to cap
cdef int _n_blas = -1
cdef int _blas_users = 0  # parallel calls holding the cap (the GIL guards it)


def set_blas(pairs):
    """The BLAS libraries to cap around parallel BLAS-calling kernels, as
    ``(get_num_threads, set_num_threads)`` function addresses; ``None`` if
    one of them cannot be capped from here."""
    global _n_blas
    cdef Py_ssize_t i
    if pairs is None or len(pairs) > MAX_BLAS:
        _n_blas = -2
        return
    for i, (get, set_) in enumerate(pairs):
        _blas_get[i] = <_blas_get_fn><size_t>get
        _blas_set[i] = <_blas_set_fn><size_t>set_
    _n_blas = len(pairs)


def blas_state():
    """(libraries capped here or -1/-2, calls holding the cap now)."""
    return _n_blas, _blas_users


cdef void _blas_cap() noexcept:
    """Cap BLAS to one thread, unless another call holds the cap already.
    Only libraries not at one thread are touched."""
    global _blas_users
    cdef int i
    if _blas_users == 0:
        for i in range(_n_blas):
            _blas_saved[i] = _blas_get[i]()
            if _blas_saved[i] != 1:
                _blas_set[i](1)
    _blas_users += 1


cdef void _blas_restore() noexcept:
    global _blas_users
    cdef int i
    _blas_users -= 1
    if _blas_users == 0:
        for i in range(_n_blas):
            if _blas_saved[i] != 1:
                _blas_set[i](_blas_saved[i])


def reset_budget(int usable):
    global _usable, _free, _in_flight, _peak
    _usable, _free, _in_flight, _peak = usable, usable, 0, 0
    be_set_thread_controls(0, 0, 0)


def budget():
    """(usable, free, in flight, peak in flight)."""
    return _usable, _free, _in_flight, _peak


def reset_peak():
    global _peak
    _peak = _in_flight


def take_threads(int want):
    """Take up to ``want`` cores from the budget for a parallel call: the
    number taken, or 0 if fewer than 2 were free."""
    global _free, _in_flight, _peak
    cdef int got = want if want < _free else _free
    if got < 2:
        return 0
    _free -= got
    _in_flight += got
    if _in_flight > _peak:
        _peak = _in_flight
    return got


def give_threads(int got):
    global _free, _in_flight
    _free += got
    _in_flight -= got


def reserve(int want):
    """Reserve cores for a section (at least 1, at most what is free)."""
    global _free
    cdef int got = want if want < _free else _free
    if got < 1:
        got = 1
    _free -= got
    return got


def release(int got):
    global _free
    _free += got


def count_in_flight(int delta):
    """Threads a section's call runs (its cores are already reserved)."""
    global _in_flight, _peak
    _in_flight += delta
    if _in_flight > _peak:
        _peak = _in_flight


def set_forked(bint forked):
    global _forked
    _forked = forked


def times():
    """(end of the last parallel call, end of the last call past a hot
    threshold), as time.monotonic() values."""
    return _last_parallel, _last_call


def set_times(last_parallel=None, last_call=None):
    global _last_parallel, _last_call
    if last_parallel is not None:
        _last_parallel = last_parallel
    if last_call is not None:
        _last_call = last_call


def set_backoff(str kernel, str dtype, bint on, int cap=1, double probe_cost=0.0):
    """Back a kernel off to ``cap`` threads (``on``), or lift the back-off."""
    cdef int k, d
    if kernel in KERNEL_NAMES and dtype in DTYPE_NAMES:
        k, d = KERNEL_NAMES.index(kernel), DTYPE_NAMES.index(dtype)
        if on:
            _start_backoff(k, d, cap, probe_cost, not _backoff[k][d])
        else:
            _lift_backoff(k, d)


def add_spent(str kernel, str dtype, double seconds):
    """A backed-off call made on the Python path took this long."""
    if kernel in KERNEL_NAMES and dtype in DTYPE_NAMES:
        _spent[KERNEL_NAMES.index(kernel)][DTYPE_NAMES.index(dtype)] += seconds


def backoff_state(str kernel, str dtype):
    """(backed off, cap, seconds spent since the last probe, probe cost)."""
    cdef int k = KERNEL_NAMES.index(kernel), d = DTYPE_NAMES.index(dtype)
    return bool(_backoff[k][d]), _cap[k][d], _spent[k][d], _probe_cost[k][d]


def probe_ratio(str kernel, str dtype):
    """The spacing of probes in force: calls take this many times the last
    slow call's time between two probes."""
    return _ratio[KERNEL_NAMES.index(kernel)][DTYPE_NAMES.index(dtype)]


cdef inline void _start_backoff(int k, int d, int cap, double cost,
                                bint respace=True) noexcept:
    if not respace:
        pass  # the Python side recording a back-off this path started
    elif _now() - _recovered_at[k][d] < RELAPSE_WINDOW:
        # the contention came back right after a probe found it gone:
        # probe half as often
        _ratio[k][d] = min(_ratio[k][d] * 2, _PROBE_RATIO * MAX_RATIO_FACTOR)
    else:
        _ratio[k][d] = _PROBE_RATIO
    _backoff[k][d] = True
    _cap[k][d] = cap if cap >= 1 else 1
    _spent[k][d] = 0
    _probe_cost[k][d] = cost
    _probing[k][d] = False


cdef inline void _lift_backoff(int k, int d) noexcept:
    if _backoff[k][d]:
        _recovered_at[k][d] = _now()
    _backoff[k][d] = False
    _cap[k][d] = 0
    _spent[k][d] = 0
    _probing[k][d] = False


def best_rate(str kernel, str dtype, Py_ssize_t work):
    """The best seconds per unit of work the C path has seen at this size."""
    cdef int k = KERNEL_NAMES.index(kernel), d = DTYPE_NAMES.index(dtype)
    return _best[k][d][_bucket(work)], _best_threads[k][d]


# ---------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------


cdef inline int _dtype_index(cnp.ndarray arr) noexcept:
    """0 for a C-contiguous, aligned, native float64 array of at least one
    dimension, 1 for such a float32 one, -1 otherwise."""
    cdef int t = cnp.PyArray_TYPE(arr)
    if cnp.PyArray_NDIM(arr) == 0 or not cnp.PyArray_ISCARRAY_RO(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return -1
    if t == cnp.NPY_DOUBLE:
        return 0
    if t == cnp.NPY_FLOAT:
        return 1
    return -1


cdef int _route(int k, int d, Py_ssize_t n) noexcept:
    """1: run serially here; t >= 2: run with t threads here (taken from the
    budget, or from this thread's section); -1: the Python dispatcher
    decides (a lone call, a back-off, no profile yet)."""
    global _free, _in_flight, _peak, _last_call, be_tl_cold
    cdef int t, i, limit, g = 0
    cdef double now, recent
    cdef bint lone = False
    if d < 0:
        return -1
    if _forked:
        return 1  # libgomp does not survive fork: the child stays serial
    if be_tl_exact:
        t = be_tl_exact
        now = _now()
    else:
        if not _configured:
            return -1
        if n < _hot[k][d]:
            return 1
        now = _now()
        if not be_tl_section:
            recent = _last_parallel if _last_parallel > _last_call else _last_call
            if _sleep_after > 0 and now - recent > _sleep_after:
                # a lone call: the cold table (the Python path when there is
                # none, or while the kernel is backed off)
                if _n_cgaps[k][d] == 0 or _backoff[k][d]:
                    return -1
                lone = True
                # the table of the longest measured idle time not longer
                # than this one's
                for i in range(1, _n_cgaps[k][d]):
                    if now - recent >= _cgap[k][d][i]:
                        g = i
        t = 1
        if lone:
            for i in range(_n_csteps[k][d][g]):
                if n < _cstep_work[k][d][g][i]:
                    break
                t = _cstep_threads[k][d][g][i]
        else:
            for i in range(_n_steps[k][d]):
                if n < _step_work[k][d][i]:
                    break
                t = _step_threads[k][d][i]
        if be_tl_cap and t > be_tl_cap:
            t = be_tl_cap
        if _backoff[k][d]:
            # backed off: fewer threads, and the call is timed (return 0 for
            # a timed serial call); a probe at full threads once the calls
            # have taken PROBE_RATIO x the last slow one
            if t > _cap[k][d] and _spent[k][d] >= _ratio[k][d] * _probe_cost[k][d]:
                _probing[k][d] = True
            elif t > _cap[k][d]:
                t = _cap[k][d]
                if t <= 1:
                    _last_call = now
                    _hold()
                    return 0
    limit = omp_get_max_threads()
    if _usable < limit:
        limit = _usable
    if t > limit:
        t = limit
    if be_tl_section:
        if t > be_tl_section:
            t = be_tl_section
    elif t > _free:
        t = _free
    if t < 2 or omp_in_parallel():
        _last_call = now
        _hold()
        return 1
    if not be_tl_section:
        _free -= t
    _in_flight += t
    if _in_flight > _peak:
        _peak = _in_flight
    # A call that finds the team asleep pays its wake-up: a lone call, but
    # also the second call of a loop whose first ran serially from the cold
    # table (a serial call does not keep the team awake).  Its time says
    # nothing of contention.
    be_tl_cold = lone or (_sleep_after > 0 and now - _last_parallel > _sleep_after)
    return t


cdef inline void _hold() noexcept:
    """A parallel-sized call about to run serially still occupies a core:
    the budget counts it (if one is free), or a concurrent caller would take
    every core."""
    global _free, _in_flight, _peak
    global be_tl_held
    if not be_tl_section and _free > 0:
        _free -= 1
        _in_flight += 1
        if _in_flight > _peak:
            _peak = _in_flight
        be_tl_held = 1


cdef inline void _unhold() noexcept:
    """A serial call that held a core of the budget has ended."""
    global _free, _in_flight
    global be_tl_held
    if be_tl_held:
        be_tl_held = 0
        _free += 1
        _in_flight -= 1


cdef void _done(int k, int d, int t, Py_ssize_t n, double start) except *:
    """After a parallel call of t threads started at ``start``: return the
    cores, note the time, check for contention."""
    global _free, _in_flight, _last_parallel, be_tl_cold
    cdef double end = _now()
    cdef double secs = (end - start) * _clock_scale, rate, best
    cdef int b = _bucket(n), i
    if not be_tl_section:
        _free += t
    _in_flight -= t
    _last_parallel = end
    if be_tl_cold:  # it woke the team up: not a measure of contention
        be_tl_cold = 0
        return
    if be_tl_exact:
        return  # forced counts say nothing about what the table should do
    if _backoff[k][d] and not _probing[k][d]:
        _spent[k][d] += secs  # a backed-off call: it paces the next probe
        return
    if _best_threads[k][d] != t:
        for i in range(BUCKETS):
            _best[k][d][i] = 0
            _seeded_from[k][d][i] = -100
        _best_threads[k][d] = t
    rate = secs / (n if n > 0 else 1)
    best = _best[k][d][b]
    if best == 0 or rate < best:
        _best[k][d][b] = rate
        best = rate
    if _probing[k][d]:
        _probing[k][d] = False
        if rate > _SLOW * best:  # still contended: probe again later
            _spent[k][d] = 0
            _probe_cost[k][d] = secs
        else:
            _lift_backoff(k, d)
            if _on_recover is not None:
                _on_recover(KERNEL_NAMES[k], DTYPE_NAMES[d])
        return
    if rate > _SLOW * best:
        _slow_run[k][d] += 1
        if rate > _SEVERE * best:
            _severe_run[k][d] += 1
        else:
            _severe_run[k][d] = 0
        if _slow_run[k][d] >= _BACKOFF_AFTER or _severe_run[k][d] >= 2:
            _slow_run[k][d] = _severe_run[k][d] = 0
            _start_backoff(k, d, t // 2, secs)
            if _on_backoff is not None:
                _on_backoff(KERNEL_NAMES[k], DTYPE_NAMES[d], t, n, secs, best)
    else:
        _slow_run[k][d] = _severe_run[k][d] = 0


cdef inline void _timed_serial(int k, int d, double start) noexcept:
    """A backed-off serial call ended: its time paces the next probe."""
    _spent[k][d] += (_now() - start) * _clock_scale


# Serial kernels: with the GIL released from NOGIL_MIN elements on, so
# that other Python threads run meanwhile (below it, releasing and retaking
# the GIL costs more than the work).

cdef inline void _sum_serial(int d, void *x, Py_ssize_t n, double *r,
                             float *rf) noexcept nogil:
    if d == 0:
        r[0] = sum_serial_d(<const double *>x, n)
    else:
        rf[0] = sum_serial_f(<const float *>x, n)


cdef inline void _dot_serial(int d, void *x, void *y, Py_ssize_t n, double *r,
                             float *rf) noexcept nogil:
    if d == 0:
        r[0] = dot_serial_d(<const double *>x, <const double *>y, n)
    else:
        rf[0] = dot_serial_f(<const float *>x, <const float *>y, n)


cdef inline void _axpy_serial(int d, double a, void *x, void *y,
                              Py_ssize_t n) noexcept nogil:
    if d == 0:
        be_axpy_d(a, <const double *>x, <double *>y, n)
    else:
        be_axpy_f(<float>a, <const float *>x, <float *>y, n)


cdef inline int _exp_serial(int d, void *x, void *out, Py_ssize_t n) noexcept nogil:
    """exp; whether a finite x overflowed."""
    if d == 0:
        return be_exp_d(<const double *>x, <double *>out, n)
    return be_exp_f(<const float *>x, <float *>out, n)


cdef inline void _cumsum_serial(int d, void *x, void *out,
                                Py_ssize_t n) noexcept nogil:
    if d == 0:
        cumsum_serial_d(<const double *>x, <double *>out, n)
    else:
        cumsum_serial_f(<const float *>x, <float *>out, n)


cdef inline object _scalar(void *value, cnp.ndarray like):
    return PyArray_Scalar(value, cnp.PyArray_DESCR(like), None)


# ---------------------------------------------------------------------------
# the drop-in entry points
# ---------------------------------------------------------------------------


def sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue, initial=_NoValue,
        where=_NoValue):
    """Sum of array elements, as :func:`numpy.sum`.

    A contiguous float32/float64 array summed over all its elements runs the
    calibrated kernel (serial or parallel): a blocked pairwise sum whose
    result is the same for every thread count, within a pairwise-summation
    error of NumPy's.  Any other call is ``numpy.sum`` itself.

    Parameters
    ----------
    a : array_like
        Elements to sum.
    axis, dtype, out, keepdims, initial, where
        As in :func:`numpy.sum` (any of them sends the call to NumPy).

    Returns
    -------
    numpy scalar or ndarray
        As :func:`numpy.sum` returns.

    See Also
    --------
    numpy.sum, explain

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> float(breakeven.sum(np.arange(10.0)))
    45.0
    >>> breakeven.sum(np.ones((2, 3), dtype=np.float32)).dtype
    dtype('float32')
    >>> breakeven.sum([[1, 2], [3, 4]], axis=0)  # NumPy does this one
    array([4, 6])
    """
    cdef cnp.ndarray arr
    cdef int d, t
    cdef Py_ssize_t n
    cdef double r, start
    cdef float rf
    cdef void *px
    if (cnp.PyArray_CheckExact(a) and axis is None and dtype is None
            and out is None and keepdims is _NoValue and initial is _NoValue
            and where is _NoValue):
        arr = <cnp.ndarray>a
        d = _dtype_index(arr)
        n = cnp.PyArray_SIZE(arr)
        t = _route(K_SUM, d, n)
        if t == 0 or t == 1:
            start = _now() if t == 0 else 0.0
            px = cnp.PyArray_DATA(arr)
            if n < NOGIL_MIN:
                _sum_serial(d, px, n, &r, &rf)
            else:
                with nogil:
                    _sum_serial(d, px, n, &r, &rf)
            if t == 0:
                _timed_serial(K_SUM, d, start)
            _unhold()
            return _scalar(&r, arr) if d == 0 else _scalar(&rf, arr)
        if t > 1:
            start = _now()
            try:
                if d == 0:
                    sum_parallel_d(<const double *>cnp.PyArray_DATA(arr), n, t, &r)
                else:
                    sum_parallel_f(<const float *>cnp.PyArray_DATA(arr), n, t, &rf)
            finally:
                _done(K_SUM, d, t, n, start)
            return _scalar(&r, arr) if d == 0 else _scalar(&rf, arr)
    return _slow["sum"](a, axis, dtype, out, keepdims, initial, where)


# The other drop-ins keep their docstrings in breakeven._api, which gives them
# to these entry points.


def dot(a, b, out=None):
    cdef cnp.ndarray x, y
    cdef int d, t
    cdef Py_ssize_t n
    cdef double r, start
    cdef float rf
    cdef void *px
    cdef void *py
    if out is None and cnp.PyArray_CheckExact(a) and cnp.PyArray_CheckExact(b):
        x, y = <cnp.ndarray>a, <cnp.ndarray>b
        d = _dtype_index(x)
        n = cnp.PyArray_SIZE(x)
        if (cnp.PyArray_NDIM(x) == 1 and cnp.PyArray_NDIM(y) == 1
                and _dtype_index(y) == d and cnp.PyArray_SIZE(y) == n):
            t = _route(K_DOT, d, n)
            if t == 0 or t == 1:
                start = _now() if t == 0 else 0.0
                px, py = cnp.PyArray_DATA(x), cnp.PyArray_DATA(y)
                if n < NOGIL_MIN:
                    _dot_serial(d, px, py, n, &r, &rf)
                else:
                    with nogil:
                        _dot_serial(d, px, py, n, &r, &rf)
                if t == 0:
                    _timed_serial(K_DOT, d, start)
                _unhold()
                return _scalar(&r, x) if d == 0 else _scalar(&rf, x)
            if t > 1:
                start = _now()
                try:
                    if d == 0:
                        dot_parallel_d(<const double *>cnp.PyArray_DATA(x),
                                       <const double *>cnp.PyArray_DATA(y), n, t, &r)
                    else:
                        dot_parallel_f(<const float *>cnp.PyArray_DATA(x),
                                       <const float *>cnp.PyArray_DATA(y), n, t, &rf)
                finally:
                    _done(K_DOT, d, t, n, start)
                return _scalar(&r, x) if d == 0 else _scalar(&rf, x)
    return _slow["dot"](a, b, out)


cdef inline bint _disjoint_or_same(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    if pa == pb:
        return True
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef inline bint _writeable_like(object out, cnp.ndarray x) noexcept:
    """out is an exact ndarray of x's shape and dtype, C-contiguous, writeable,
    and x itself or not overlapping it."""
    if not cnp.PyArray_CheckExact(out):
        return False
    cdef cnp.ndarray o = <cnp.ndarray>out
    return (cnp.PyArray_TYPE(o) == cnp.PyArray_TYPE(x)
            and cnp.PyArray_ISCARRAY(o) and cnp.PyArray_ISNOTSWAPPED(o)
            and cnp.PyArray_SAMESHAPE(o, x) and _disjoint_or_same(o, x))


def axpy(a, x, y):
    cdef cnp.ndarray xs, ys
    cdef int d, t
    cdef Py_ssize_t n
    cdef double av, start
    cdef void *px
    cdef void *py
    if ((PyFloat_CheckExact(a) or PyLong_CheckExact(a)) and cnp.PyArray_CheckExact(x)
            and cnp.PyArray_CheckExact(y)):
        xs, ys = <cnp.ndarray>x, <cnp.ndarray>y
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if d >= 0 and _writeable_like(ys, xs):
            t = _route(K_AXPY, d, n)
            if t >= 0:
                av = PyFloat_AsDouble(a)
                start = _now()
                try:
                    if t <= 1:
                        px, py = cnp.PyArray_DATA(xs), cnp.PyArray_DATA(ys)
                        if n < NOGIL_MIN:
                            _axpy_serial(d, av, px, py, n)
                        else:
                            with nogil:
                                _axpy_serial(d, av, px, py, n)
                    elif d == 0:
                        with nogil:
                            axpy_parallel_d(
                                av, <const double *>cnp.PyArray_DATA(xs),
                                <double *>cnp.PyArray_DATA(ys), n, t)
                    else:
                        with nogil:
                            axpy_parallel_f(
                                <float>av, <const float *>cnp.PyArray_DATA(xs),
                                <float *>cnp.PyArray_DATA(ys), n, t)
                finally:
                    if t > 1:
                        _done(K_AXPY, d, t, n, start)
                    else:
                        if t == 0:
                            _timed_serial(K_AXPY, d, start)
                        _unhold()
                return y
    return _slow["axpy"](a, x, y)


def exp(x, out=None, **kwargs):
    cdef cnp.ndarray xs, res
    cdef int d, t
    cdef Py_ssize_t n
    cdef double start
    cdef void *px
    cdef void *po
    cdef int overflow = 0
    if not kwargs and cnp.PyArray_CheckExact(x):
        xs = <cnp.ndarray>x
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if d >= 0 and (out is None or _writeable_like(out, xs)):
            t = _route(K_EXP, d, n)
            if t >= 0:
                if out is None:
                    res = PyArray_NewLikeArray(xs, cnp.NPY_CORDER, NULL, 0)
                else:
                    res = <cnp.ndarray>out
                start = _now()
                try:
                    if t <= 1:
                        px, po = cnp.PyArray_DATA(xs), cnp.PyArray_DATA(res)
                        if n < NOGIL_MIN:
                            overflow = _exp_serial(d, px, po, n)
                        else:
                            with nogil:
                                overflow = _exp_serial(d, px, po, n)
                    elif d == 0:
                        with nogil:
                            overflow = exp_parallel_d(
                                <const double *>cnp.PyArray_DATA(xs),
                                <double *>cnp.PyArray_DATA(res), n, t)
                    else:
                        with nogil:
                            overflow = exp_parallel_f(
                                <const float *>cnp.PyArray_DATA(xs),
                                <float *>cnp.PyArray_DATA(res), n, t)
                finally:
                    if t > 1:
                        _done(K_EXP, d, t, n, start)
                    else:
                        if t == 0:
                            _timed_serial(K_EXP, d, start)
                        _unhold()
                if overflow:  # as NumPy does, by np.errstate / np.seterr
                    _slow["fp_error"]("overflow", "exp")
                return res
    return _slow["exp"](x, out, **kwargs)


def cumsum(a, axis=None, dtype=None, out=None):
    cdef cnp.ndarray xs, res
    cdef int d, t
    cdef cnp.npy_intp n
    cdef double start
    cdef void *px
    cdef void *po
    if dtype is None and cnp.PyArray_CheckExact(a):
        xs = <cnp.ndarray>a
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        if d >= 0 and (axis is None or (
                cnp.PyArray_NDIM(xs) == 1 and type(axis) is int
                and (axis == 0 or axis == -1))):
            if not (out is None or (
                    cnp.PyArray_CheckExact(out) and cnp.PyArray_NDIM(out) == 1
                    and cnp.PyArray_SIZE(out) == n
                    and cnp.PyArray_TYPE(out) == cnp.PyArray_TYPE(xs)
                    and cnp.PyArray_ISCARRAY(out) and cnp.PyArray_ISNOTSWAPPED(out)
                    and _disjoint_or_same(<cnp.ndarray>out, xs))):
                return _slow["cumsum"](a, axis, dtype, out)
            t = _route(K_CUMSUM, d, n)
            if t >= 0:
                if out is None:
                    res = cnp.PyArray_EMPTY(1, &n, cnp.PyArray_TYPE(xs), 0)
                else:
                    res = <cnp.ndarray>out
                if t <= 1:
                    start = _now() if t == 0 else 0.0
                    px, po = cnp.PyArray_DATA(xs), cnp.PyArray_DATA(res)
                    if n < NOGIL_MIN:
                        _cumsum_serial(d, px, po, n)
                    else:
                        with nogil:
                            _cumsum_serial(d, px, po, n)
                    if t == 0:
                        _timed_serial(K_CUMSUM, d, start)
                    _unhold()
                    return res
                start = _now()
                try:
                    if d == 0:
                        cumsum_parallel_d(<const double *>cnp.PyArray_DATA(xs),
                                          <double *>cnp.PyArray_DATA(res), n, t)
                    else:
                        cumsum_parallel_f(<const float *>cnp.PyArray_DATA(xs),
                                          <float *>cnp.PyArray_DATA(res), n, t)
                finally:
                    _done(K_CUMSUM, d, t, n, start)
                return res
    return _slow["cumsum"](a, axis, dtype, out)


# C constants: written as (1 << 40) in a condition, Cython compares through
# Python ints (an object created and two rich comparisons per call).
cdef long long _MAX_BINS = (<long long>1) << 40  # more bins go to NumPy's error
cdef Py_ssize_t _MAX_CD = (<Py_ssize_t>1) << 31  # C's rows x columns for gemm


cdef inline bint _plain_number(object v) noexcept:
    return PyFloat_CheckExact(v) or PyLong_CheckExact(v)


def histogram(a, bins=10, range=None, density=None, weights=None):
    # A range given as Python numbers only: with range=None, NumPy's own
    # min/max pass and edge rules apply (the Python path).
    cdef cnp.ndarray xs
    cdef int d, t
    cdef Py_ssize_t n
    cdef long long nbins
    cdef int overflow = 0
    cdef double lo, hi, start
    cdef tuple rg
    cdef object r0, r1
    if (weights is None and (density is None or density is False)
            and PyLong_CheckExact(bins) and type(range) is tuple
            and cnp.PyArray_CheckExact(a)):
        rg = <tuple>range
        if len(rg) != 2:
            return _slow["histogram"](a, bins, range, density, weights)
        r0, r1 = rg[0], rg[1]
        xs = <cnp.ndarray>a
        d = _dtype_index(xs)
        n = cnp.PyArray_SIZE(xs)
        nbins = PyLong_AsLongLongAndOverflow(bins, &overflow)
        if (d >= 0 and overflow == 0 and 1 <= nbins <= _MAX_BINS
                and _plain_number(r0) and _plain_number(r1)):
            lo, hi = r0, r1
            if lo < hi and hi - lo < INFINITY:  # finite, increasing
                if n <= _HIST_MIN_CHUNK:
                    # one thread counts it whatever the decision: no routing
                    # (nor budget) for what cannot run in parallel
                    return _histogram_count(xs, nbins, lo, hi, 1)
                t = _route(K_HISTOGRAM, d, n)
                if t == 0 or t == 1:
                    start = _now() if t == 0 else 0.0
                    try:
                        return _histogram_count(xs, nbins, lo, hi, 1)
                    finally:
                        if t == 0:
                            _timed_serial(K_HISTOGRAM, d, start)
                        _unhold()
                if t > 1:
                    start = _now()
                    try:
                        return _histogram_count(xs, nbins, lo, hi, t)
                    finally:
                        _done(K_HISTOGRAM, d, t, n, start)
    return _slow["histogram"](a, bins, range, density, weights)


def nearest(X, C):
    global _free, _in_flight
    cdef cnp.ndarray x, c
    cdef int d, t
    cdef Py_ssize_t n
    cdef double start
    cdef bint capped
    if cnp.PyArray_CheckExact(X) and cnp.PyArray_CheckExact(C):
        x, c = <cnp.ndarray>X, <cnp.ndarray>C
        d = _dtype_index(x)
        if (cnp.PyArray_NDIM(x) == 2 and cnp.PyArray_NDIM(c) == 2
                and _dtype_index(c) == d and cnp.PyArray_DIM(x, 1) ==
                cnp.PyArray_DIM(c, 1) and cnp.PyArray_DIM(c, 0) > 0
                and cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1) < _MAX_CD):
            n = cnp.PyArray_DIM(x, 0) * cnp.PyArray_DIM(c, 0) * cnp.PyArray_DIM(x, 1)
            t = _route(K_NEAREST, d, n)
            if t == 0 or t == 1:
                start = _now() if t == 0 else 0.0
                try:
                    return _nearest_serial(X, C)
                finally:
                    if t == 0:
                        _timed_serial(K_NEAREST, d, start)
                    _unhold()
            if t > 1 and (_n_blas >= 0 or be_tl_section):
                # BLAS at one thread inside the parallel loop: a section
                # capped it already, else cap it here for this call
                capped = not be_tl_section
                if capped:
                    _blas_cap()
                start = _now()
                try:
                    return _nearest_parallel(X, C, t)
                finally:
                    _done(K_NEAREST, d, t, n, start)
                    if capped:
                        _blas_restore()
            if t > 1:  # the BLAS is not known here yet: the Python path caps it
                if not be_tl_section:
                    _free += t
                _in_flight -= t
    return _slow["nearest"](X, C)
