"""Batches: one dispatch function over many items, inner or outer parallel.

A batch of many small arrays gains nothing from parallel kernels (each is
below the break-even point) but may gain from running several items at once;
a batch of a few large arrays gains from parallel kernels and little from
spreading the items.  :func:`map` estimates both from the calibrated times in
the profile (the serial and parallel time of each kernel against its work,
and what a ``joblib.Parallel`` run and each of its tasks cost here) and runs
the cheaper plan:

``inner``
    the items one after another, each dispatched as usual;
``outer``
    the items split into batches over joblib's threading backend, ``k``
    worker threads, each kernel serial (the kernels release the GIL);
``mixed``
    ``k`` worker threads each with up to ``t`` OpenMP threads, ``k*t`` no
    more than the usable CPUs.

A backend chosen by the user with ``joblib.parallel_config`` (``"loky"``,
``"multiprocessing"``, ``"dask"``, ...) takes the batches instead; each
worker dispatches with its own host's profile and the thread limit the
backend sets.
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import math
import operator
import os
from dataclasses import dataclass

import numpy as np

from breakeven._core import engine, host, tables
from breakeven._core.decisions import Decision
from breakeven._kernels import api, registry
from breakeven._text import duration

__all__ = ["map"]

# Spread the items only when that is estimated at least this much faster.
MARGIN = 0.10
# Items whose plan is looked at to estimate a batch (evenly spaced).
SAMPLE = 16
# A task should carry this many times joblib's per-task cost in work.
TASK_RATIO = 50
# Batches per worker, at most (more balance the load, each costs a task).
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class MapPlan:
    """How :func:`map` runs a batch.  ``workers`` outer workers (1 for
    ``inner``), each call with at most ``threads`` OpenMP threads (0: as
    dispatch decides), in ``tasks`` joblib tasks; ``estimates`` are the
    predicted seconds of the plans compared."""

    mode: str
    workers: int
    threads: int
    tasks: int
    work: int
    kernel: str
    reason: str
    backend: str = ""
    inner_limit: int | None = None
    estimates: tuple = ()
    lifted: bool = False  # inner_max_num_threads lifted: the host's budget shares

    def decision(self) -> Decision:
        return Decision(self.mode, self.threads, self.work, self.reason,
                        self.kernel, workers=self.workers)


# ---------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------


def _resolve(func):
    """(planner, reference) of a dispatch function: ``planner(*args)`` is
    :func:`breakeven._kernels.api.plan` for it; ``reference`` is what a worker
    process gets: a built-in's name, or the function itself."""
    k = registry.by_call(func)
    if k is not None and k.dropin is func and registry.BUILTINS.get(k.name) is k:
        return functools.partial(api.plan, func), k.name
    if k is None:
        raise TypeError(f"func must be a breakeven function (breakeven.sum, ...) "
                        f"or a kernel registered with breakeven.kernel or "
                        f"breakeven.register, got "
                        f"{getattr(func, '__name__', type(func).__name__)!r}")
    return functools.partial(api.plan, func), func


def _calls(func, items: list, starred: bool) -> list:
    """``func`` on each item: ``func(*item)`` if the batch's items are
    argument tuples, else ``func(item)``."""
    if starred:
        return list(itertools.starmap(func, items))
    return [func(it) for it in items]


def _n_jobs(n_jobs, configured) -> int | None:
    """joblib's convention: None (the configured value, else every usable
    CPU), a positive count, or -1 for all CPUs, -2 for all but one, ..."""
    if n_jobs is None:
        n_jobs = configured
    if n_jobs is None:
        return None
    try:
        n = operator.index(n_jobs)
    except TypeError:
        raise TypeError(f"n_jobs must be an integer or None, got "
                        f"{type(n_jobs).__name__}") from None
    if n == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, a positive count "
                         "or -1 for all CPUs")
    return n if n > 0 else max(1, engine.usable() + 1 + n)


def _joblib_config():
    """(backend name or None if the user chose none, its instance, n_jobs
    configured or None, inner_max_num_threads or None)."""
    # joblib is imported by map() only: it costs tens of milliseconds
    from joblib.parallel import get_active_backend

    backend, n_jobs = get_active_backend()
    # A backend chosen with joblib.parallel_config lives in the config: the
    # same object at every query; with none chosen, joblib builds its
    # default anew each time.
    chosen = get_active_backend()[0] is backend
    name = type(backend).__name__.removesuffix("Backend").lower()
    name = {"daskdistributed": "dask"}.get(name, name)
    return (name if chosen else None), backend, n_jobs, \
        getattr(backend, "inner_max_num_threads", None)


# ---------------------------------------------------------------------------
# costs, from the calibrated times
# ---------------------------------------------------------------------------


