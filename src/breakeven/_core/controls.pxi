# Python side: decisions as dry runs, calls made from Python, and the
# thread controls threads() and section().
# (an include file of engine.pyx: see its docstring)

def decide(int kernel, int d, Py_ssize_t work, idle=None):
    """The rule as a dry run: what a call of this work would get now
    (``idle`` None), as a call in a loop (``idle`` 0) or as a lone call after
    ``idle`` seconds.  Returns (threads, why) with ``why`` a dict."""
    cdef Slot *s = _slot(kernel)
    cdef Entry *e = NULL
    cdef Choice choice
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
    zero_choice(&choice)
    choice.threshold = INFINITY
    choice.tm = &_teams[s.team]
    t = max(_choose(e, work, mode, idle_ns, &choice), 1)
    return t, {
        "table": ("none", "hot", "cold", "forced", "forked", "estimate",
                  "learned")[choice.table],
        "explore": bool(choice.explore), "serial_ns": choice.serial_ns,
        "parallel_ns": choice.parallel_ns,
        "gap": choice.gap, "idle": choice.idle / 1e9,
        "threshold": None if choice.threshold == INFINITY else int(choice.threshold),
        "table_threads": choice.table_threads, "cap": choice.cap,
        "backoff": choice.backoff, "probe": bool(choice.probe),
        "limit": choice.limit, "max_threads": choice.max_threads,
        "pool_limit": choice.pool_limit, "usable": _usable,
        "nested": bool(choice.nested), "section": choice.section, "free": choice.free,
        "budget": bool(choice.budget), "held": bool(choice.held),
        "share": choice.share, "callers": choice.callers, "awake": choice.awake,
        "forced": tl_exact, "sleep_after": _sleep_after / 1e9, "team": s.team,
        "wait": (choice.wait / 1e9 if choice.wait >= 0 and choice.wait_most > 0
                 else None),
        "wait_most": choice.wait_most / 1e9,
        "corrected": choice.corrected, "wake_seen": choice.wake_seen / 1e9,
        "assumed_wake": choice.wake_assumed / 1e9,
    }


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
        if self.entered:
            raise RuntimeError("this section is open already")
        self.entered = True
        self.nested = tl_section != 0
        if self.nested:  # the outer section's reservation applies
            return None
        self.got = _take_section(want)
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
        _give_cores(self.got)
        return False
