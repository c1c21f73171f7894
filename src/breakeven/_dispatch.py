"""Dispatch: decide, per call, serial or parallel and with how many threads.

The decision for a call of kernel ``k`` on dtype ``d`` with work ``w``:

1. a forked child whose parent had started OpenMP threads runs serially
   (libgomp's thread pool does not survive ``fork``);
2. ``threads(n, exact=True)`` in force: exactly ``n`` threads (clamped to the
   usable CPUs); ``threads(1)``: serial;
3. otherwise the profile's step for ``w``, from the hot table if the OpenMP
   team ran within the calibrated sleep time (or a :func:`section` is open),
   else from the cold table;
4. clamped by the usable CPUs (affinity, cgroup quota), by
   ``omp_get_max_threads()`` (``OMP_NUM_THREADS``, threadpoolctl and
   joblib/loky limits), by ``threads(n)`` caps, and by the process-wide core
   budget that concurrent callers share; serial inside a parallel region.

A parallel call is timed (two clock reads).  When a kernel's parallel calls
run much slower than they ran during calibration (another pool, such as
BLAS, spinning on the cores), that kernel backs off to fewer threads, then
probes again later so it recovers once the contention is gone.

Most calls never reach this module: the C path in ``breakeven._fast``
makes the serial decisions, the parallel ones from the hot and the cold
tables, forced and capped thread counts and the back-off, and shares its
core budget, clocks and back-off state with the code here, which handles
the rest (the first call, lone calls of a backed-off kernel, kernels
without a C path, the BLAS cap of BLAS other than OpenBLAS, explain()).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass

from breakeven import _fast, _threads
from breakeven._profile import Profile, load_profile

__all__ = ["Decision", "decide", "run", "section", "threads", "reset"]

_BUILTIN_NAMES = ("sum", "dot", "axpy", "exp", "cumsum", "histogram", "nearest")


@dataclass(frozen=True)
class Decision:
    """What dispatch chose for one call, and why.

    Returned by :func:`breakeven.explain`; ``str()`` gives it in one line.

    Parameters
    ----------
    variant : {"serial", "parallel", "numpy"}
        Which implementation runs; for :func:`breakeven.map`, how the batch
        runs: "inner" (one item after another, each dispatched), "outer" or
        "mixed" (spread over worker threads), or "backend" (the joblib
        backend set with ``joblib.parallel_config``).
    threads : int
        OpenMP threads (1 unless parallel); for map, the most each call of a
        worker may take (0: as dispatch decides).
    work : int
        The call's work (elements; ``n*m*d`` for nearest).
    reason : str
        The decision in words.
    kernel : str
        The kernel's name.
    table : str
        The step table that decided: "hot", "cold", "backoff" (fewer
        threads than the table gives, for contention), or "" (forced
        threads, a forked child, or not decided from the profile).
    workers : int
        Outer workers running the items (:func:`breakeven.map`; else 1).

    See Also
    --------
    explain : The decision for a call, without running it.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> d = breakeven.explain(breakeven.sum, np.ones(10))
    >>> d.variant, d.threads, d.work, d.kernel
    ('serial', 1, 10, 'sum')
    >>> print(d)
    sum: serial (work 10 < ... in the ... table of profile ...)
    """

    variant: str
    threads: int
    work: int
    reason: str
    kernel: str = ""
    # "hot"/"cold": the table used (the call was past the hot threshold);
    # "backoff": fewer threads than the table says, for contention
    table: str = ""
    workers: int = 1

    def __str__(self) -> str:
        t = f" with {self.threads} threads" if self.variant == "parallel" else ""
        if self.variant in ("outer", "mixed", "backend"):
            t = f" with {self.workers} workers"
        return f"{self.kernel}: {self.variant}{t} ({self.reason})"


# ---------------------------------------------------------------------------
# process-wide state
# ---------------------------------------------------------------------------


class _State:
    """Per-process dispatch state.  The core budget, the clocks and the
    back-off flags live in the C fast path (breakeven._fast), which makes
    most decisions; this object reads and writes them through properties."""

    def __init__(self):
        self.lock = threading.Lock()
        self.profile: Profile | None = None
        self.usable = _threads.usable_cpus()
        self.omp_started = False
        self.forked = False
        self.feedback: dict[tuple[str, str], _Feedback] = {}
        self.blas = None  # cached threadpoolctl controller, lazily
        self.hot_min: dict[tuple[str, str], float] = {}
        self.cold: dict[tuple[str, str], list] = {}

    def profile_or_load(self) -> Profile:
        return self.profile if self.profile is not None else profile()

    # the core budget (shared with the C path)
    @property
    def free(self) -> int:
        return _fast.budget()[1]

    @property
    def in_flight(self) -> int:
        return _fast.budget()[2]

    @property
    def peak_in_flight(self) -> int:
        return _fast.budget()[3]

    @peak_in_flight.setter
    def peak_in_flight(self, value) -> None:
        _fast.reset_peak()

    # the clocks (time.monotonic() values)
    @property
    def last_parallel(self) -> float:
        return _fast.times()[0]

    @last_parallel.setter
    def last_parallel(self, value: float) -> None:
        _fast.set_times(last_parallel=value)

    @property
    def last_call(self) -> float:
        return _fast.times()[1]

    @last_call.setter
    def last_call(self, value: float) -> None:
        _fast.set_times(last_call=value)


_state = _State()
_fast.reset_budget(_state.usable)
_local = threading.local()
# The clock that times parallel calls (replaced by tests).
_clock = time.perf_counter


def reset(profile: Profile | None = None) -> None:
    """Forget the loaded profile and per-process state (tests, after a new
    calibration).  ``profile`` replaces the profile instead of reloading."""
    global _state
    old = _state
    _state = _State()
    _state.profile = profile
    _state.blas = old.blas
    _state.omp_started = old.omp_started
    _fast.reset_budget(_state.usable)
    _fast.set_times(last_parallel=-1e9, last_call=-1e9)
    _local.__dict__.clear()
    _sync_fast()


def _sync_fast() -> None:
    """Tell the C fast path the hot thresholds of the profile in use (0, so
    that every call comes here, until a profile is loaded)."""
    p = _state.profile
    if p is None:
        _fast.unconfigure()
        return
    steps = {(k, d): p.steps(k, d, "hot") for k in p.tables for d in p.tables[k]}
    _state.cold = {(k, d): cold_tables(p, k, d) for (k, d) in steps}
    _fast.configure(steps, (p.sleep_after_us or 0) / 1e6, SLOW, SEVERE,
                    BACKOFF_AFTER, _backoff_from_fast, PROBE_RATIO, _recover_from_fast,
                    _state.cold)
    for (k, d) in steps:
        for work, threads, seconds in p.times(k, d, parallel_only=True):
            _fast.seed_rate(k, d, threads, work, seconds / work)


def cold_tables(p: Profile, kernel: str, dtype: str) -> list:
    """``[(idle_seconds, steps), ...]``, shortest idle first: the table for a
    lone call idle at least that long.  One per measured gap of the
    profile's ``wake``, from the kernel's calibrated times with that gap's
    wake-up penalty added to the parallel ones; the profile's cold table for
    every lone call when it has no ``wake`` (or the kernel no times)."""
    from breakeven._calibrate import MARGIN, Point, choose_steps, with_penalty

    fallback = [((p.sleep_after_us or 0) / 1e6, p.steps(kernel, dtype, "cold"))]
    rows = p.times(kernel, dtype)
    if not p.wake or not rows:
        return fallback
    by_work: dict[int, dict[int, float]] = {}
    for work, t, seconds in rows:
        by_work.setdefault(work, {})[t] = seconds
    points = [Point(w, ts) for w, ts in sorted(by_work.items()) if 1 in ts]
    if not points:
        return fallback
    out = []
    for gap in sorted({g for g, _, _ in p.wake}):
        penalty = {t: s for g, t, s in p.wake if g == gap}
        out.append((gap / 1e6, choose_steps(with_penalty(points, penalty), MARGIN)))
    return out[:8]


def _cold_steps(kernel: str, dtype: str, idle: float):
    """The cold table for a lone call idle this many seconds."""
    tables = _state.cold.get((kernel, dtype))
    if not tables:
        return None
    chosen = tables[0][1]
    for gap, steps in tables:
        if idle >= gap:
            chosen = steps
    return chosen


def _after_fork_in_child() -> None:
    # Any parallel region in the parent (through dispatch, the C path or a
    # calibration) leaves libgomp's pool in a state the child cannot use.
    forked = _state.omp_started or _state.forked or _fast.times()[0] > -1e8
    _state.lock = threading.Lock()
    _state.forked = forked
    _fast.reset_budget(_state.usable)
    _fast.set_forked(forked)
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def profile() -> Profile:
    """The profile dispatch uses (loaded on first use)."""
    p = _state.profile
    if p is None:
        with _state.lock:
            if _state.profile is None:
                _state.profile = load_profile()
            p = _state.profile
        _sync_fast()
    return p


# ---------------------------------------------------------------------------
# thread-local controls: threads() and section()
# ---------------------------------------------------------------------------


def _caps() -> list:
    caps = getattr(_local, "caps", None)
    if caps is None:
        caps = _local.caps = []
    return caps


@contextlib.contextmanager
def threads(n: int, *, exact: bool = False):
    """Cap (or, with ``exact=True``, force) the threads of dispatched calls
    made by this Python thread inside the block.

    ``threads(1)`` forces serial.  Nestable: an inner cap cannot raise an
    outer one (``exact`` forces regardless).  Thread-local.

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
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"threads() takes an integer, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"threads() takes n >= 1, got {n}")
    caps = _caps()
    caps.append((n, exact))
    _sync_thread_controls()
    try:
        yield
    finally:
        caps.pop()
        _sync_thread_controls()