class _Curve:
    """Seconds against work for one kernel, dtype and thread count: log-log
    interpolation between the calibrated points, proportional beyond the
    largest, the smallest's time below it."""

    def __init__(self, rows):
        rows = sorted(rows)
        self.works = [w for w, _ in rows]
        self.logs = [(math.log(w), math.log(s)) for w, s in rows]
        self.rows = rows

    def __call__(self, work: int) -> float:
        works, rows = self.works, self.rows
        if work <= works[0]:
            return rows[0][1]
        if work >= works[-1]:
            return rows[-1][1] * work / works[-1]
        i = bisect.bisect_right(works, work)
        (x0, y0), (x1, y1) = self.logs[i - 1], self.logs[i]
        return math.exp(y0 + (y1 - y0) * (math.log(work) - x0) / (x1 - x0))


_curve_cache: dict = {}


def _curves(profile, kernel: str, dtype: str) -> dict[int, _Curve]:
    key = (id(profile), kernel, dtype)
    hit = _curve_cache.get(key)
    if hit is not None and hit[0] is profile:
        return hit[1]
    by_threads: dict[int, list] = collections.defaultdict(list)
    for work, t, seconds in profile.times(kernel, dtype):
        by_threads[t].append((work, seconds))
    curves = {t: _Curve(rows) for t, rows in by_threads.items() if rows}
    if len(_curve_cache) > 64:
        _curve_cache.clear()
    _curve_cache[key] = (profile, curves)
    return curves