def _sync_thread_controls() -> None:
    """Give this thread's caps and section to the C path."""
    exact, cap = 0, 0
    for n, ex in getattr(_local, "caps", ()):
        if ex:
            exact = n
        elif not cap or n < cap:
            cap = n
    # C ints: any count past the usable CPUs means the same (clamped there)
    exact, cap = min(exact, 2**31 - 1), min(cap, 2**31 - 1)
    _fast.set_thread_controls(exact, cap, getattr(_local, "section", 0))


@contextlib.contextmanager
def section(n_threads: int | None = None):
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
    if n_threads is not None and (isinstance(n_threads, bool)
                                  or not isinstance(n_threads, int)):
        raise TypeError("section() takes an integer or None")
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"section() takes n_threads >= 1, got {n_threads}")
    outer = getattr(_local, "section", 0)
    if outer:  # nested: the outer section's reservation already applies
        _local.section = outer
        yield
        return
    want = _state.usable if n_threads is None else min(n_threads, _state.usable)
    got = _fast.reserve(want)
    try:
        blas_limit = _blas_limiter()
        _local.section = got
        _sync_thread_controls()
        with blas_limit:
            yield
    finally:
        _local.section = 0
        _sync_thread_controls()
        _fast.release(got)


def _blas_controller():
    if _state.blas is None:
        from threadpoolctl import ThreadpoolController

        _state.blas = ThreadpoolController()
        _fast.set_blas(_blas_functions(_state.blas))
    return _state.blas


def _blas_functions(ctl) -> list | None:
    """The addresses of ``(get_num_threads, set_num_threads)`` of each BLAS
    library the C path must cap around a parallel BLAS-calling kernel (it
    calls them directly: a threadpoolctl round trip per call costs more than
    the calls themselves), or None when one of them is not an OpenBLAS it
    can cap, so that the Python path caps them through threadpoolctl.  An
    OpenBLAS built on OpenMP needs no cap: inside the kernel's parallel
    region its own region is nested, hence serial."""
    import ctypes

    pairs = []
    try:
        for lib in ctl.select(user_api="blas").lib_controllers:
            if lib.internal_api != "openblas":
                return None
            if getattr(lib, "threading_layer", "") == "openmp":
                continue
            get = lib._get_symbol("openblas_get_num_threads")
            put = lib._get_symbol("openblas_set_num_threads")
            if get is None or put is None:
                return None
            pairs.append((ctypes.cast(get, ctypes.c_void_p).value,
                          ctypes.cast(put, ctypes.c_void_p).value))
    except Exception:  # another threadpoolctl: let it do the capping
        return None
    return pairs


class _BlasCap:
    """Caps the BLAS libraries to one thread and restores them: through the
    cached controllers' own get/set calls (a microsecond or two), not a
    threadpoolctl limit context (~10 us, it rescans state), and only for
    libraries not at one thread already."""

    __slots__ = ("libs", "restore")

    def __init__(self, libs):
        self.libs = libs
        self.restore = []

    def __enter__(self):
        self.restore = []
        for lib in self.libs:
            n = lib.get_num_threads()
            if n is not None and n != 1:
                lib.set_num_threads(1)
                self.restore.append((lib, n))
        return self

    def __exit__(self, *exc):
        for lib, n in self.restore:
            lib.set_num_threads(n)
        self.restore = []
        return False