def _sample(items: list) -> list:
    n = len(items)
    k = min(n, SAMPLE)
    return [items[i * n // k] for i in range(k)]


def _estimate(profile, plans, n_items: int, limit: int, max_workers: int,
              batch: dict) -> tuple[str, int, int, int, list]:
    """The cheapest (mode, workers, threads, tasks) and the estimates."""
    scale = n_items / len(plans)
    curves = {}
    inner = 0.0
    per_t: dict[int, float] = collections.defaultdict(float)
    gil = 0.0
    # a uniform batch samples one plan 16 times: estimate each distinct once
    for (kernel, dtype, work), k in collections.Counter(plans).items():
        key = (kernel, dtype)
        if key not in curves:
            curves[key] = _curves(profile, kernel, dtype)
        c = curves[key]
        table = min(profile.threads_for(kernel, dtype, work, "hot"), limit)
        serial = c[1](work)
        inner += k * (c[table](work) if table in c else serial)
        for t in c:
            per_t[t] += k * (c[min(t, table)](work) if min(t, table) in c
                             else serial)
        # a call holds the GIL for about what the smallest one costs
        gil += k * min(serial, c[1].rows[0][1])
    inner, gil = inner * scale, gil * scale
    estimates = [("inner", 1, 0, 1, inner)]
    start, task = batch.get("start_s", math.inf), batch.get("task_s", math.inf)
    for workers in range(2, min(limit, max_workers, n_items) + 1):
        for t in sorted(per_t):
            if workers * t > limit:
                continue
            total = per_t[t] * scale
            tasks = _tasks(total, workers, n_items, task)
            cost = start + tasks * task + max(gil, total / workers)
            estimates.append(("outer" if t == 1 else "mixed", workers, t, tasks,
                              cost))
    best = min(estimates, key=lambda e: e[4])
    if best[0] != "inner" and best[4] * (1 + MARGIN) > inner:
        best = estimates[0]
    return best[0], best[1], best[2], best[3], estimates


def _tasks(total: float, workers: int, n_items: int, task: float) -> int:
    """Batches: enough to balance ``workers``, few enough that each carries
    TASK_RATIO times a task's cost."""
    by_cost = int(total / (TASK_RATIO * task)) if task > 0 else n_items
    return max(1, min(n_items, max(workers, min(TASKS_PER_WORKER * workers,
                                                 by_cost))))


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------


def _plan(func, items: list, n_jobs) -> MapPlan:
    planner, _ = _resolve(func)
    name = getattr(func, "__name__", "")
    backend_name, _backend, configured, inner_limit = _joblib_config()
    max_workers = _n_jobs(n_jobs, configured)
    n = len(items)
    if n == 0:
        return MapPlan("inner", 1, 0, 0, 0, name, "no items")
    if backend_name not in (None, "threading"):
        if backend_name == "sequential" or max_workers == 1:
            return MapPlan("inner", 1, 0, 1, 0, name,
                           f"joblib backend {backend_name!r} with one worker")
        from joblib import effective_n_jobs  # heavy: see _joblib_config

        workers = effective_n_jobs(max_workers if max_workers else -1)
        tasks = max(1, min(n, TASKS_PER_WORKER * workers))
        limit = f", {inner_limit} inner threads" if inner_limit else ""
        lifted = (not inner_limit and workers > 1
                  and getattr(_backend, "supports_inner_max_num_threads", False)
                  and host.join())
        if lifted:  # the workers share the host's budget: no static split
            inner_limit = engine.usable()
            limit = (f", joblib's inner_max_num_threads lifted to {inner_limit}: the "
                     f"workers share the host's core budget, each taking the "
                     f"cores its neighbours leave idle (not "
                     f"{max(1, inner_limit // workers)} each)")
        return MapPlan("backend", workers, inner_limit or 0, tasks, 0, name,
                       f"joblib backend {backend_name!r} chosen by "
                       f"parallel_config: {n} items in {tasks} tasks over "
                       f"{workers} workers{limit}; each worker dispatches with "
                       "its own host's profile",
                       backend=backend_name, inner_limit=inner_limit, lifted=lifted)
    sample = _sample(items)
    exact, cap, _ = engine.thread_controls()
    limit = min(engine.usable(), engine.max_threads(),
                *(n for n in (exact, cap) if n))
    if inner_limit:
        limit = min(limit, inner_limit)
    max_workers = max_workers or limit
    profile = tables.profile()
    # a batch of arrays alike in what a planner reads (shape, dtype, strides)
    # to one planned before gets the same plan: the planning would otherwise
    # cost a few percent of a batch of small arrays
    if all(type(x) is np.ndarray for x in sample):
        sig = tuple([(x.shape, x.dtype, x.strides) for x in sample])
        key = (func, n, limit, max_workers, sig)
        hit = _plan_cache.get(key)
        if hit is not None and hit[0] is profile:
            return hit[1]
        plan = _plan_batch(func, planner, name, sample, n, limit, max_workers,
                           profile, False)
        if len(_plan_cache) >= 64:
            _plan_cache.clear()
        _plan_cache[key] = (profile, plan)
        return plan
    return _plan_batch(func, planner, name, sample, n, limit, max_workers,
                       profile, type(items[0]) is tuple)


_plan_cache: dict = {}


def _plan_batch(func, planner, name: str, sample: list, n: int, limit: int,
                max_workers: int, profile, starred: bool) -> MapPlan:
    """The plan for ``n`` items like ``sample`` (see :func:`_plan`)."""
    plans = []
    seen: dict = {}
    for item in sample:
        key = ((item.shape, item.dtype, item.strides)
               if type(item) is np.ndarray else None)
        plan = seen.get(key) if key is not None else None
        if plan is None:
            plan = planner(*(item if starred else (item,)))
            if key is not None:
                seen[key] = plan
        if isinstance(plan, str):
            return MapPlan("inner", 1, 0, 1, 0, name,
                           f"items run one after another: NumPy computes some "
                           f"of them ({plan})")
        kernel, dtype, work = plan[:3]
        plans.append((kernel.name, dtype, work))
    work = sum(w for _, _, w in plans) * n // len(plans)
    missing = sorted({f"{k} {d}" for k, d, _ in plans
                      if 1 not in _curves(profile, k, d)})
    if limit < 2 or max_workers < 2 or n < 2 or missing:
        why = (f"no calibrated serial times for {', '.join(missing)} in "
               f"{profile.source}" if missing else
               f"{limit} usable CPU(s), n_jobs {max_workers}, {n} item(s)")
        return MapPlan("inner", 1, 0, 1, work, name,
                       f"items one after another, each dispatched ({why})")
    if not profile.batch:
        return MapPlan("inner", 1, 0, 1, work, name,
                       f"items one after another, each dispatched (joblib's "
                       f"overhead is not calibrated in {profile.source})")
    mode, workers, t, tasks, estimates = _estimate(
        profile, plans, n, limit, max_workers, profile.batch)
    est = {e[:3]: e[4] for e in estimates}
    inner_cost = est[("inner", 1, 0)]
    if mode == "inner":
        spread = min((e for e in estimates if e[0] != "inner"),
                     key=lambda e: e[4], default=None)
        alt = (f"; spread over {spread[1]} workers x {spread[2]} thread(s): "
               f"{duration(spread[4])}") if spread else ""
        reason = (f"{n} items one after another, each dispatched: estimated "
                  f"{duration(inner_cost)}{alt} (profile {profile.source})")
    else:
        reason = (f"{n} items in {tasks} batches over {workers} worker threads x "
                  f"{t} OpenMP thread{'s' if t > 1 else ''}: estimated "
                  f"{duration(est[(mode, workers, t)])} against {duration(inner_cost)} "
                  f"one after another (profile {profile.source})")
    return MapPlan(mode, workers, t, tasks, work, name, reason,
                   backend="threading" if mode != "inner" else "",
                   estimates=tuple(estimates))


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------

# What workers did: (pid, omp_get_max_threads(), threads in flight at most).
_log: collections.deque = collections.deque(maxlen=256)


def worker_log() -> list[tuple[int, int, int]]:
    """The batches this process ran for :func:`map`, as ``(pid, OpenMP thread
    limit, most OpenMP threads in flight during the batch)``; for tests of
    workers' thread limits."""
    return list(_log)


def _apply(func, items: list, threads: int | None, starred: bool):
    """Run a batch in a worker: ``func`` (or the built-in of that name) on
    each item, with at most ``threads`` OpenMP threads per call."""
    if isinstance(func, str):  # a built-in, by name
        func = registry.BUILTINS[func].dropin
    engine.reset_peak()
    if threads:
        with engine.threads(threads):
            out = _calls(func, items, starred)
    else:
        out = _calls(func, items, starred)
    _log.append((os.getpid(), engine.max_threads(), engine.budget()[3]))
    return out


def _chunks(items: list, tasks: int) -> list[list]:
    n = len(items)
    return [items[i * n // tasks:(i + 1) * n // tasks] for i in range(tasks)]


def _run(plan: MapPlan, func, items: list) -> list:
    starred = bool(items) and type(items[0]) is tuple
    if plan.mode == "inner":
        return _calls(func, items, starred)
    from joblib import Parallel, delayed  # heavy: see _joblib_config

    if plan.mode == "backend":
        _, ref = _resolve(func)
        backend = _joblib_config()[1]
        if plan.lifted:  # for this batch only
            backend.inner_max_num_threads = plan.inner_limit
        try:
            parts = Parallel(n_jobs=plan.workers)(
                delayed(_apply)(ref, chunk, plan.inner_limit, starred)
                for chunk in _chunks(items, plan.tasks))
        finally:
            if plan.lifted:
                backend.inner_max_num_threads = None
    else:
        parts = Parallel(n_jobs=plan.workers, backend="threading")(
            delayed(_apply)(func, chunk, plan.threads, starred)
            for chunk in _chunks(items, plan.tasks))
    return [r for part in parts for r in part]


def map(func, items, *, n_jobs=None) -> list:  # noqa: A001 - NumPy-style name
    """Apply a dispatch function to each item of a batch, in parallel where
    that pays.

    Chooses, from the calibrated times of the kernel and of joblib on this
    host, between *inner* parallelism (the items one after another, each
    call dispatched as usual, serial or parallel), *outer* parallelism (the
    items in batches over joblib's threading backend, each kernel serial
    with the GIL released) and a *mix* (``k`` workers x ``t`` threads,
    ``k*t`` at most the usable CPUs).  :func:`breakeven.explain` shows the
    choice and the estimates behind it.

    Parameters
    ----------
    func : callable
        A breakeven function (``breakeven.sum``, ``breakeven.exp``, ...) or a
        kernel of yours registered with :func:`breakeven.kernel`.
    items : iterable
        One item per call: arrays (``func(item)``), or tuples of arguments
        (``func(*item)``).  The first item decides which: if it is a tuple,
        every item is taken as a tuple of arguments.
    n_jobs : int, optional
        At most this many outer workers; ``None`` means
        ``joblib.parallel_config``'s ``n_jobs`` if set, else every usable
        CPU; ``-1`` all CPUs, ``-2`` all but one, ...; ``1`` runs the items
        one after another.

    Returns
    -------
    list
        ``[func(*item) for item in items]``, in order.

    Raises
    ------
    TypeError
        If ``func`` is not a dispatch function, ``items`` is not iterable or
        ``n_jobs`` is not an integer.
    ValueError
        If ``n_jobs`` is 0.

    See Also
    --------
    explain : ``explain(breakeven.map, func, items)`` gives the plan.
    joblib.parallel_config : ``backend="loky"`` or ``"dask"`` sends the
        batches to processes or a cluster; ``inner_max_num_threads`` caps
        each call's threads there.

    Notes
    -----
    The plan is estimated from up to 16 evenly spaced items.  A backend set
    with ``joblib.parallel_config`` other than ``"threading"`` is used as
    given: the items go to its workers in batches and each worker dispatches
    with its own host's profile (looked up by fingerprint in the profile
    file, else the embedded default) and the thread limit the backend sets
    (loky and Dask's nanny set ``OMP_NUM_THREADS`` in their workers).

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> xs = [np.arange(4.0), np.ones(3)]
    >>> [float(s) for s in breakeven.map(breakeven.sum, xs)]
    [6.0, 3.0]
    >>> breakeven.map(breakeven.dot, [(np.ones(2), np.ones(2))])
    [np.float64(2.0)]
    """
    try:
        items = items if type(items) is list else list(items)
    except TypeError:
        raise TypeError(f"items must be an iterable of arrays or argument tuples, "
                        f"got {type(items).__name__}") from None
    plan = _plan(func, items, n_jobs)
    return _run(plan, func, items)


def _explain_map(func, items, *, n_jobs=None) -> Decision:
    return _plan(func, list(items), n_jobs).decision()


map._breakeven_explain = _explain_map