def _blas_limiter():
    """A context capping BLAS to one thread while it is open."""
    ctl = _blas_controller()
    return _BlasCap(ctl.select(user_api="blas").lib_controllers)


# ---------------------------------------------------------------------------
# contention feedback
# ---------------------------------------------------------------------------

# A parallel call slower than SLOW x the best seen at its size counts as
# contended; BACKOFF_AFTER such calls in a row (or two SEVERE x slower)
# halve the kernel's threads.  While backed off, the kernel's calls are timed
# too, and a probe at full threads runs once they have taken PROBE_RATIO x as
# long as the last slow parallel call: under contention a probe costs as much
# as the calls that caused the back-off, so probing is kept to about
# 1/PROBE_RATIO of the kernel's time, however bad the contention.  A probe
# that runs at normal speed lifts the back-off.
SLOW = 3.0
SEVERE = 10.0
BACKOFF_AFTER = 4
PROBE_RATIO = 20.0


class _Feedback:
    """Per kernel and dtype: the best seconds per unit of work seen for each
    thread count and size, and the current back-off.  Updated without a
    lock: a lost update only delays a back-off or a probe by one call."""

    __slots__ = ("key", "best", "slow_streak", "severe_streak", "cap", "spent",
                 "probe_cost")

    def __init__(self, key: tuple[str, str] = ("", "")):
        self.key = key
        # (threads, log2 of work) -> best seconds per unit of work seen: the
        # rate depends on the size (fixed costs weigh on small calls), so
        # calls are compared with calls of about their own size.
        self.best: dict[tuple[int, int], float] = {}
        self.slow_streak = 0
        self.severe_streak = 0
        self.cap = 0  # 0: no back-off; else max threads
        self.spent = 0.0  # seconds in backed-off calls since the last probe
        self.probe_cost = 0.0  # what the last slow parallel call took

    def observe(self, threads: int, work: int, seconds: float) -> None:
        """A parallel call of ``threads`` threads took ``seconds``."""
        rate = seconds / max(work, 1)
        key = (threads, max(work, 1).bit_length())
        best = self.best.get(key)
        if best is None or rate < best:
            self.best[key] = rate
            best = rate
        slow = rate > SLOW * best
        if self.cap and threads > self.cap:  # this was a probe
            if slow:
                self.probe_cost = seconds
            else:
                self.cap = 0
                _fast.set_backoff(*self.key, False)
            self.spent = 0.0
            return
        if slow:
            self.slow_streak += 1
            self.severe_streak = self.severe_streak + 1 \
                if rate > SEVERE * best else 0
            if self.slow_streak >= BACKOFF_AFTER or self.severe_streak >= 2:
                self.back_off(threads, seconds)
        else:
            self.slow_streak = self.severe_streak = 0

    def back_off(self, threads: int, seconds: float) -> None:
        self.cap = max(1, threads // 2)
        self.slow_streak = self.severe_streak = 0
        self.spent, self.probe_cost = 0.0, seconds
        _fast.set_backoff(*self.key, True, self.cap, seconds)

    def backed_off_call(self, seconds: float) -> None:
        """A call run with fewer threads because of the back-off took this."""
        self.spent += seconds
        _fast.add_spent(*self.key, seconds)

    def limit(self, threads: int) -> tuple[int, bool]:
        """(threads allowed, whether this call is a probe)."""
        if not self.cap or threads <= self.cap:
            return threads, False
        if self.spent >= _fast.probe_ratio(*self.key) * self.probe_cost:
            return threads, True
        return self.cap, False


def _feedback(key: tuple[str, str]) -> _Feedback:
    fb = _state.feedback.get(key)
    if fb is None:
        fb = _Feedback(key)
        # The calibration's times are the uncontended yardstick: without
        # them the first calls seen would set it, contended or not.
        prof = _state.profile
        rows = prof.times(*key, parallel_only=True) if prof is not None else ()
        for work, threads, seconds in rows:
            fb.best[(threads, max(work, 1).bit_length())] = seconds / work
        fb = _state.feedback.setdefault(key, fb)
    return fb


def _backoff_from_fast(kernel: str, dtype: str, threads: int, work: int,
                       seconds: float, best_rate: float) -> None:
    """The C path saw a run of slow parallel calls and backed the kernel
    off (it times the backed-off calls and probes itself); record it here
    too, for explain() and for calls that take the Python path."""
    fb = _feedback((kernel, dtype))
    key = (threads, max(work, 1).bit_length())
    fb.best[key] = min(fb.best.get(key, best_rate), best_rate)
    fb.back_off(threads, seconds)


def _recover_from_fast(kernel: str, dtype: str) -> None:
    """A probe on the C path ran at normal speed: the back-off is over."""
    fb = _state.feedback.get((kernel, dtype))
    if fb is not None:
        fb.cap = 0
        fb.spent = 0.0


# ---------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------


def decide(kernel: str, dtype: str, work: int, uses_blas: bool = False,
           explain: bool = False) -> Decision:
    """Choose serial or parallel for one call (see the module docstring).

    With ``explain=True`` the reason is spelled out in full; otherwise it is
    left short, to keep the hot path cheap.
    """
    variant, threads, work, reason, table = _decide(kernel, dtype, work, explain)
    return Decision(variant, threads, work, reason, kernel, table)


def _decide(kernel: str, dtype: str, work: int, explain: bool
            ) -> tuple[str, int, int, str, str]:
    """(variant, threads, work, reason), and the table used: a tuple, since
    a Decision costs a microsecond to build and this runs on every call past
    the hot threshold."""
    st = _state
    caps = getattr(_local, "caps", None)
    if st.forked:
        return ("serial", 1, work, "in a forked child: OpenMP is not "
                "fork-safe, so this process runs serially", "")
    exact = 0
    cap = st.usable
    if caps:
        for n, ex in caps:
            if ex:
                exact = n
            elif n < cap:
                cap = n
    if exact:
        t = min(exact, st.usable)
        return ("parallel" if t > 1 else "serial", t, work,
                f"threads({exact}, exact=True)", "")
    prof = st.profile or profile()
    in_section = getattr(_local, "section", 0)
    # The hot table first: a call it keeps serial is decided without reading
    # the clock (the cold table never goes parallel earlier than the hot one).
    t = prof.threads_for(kernel, dtype, work, "hot")
    state = "hot"
    thr = None
    if t > 1 and not in_section and sleeping():
        state = "cold"
        idle = time.monotonic() - max(_fast.times())
        steps = _cold_steps(kernel, dtype, idle) or prof.steps(kernel, dtype, "cold")
        t = 1
        for work_min, threads_ in steps:
            if work < work_min:
                break
            t = threads_
        thr = next((w for w, n in steps if n > 1), None)
    if t <= 1:
        if not explain:
            return ("serial", 1, work, "", state if t else "")
        if state == "hot":
            thr = prof.threshold(kernel, dtype, state)
        if dtype not in prof.tables.get(kernel, {}):
            return ("serial", 1, work, f"{kernel} {dtype} is not calibrated in "
                    f"profile {prof.source} (run `breakeven calibrate`"
                    f"{'' if kernel in _BUILTIN_NAMES else ' --module ...'})", state)
        below = (f"work {work} < {thr}" if thr else
                 "parallel never paid for this kernel")
        extra = (" (a lone call: no dispatched call within the team's "
                 f"{prof.sleep_after_us / 1e3:g} ms sleep time, so the OpenMP "
                 "team would have to wake up; the table for this idle time)"
                 if state == "cold" else "")
        return ("serial", 1, work, f"{below} in the {state} table of "
                f"profile {prof.source}{extra}", state)
    if state == "hot":
        thr = prof.threshold(kernel, dtype, state)
    why = [f"work {work} >= {thr} in the {state} "
           f"table of profile {prof.source}"] if explain else []
    limit = min(st.usable, _threads.max_threads(), cap)
    if limit < t:
        t = limit
        if explain:
            why.append(f"capped at {limit} (usable CPUs {st.usable}, "
                       f"omp_get_max_threads {_threads.max_threads()}, "
                       f"threads() cap {cap})")
    if _threads.in_parallel():
        return ("serial", 1, work, "already inside a parallel region", "")
    fb = st.feedback.get((kernel, dtype))
    backed_off = False
    if kernel in _fast.KERNEL_NAMES:  # the C path keeps this kernel's back-off
        on, cap, spent, cost = _fast.backoff_state(kernel, dtype)
        if on and t > cap:
            if spent < _fast.probe_ratio(kernel, dtype) * cost:
                t = cap
                backed_off = True
                if explain:
                    why.append(f"backed off to {cap} threads: recent parallel "
                               f"calls ran over {SLOW:g}x slower than their "
                               "best (contention)")
            elif fb is not None:
                fb.cap = cap  # the Python path makes this probe: judge it
    elif fb is not None and fb.cap:
        t2, probe = fb.limit(t)
        if t2 < t:
            backed_off = True
            if explain:
                why.append(f"backed off to {t2} threads: recent parallel calls "
                           f"ran over {SLOW:g}x slower than their best "
                           "(contention)")
        t = t2
    if in_section:
        t = min(t, in_section)
        if explain:
            why.append(f"inside a section holding {in_section} cores")
    elif explain:
        why.append(f"{_fast.budget()[1]} of {st.usable} CPUs free")
    table = "backoff" if backed_off else state
    if t <= 1:
        return ("serial", 1, work, "; ".join(why) or "capped to 1", table)
    return ("parallel", t, work, "; ".join(why), table)


def sleeping() -> bool:
    """Whether this is a lone call: no call big enough to go parallel has run
    within the OpenMP team's calibrated sleep time.

    A call in a loop of such calls pays the team's wake-up at most once (the
    first parallel call wakes it, and the next ones find it spinning), so it
    is decided from the hot table even if the team is asleep right now; a
    lone call pays the wake-up in full, and is decided from the cold table.
    """
    prof = _state.profile
    sleep_us = prof.sleep_after_us if prof is not None else None
    if not sleep_us:
        return False
    recent = max(_fast.times())
    return (time.monotonic() - recent) * 1e6 > sleep_us


def _hot_threshold(key: tuple[str, str]) -> float:
    """Smallest work the hot table sends parallel (cached per profile)."""
    thr = _state.profile_or_load().threshold(*key, "hot")
    value = float("inf") if thr is None else thr
    _state.hot_min[key] = value
    return value


def run(kernel, dtype: str, work: int, args: tuple, kwargs=None):
    """Decide and run ``kernel`` (a :class:`~breakeven.Kernel`) on ``args``."""
    # Fast path: below the hot threshold, with no threads(..., exact=True) in
    # force, the call is serial whatever else holds: no Decision is built.
    key = (kernel.name, dtype)
    thr = _state.hot_min.get(key)
    if thr is None:
        thr = _hot_threshold(key)
    if work < thr and not getattr(_local, "caps", None):
        return kernel.serial(*args, **kwargs) if kwargs else kernel.serial(*args)
    variant, threads, _, _, table = _decide(kernel.name, dtype, work, False)
    if variant != "parallel":
        if table == "backoff":  # timed: its time paces the next probe
            t0 = _clock()
            result = kernel.serial(*args, **(kwargs or {}))
            _feedback(key).backed_off_call(_clock() - t0)
        else:
            result = kernel.serial(*args, **kwargs) if kwargs \
                else kernel.serial(*args)
        if table:
            _fast.set_times(last_call=time.monotonic())
        return result
    return _run_parallel(kernel, dtype, work, args, threads, kwargs or {},
                         table == "backoff")


def _run_parallel(kernel, dtype: str, work: int, args: tuple, want: int,
                  kwargs: dict, backed_off: bool = False):
    st = _state
    in_section = getattr(_local, "section", 0)
    if in_section:  # the section holds the cores already
        got = want
        _fast.count_in_flight(got)
    else:
        got = _fast.take_threads(want)
        if not got:  # the budget is spent by other callers
            return kernel.serial(*args, **kwargs)
    st.omp_started = True
    prof = st.profile
    sleep_us = prof.sleep_after_us if prof is not None else None
    # A call that wakes a sleeping team pays the wake-up: it says nothing
    # about contention, so it is not compared with the others.
    cold_start = bool(sleep_us) and \
        (time.monotonic() - _fast.times()[0]) * 1e6 > sleep_us
    try:
        blas = (_blas_limiter() if kernel.uses_blas and not in_section
                else contextlib.nullcontext())
        with blas:
            t0 = _clock()
            result = kernel.parallel(*args, got, **kwargs)
            elapsed = _clock() - t0
    finally:
        _fast.set_times(last_parallel=time.monotonic())
        if in_section:
            _fast.count_in_flight(-got)
        else:
            _fast.give_threads(got)
    fb = _feedback((kernel.name, dtype))
    if backed_off:
        fb.backed_off_call(elapsed)
    elif not cold_start:
        fb.observe(got, work, elapsed)
    return result
