"""Simulated hosts: what a parallel call costs on a many-core machine.

A cost model, not a measurement: a call of ``w`` elements on ``t`` threads
costs its fixed part, the team's fork and join, and the larger of its
compute time and its memory time (a roofline), where

- threads take one physical core each, filling one last-level cache group
  and one NUMA node after another (``OMP_PROC_BIND=close``), and SMT
  siblings only once every core has a thread, each adding ``smt_gain`` of a
  core to compute and nothing to bandwidth;
- data that fits the last-level caches of the groups in use streams from
  cache at ``cache_gbs`` per core (all of it up to half their size, a
  falling share up to one and a half times it); the rest streams from
  memory at ``core_gbs`` per core (``remote`` of that from another node),
  at most ``node_gbs`` in all: NumPy arrays are first touched by one
  thread, so all their pages sit on one node;
- fork and join cost ``a + b log2 t + c t`` microseconds, ``numa_fork``
  more per further node; a team idle longer than ``sleep_after_ms`` must be
  woken (``w0 + w1 (t - 1)`` microseconds, ``deep_idle_us`` more once the
  CPUs have idled ``deep_idle_ms``);
- measurements carry noise (``noise``, a log-normal factor per batch),
  bursts (a batch slowed by half to three times, with probability
  ``burst``) and interference (another process holding half the CPUs for
  a whole measured size, with probability ``busy``): a thread that shares
  its core runs at half speed, and a call waits for its slowest thread,
  which may first wait out the other process's time slice (``slice_ms``,
  half of it on average: what makes oversubscribed OpenMP calls of a few
  milliseconds or less many times slower).

:class:`Simulation` plugs a host into :func:`breakeven.calibrate` through
its ``measure``, ``team``, ``batch``, ``clock`` and ``topology`` overrides,
in simulated time; the dispatch tests drive the core's test hooks
(:mod:`breakeven.testing`) with :meth:`SimulatedHost.time`.

The presets' figures are orders of magnitude from published measurements,
not from machines measured here: STREAM triad results and the memory
channels of each processor (e.g. AnandTech's EPYC and Xeon reviews, which
report single-thread and full-socket STREAM), and the EPCC OpenMP
micro-benchmarks' ``PARALLEL`` overhead for GCC's libgomp (Bull et al.;
Iwainsky et al., "How Many Threads will be too Many?", Euro-Par 2015),
which grows with the team from about a microsecond to tens of
microseconds at hundreds of threads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import breakeven._calibrate as _calibrate
from breakeven._cpu import Topology
from breakeven._kernels.registry import BUILTINS, KERNELS, KernelModel
from breakeven._profile import host_fingerprint
from breakeven._profile.steps import Point, merge, threads_for

__all__ = ["HOSTS", "KERNEL_MODELS", "KernelModel", "SimulatedHost", "Simulation",
           "CallLog", "ProcessesLog", "TORCH_GRAIN", "fixed_rules", "kernel_models",
           "regret", "run_callers", "run_processes", "table_rule"]


def kernel_models(kernels=None) -> dict[str, KernelModel]:
    """The registered kernels (default: every one) that declare a model, as
    the simulation sees them: each kernel's declaration holds its model
    (orders of magnitude of its serial rates on a current x86 core)."""
    kernels = KERNELS.values() if kernels is None else kernels
    return {k.name: k.model for k in kernels if k.model is not None}


# The built-ins, as the model sees them.
KERNEL_MODELS: dict[str, KernelModel] = kernel_models(BUILTINS.values())


class _Place(NamedTuple):
    cores: int       # threads on a core of their own
    smt: int         # threads on a core's second (third...) hardware thread
    nodes: int       # NUMA nodes in use
    local: int       # cores on the data's node
    groups: int      # last-level cache groups in use


@dataclass(frozen=True)
class SimulatedHost:
    """A machine described by a few figures (module docstring)."""

    name: str
    cores_per_node: int
    nodes: int = 1
    smt: int = 1
    llc_group: int = 8           # cores sharing one last-level cache
    llc_mb: float = 32.0         # that cache
    core_gbs: float = 20.0       # one core streaming from memory
    node_gbs: float = 100.0      # one node's memory, all its cores streaming
    remote: float = 0.6          # another node's core: this share of core_gbs
    cache_gbs: float = 80.0      # one core streaming from its caches
    smt_gain: float = 0.25
    fork_us: tuple[float, float, float] = (0.5, 0.25, 0.08)
    numa_fork: float = 0.5
    wake_us: tuple[float, float] = (3.0, 0.5)
    sleep_after_ms: float = 0.3
    deep_idle_us: float = 100.0
    deep_idle_ms: float = 10.0
    slice_ms: float = 3.0        # the scheduler's time slice, CPUs shared
    noise: float = 0.03
    burst: float = 0.02
    busy: float = 0.03
    source: str = ""

    @property
    def cores(self) -> int:
        return self.cores_per_node * self.nodes

    @property
    def cpus(self) -> int:
        return self.cores * self.smt

    def topology(self) -> Topology:
        return Topology(self.cpus, self.cores, self.cores_per_node * self.smt,
                        self.cores_per_node)

    def _place(self, t: int) -> _Place:
        cores = min(t, self.cores)
        nodes = -(-cores // self.cores_per_node)
        return _Place(cores, t - cores, nodes, min(cores, self.cores_per_node),
                      -(-cores // self.llc_group))

    def fork_join(self, t: int) -> float:
        """Seconds a region of ``t`` threads costs with the team hot."""
        if t < 2:
            return 0.0
        t = min(t, self.cpus)
        a, b, c = self.fork_us
        return (a + b * math.log2(t) + c * t) * 1e-6 * (
            1 + self.numa_fork * (self._place(t).nodes - 1))

    def wake(self, t: int, idle: float) -> float:
        """Extra seconds a region of ``t`` threads pays after ``idle`` seconds
        with no parallel region."""
        if t < 2 or idle * 1e3 < self.sleep_after_ms:
            return 0.0
        w0, w1 = self.wake_us
        deep = self.deep_idle_us if idle * 1e3 >= self.deep_idle_ms else 0.0
        return (w0 + w1 * (min(t, self.cpus) - 1) + deep) * 1e-6

    def time(self, model: KernelModel, work: int, t: int, dtype="float64", *,
             idle: float = 0.0, taken: int = 0) -> float:
        """Seconds one call takes: ``work`` elements on ``t`` threads, after
        ``idle`` seconds with no parallel region, while another process
        keeps ``taken`` CPUs busy."""
        t = max(1, min(int(t), self.cpus))
        ns, nbytes = model.per_element(dtype)
        p = self._place(t)
        passes = model.passes if t > 1 else 1.0
        compute = work * ns * passes * 1e-9 / (p.cores + self.smt_gain * p.smt)
        # the share of the data the caches in use keep between calls: all of
        # it up to half their size, none from one and a half times it
        data = work * nbytes
        cached = min(1.0, max(0.0, 1.5 - data / (self.llc_mb * 1e6 * p.groups)))
        memory = min(self.node_gbs, p.local * self.core_gbs
                     + (p.cores - p.local) * self.core_gbs * self.remote)
        body = max(compute, data * passes * 1e-9 * (
            cached / (p.cores * self.cache_gbs) + (1 - cached) / memory))
        if taken and t + taken > self.cpus:
            # some threads share a core with the other process: half speed,
            # and the call waits for its slowest thread, which may first
            # wait out the other's time slice (half a slice on average)
            body = body * math.ceil((t + taken) / self.cpus) + self.slice_ms / 2e3
        total = model.call_us * 1e-6 + body
        if t > 1:
            total += (self.fork_join(t) + self.wake(t, idle)
                      + (model.per_thread_us * t + model.parallel_us) * 1e-6)
        return total

    def best(self, model: KernelModel, work: int, dtype="float64") -> tuple[int, float]:
        """The fastest thread count for a hot call, and its time."""
        best_t, best_s = 1, self.time(model, work, 1, dtype)
        for t in range(2, self.cpus + 1):
            s = self.time(model, work, t, dtype)
            if s < best_s:
                best_t, best_s = t, s
        return best_t, best_s


def _host(name, cores_per_node, nodes, smt, source, **kw) -> SimulatedHost:
    return SimulatedHost(name, cores_per_node, nodes, smt, source=source, **kw)


HOSTS: dict[str, SimulatedHost] = {h.name: h for h in (
    _host("laptop-8", 8, 1, 2, "8-core laptop chip, dual-channel LPDDR5: "
          "~60 GB/s STREAM, ~25 GB/s one core; one 16 MB L3",
          llc_group=8, llc_mb=16, core_gbs=25, node_gbs=60,
          fork_us=(0.4, 0.2, 0.06), deep_idle_us=200, noise=0.04, burst=0.03),
    _host("desktop-16", 16, 1, 2, "16-core desktop chip (two 8-core dies), "
          "dual-channel DDR5: ~65 GB/s STREAM, ~35 GB/s one core",
          llc_group=8, llc_mb=32, core_gbs=35, node_gbs=65),
    _host("workstation-64", 64, 1, 2, "64-core workstation chip (eight 8-core "
          "dies), 8-channel DDR4-3200: ~150 GB/s STREAM, ~20 GB/s one core",
          llc_group=8, llc_mb=32, core_gbs=20, node_gbs=150),
    _host("server-128", 64, 2, 1, "two 64-core server sockets, SMT off, "
          "8-channel DDR4-3200 each: ~170 GB/s STREAM per socket",
          llc_group=8, llc_mb=32, core_gbs=22, node_gbs=170),
    _host("server-192", 96, 2, 2, "two 96-core server sockets, 12-channel "
          "DDR5-4800 each: ~370 GB/s STREAM per socket, ~30 GB/s one core",
          llc_group=8, llc_mb=32, core_gbs=30, node_gbs=370),
)}


class _Samples(NamedTuple):
    samples: tuple[float, ...]


class Simulation:
    """One host in simulated time, for :func:`breakeven.calibrate`.

    ``clock`` reads the simulated seconds; ``measure``, ``team`` and
    ``batch`` stand for the real measurements and move the clock on by what
    they would take on the host (a batch of calls at least
    ``min_batch_time`` long for every candidate and repeat; the team's
    regions and idle gaps; joblib's runs).  A size measured while another
    process held the CPUs is measured again, up to twice, keeping the faster
    times, as the real probe does.

    Parameters
    ----------
    host : SimulatedHost
    models : dict of str to KernelModel, optional
        By kernel name; default every registered kernel's declared model
        (:func:`kernel_models`).
    seed : int
        Of the noise.
    """

    def __init__(self, host: SimulatedHost,
                 models: dict[str, KernelModel] | None = None, seed: int = 0):
        self.host = host
        self.models = dict(kernel_models() if models is None else models)
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self.points = 0

    def clock(self) -> float:
        return self.now

    def measure(self, kernel, dtype, work: int, threads: Sequence[int],
                settings) -> Point:
        model = self.models[kernel.name]
        point, busy = self._once(model, dtype, int(work), threads, settings)
        for _ in range(_calibrate.RETRIES if busy else 0):
            self.now += _calibrate.WAIT / 2
            again, busy = self._once(model, dtype, int(work), threads, settings)
            point = merge(point, again)
            if not busy:
                break
        return point

    def _once(self, model, dtype, work, threads, settings) -> tuple[Point, bool]:
        host, rng = self.host, self.rng
        self.points += 1
        taken = host.cpus // 2 if rng.random() < host.busy else 0
        samples: dict[int, list[float]] = {t: [] for t in threads}
        for _ in range(settings.repeats):
            for t in threads:
                s = host.time(model, work, t, dtype, taken=taken)
                calls = max(1, math.ceil(settings.min_batch_time / s))
                self.now += calls * s + 2e-6
                s *= math.exp(rng.normal(0.0, host.noise))
                if rng.random() < host.burst:
                    s *= 1.5 + 1.5 * rng.random()
                samples[t].append(s)
        timings = {t: _Samples(tuple(v)) for t, v in samples.items()}
        return _calibrate.paired_point(work, timings, settings.margin), taken > 0

    def team(self, threads: Sequence[int]):
        c = _calibrate
        host = self.host
        penalty, hots, rows = {}, {}, []
        sleep_after = None
        for t in threads:
            if t == 1:
                continue
            hot = hots[t] = host.fork_join(t)
            self.now += (c.TEAM_WARMUP + c.TEAM_HOT) * hot
            for gap in c.TEAM_GAPS_MS:
                extra = host.wake(t, gap / 1e3)
                self.now += c.TEAM_TRIALS * (gap / 1e3 + 2 * hot + extra)
                rows.append((gap * 1e3, t, extra))
                if t == max(threads) and sleep_after is None and extra > c.WAKE_MIN:
                    sleep_after = gap * 1e3
            penalty[t] = host.wake(t, c.TEAM_GAPS_MS[-1] / 1e3)
        wake = tuple(r for r in rows
                     if sleep_after is not None and r[0] >= sleep_after)
        return _calibrate.TeamCosts(penalty, sleep_after, wake, hots)

    def batch(self, usable: int) -> dict[str, float]:
        start, task = 30e-6 + 4e-6 * usable, 8e-6
        self.now += 8 * (2 * start + 64 * task)
        return {"start_s": start, "task_s": task}

    def calibrate(self, kernels: Iterable[str] | None = None, *,
                  dtypes: Iterable[str] = ("float64", "float32"),
                  budget: float | None = None, quick: bool = False):
        """:func:`breakeven.calibrate` on this host; ``profile.elapsed`` is
        in simulated seconds."""
        fp = dataclasses.replace(host_fingerprint(), cpu=f"simulated {self.host.name}",
                                 usable_cpus=self.host.cpus)
        names = list(self.models) if kernels is None else list(kernels)
        return _calibrate.calibrate(names, budget, quick, progress=False, dtypes=dtypes,
                         measure=self.measure, team=self.team, batch=self.batch,
                         usable=self.host.cpus, topology=self.host.topology(),
                         fingerprint=fp, clock=self.clock)


def regret(host: SimulatedHost, model: KernelModel,
           rule: Callable[[int], int], dtype="float64",
           works: Sequence[int] | None = None) -> tuple[float, float]:
    """``(integrated, max)`` regret of a rule (work -> threads) against the
    model's best thread count at each work: the mean and the largest of
    ``time(rule) / time(best) - 1`` over ``works`` (default 2^8..2^26, four
    sizes per octave, each weighted alike)."""
    if works is None:
        works = [int(round(2 ** (e / 4))) for e in range(32, 105)]
    ratios = [host.time(model, w, rule(w), dtype) / host.best(model, w, dtype)[1]
              for w in works]
    return float(np.mean(ratios)) - 1, max(ratios) - 1


def table_rule(steps) -> Callable[[int], int]:
    """A step table as a rule."""
    return lambda w: threads_for(steps, w)


# PyTorch's at::internal::GRAIN_SIZE: parallel_for's elements per thread.
TORCH_GRAIN = 32768


def fixed_rules(host: SimulatedHost) -> dict[str, Callable[[int], int]]:
    """What others do, as rules: every CPU always (scikit-learn's OpenMP
    default, OpenMP's own), every physical core always, and PyTorch's
    ``parallel_for`` (serial below a grain of :data:`TORCH_GRAIN` elements,
    else one thread per grain up to the physical cores)."""
    return {
        "all CPUs": lambda w: host.cpus,
        "all cores": lambda w: host.cores,
        f"grain {TORCH_GRAIN}": lambda w: (1 if w < TORCH_GRAIN else
                                           min(host.cores, -(-w // TORCH_GRAIN))),
    }


class CallLog(NamedTuple):
    """What :func:`run_callers` saw: per call ``(caller, start, end,
    threads)``; ``running``, at each call's start, the threads then running
    (each serial call counted as one, ``external`` included); the most of
    them; and the budget's peak in flight."""

    calls: list[tuple[int, float, float, int]]
    running: list[tuple[float, int]]
    most_running: int
    peak: int


def run_callers(host: SimulatedHost, kernel: str, work: int, callers: int,
                until: float, clock, *, model: KernelModel | None = None,
                dtype="float64", external: Callable[[float], int] = lambda t: 0,
                gap: float = 1e-6) -> CallLog:
    """``callers`` Python threads each calling ``kernel`` on ``work``
    elements back to back (``gap`` seconds apart) until ``until`` seconds of
    simulated time have passed, through dispatch (:func:`breakeven.grant`),
    on ``host`` while another process keeps ``external(t)`` CPUs busy at
    time ``t`` since the start.  A discrete-event simulation on one thread:
    each call lasts what :meth:`SimulatedHost.time` says for the threads it
    was granted, with the other calls then running taken as busy CPUs.
    ``clock`` is a :func:`breakeven.testing.simulated_clock`; use inside
    :func:`breakeven.testing.simulated_cpus` with ``host.cpus``."""
    import heapq

    from breakeven._core import engine
    from breakeven._core.decisions import grant
    model = model or KERNEL_MODELS[kernel]
    start = clock.now
    ready = [(start, c) for c in range(callers)]  # (time, caller)
    running: list = []  # heap of (end, seq, caller, grant, threads, began)
    calls, running_at, seq = [], [], 0
    engine.reset_peak()
    while ready or running:
        first = min(ready) if ready else (math.inf, -1)
        if running and running[0][0] <= first[0]:
            end, _, c, g, t, began = heapq.heappop(running)
            clock.advance(max(0.0, end - clock.now))
            g.end()
            calls.append((c, began - start, end - start, t))
            if end - start < until:
                ready.append((end + gap, c))
            continue
        ready.remove(first)
        now, c = first
        clock.advance(max(0.0, now - clock.now))
        g = grant(kernel, work, dtype)
        t = g.begin()
        busy = external(now - start) + sum(r[4] for r in running)
        running_at.append((now - start, busy + t))
        s = host.time(model, work, t, dtype, taken=busy)
        heapq.heappush(running, (now + s, seq, c, g, t, now))
        seq += 1
    return CallLog(calls, running_at, max((n for _, n in running_at), default=0),
                   engine.budget()[3])


def _joined_slots(cpus: int, processes: int) -> list[int]:
    """A host budget of ``cpus`` in memory, joined, with a slot for each of
    ``processes`` simulated processes (all this process's: no sweep takes
    them for dead ones)."""
    from breakeven._core import engine

    segment = bytearray(engine.host_segment_size())
    engine.host_format(segment, cpus)
    wrong = engine.host_join(segment)
    if wrong is not None:
        raise RuntimeError(wrong)
    return [engine.host_state()["slot"]] + [engine.host_extra_slot()
                                             for _ in range(processes - 1)]


def _others_leave(slots: list[int]) -> tuple[int, int]:
    """Every simulated process but the first leaves: (the most threads of
    parallel calls at once, the cores free once all of them are gone)."""
    from breakeven._core import engine

    for i in slots[1:]:
        engine.host_act_as(i)
        engine.host_release_slot()
    engine.host_act_as(slots[0])
    state = engine.host_state()
    return state["peak"], state["free"] + sum(r[1] + r[2] for r in state["slots"])


class ProcessesLog(NamedTuple):
    """What :func:`run_processes` saw: per call ``(process, start, end,
    threads)``, the calls ended per simulated second, the mean and p90 call
    time, the most threads running at once (serial calls included), and,
    with a shared budget, the most threads of parallel calls at once and
    the cores free at the end (with every process gone)."""

    calls: list[tuple[int, float, float, int]]
    throughput: float
    mean: float
    p90: float
    most_running: int
    peak: int = 0
    free_at_end: int = 0


def run_processes(host: SimulatedHost, kernel: str, work: int, processes: int,
                  duty: float, until: float, clock, *, shared: bool = True,
                  model: KernelModel | None = None, dtype="float64",
                  burst: int = 4) -> ProcessesLog:
    """``processes`` processes on ``host``, each running bursts of ``burst``
    calls of ``kernel`` on ``work`` elements and then idling, so that a
    serial burst would keep it busy ``duty`` of the time, for ``until``
    seconds of simulated time.

    With ``shared``, the processes share one host budget (a segment in
    memory, one slot each, taken and lent by the core's own code; a process
    is simulated by acting as its slot), and each call asks for the host's
    best thread count at that size.  Without, each call is forced to
    ``host.cpus // processes`` threads (a static split).  A discrete-event
    simulation on one thread, as :func:`run_callers`: a call lasts what
    :meth:`SimulatedHost.time` says with the other calls' threads taken as
    busy (the model has no spinning idle teams: lending costs cores here
    and gains nothing).  Use inside :func:`breakeven.testing.simulated_cpus`
    with ``host.cpus``, with a :func:`breakeven.testing.simulated_clock`, and
    a profile whose sleep time is the host's (the lending time)."""
    import heapq

    from breakeven._core import engine
    from breakeven._core.decisions import grant
    model = model or KERNEL_MODELS[kernel]
    want = host.best(model, work, dtype)[0] if shared else max(
        1, host.cpus // processes)
    serial_burst = burst * host.time(model, work, 1, dtype)
    idle = serial_burst * (1 - duty) / duty
    slots = _joined_slots(host.cpus, processes) if shared else []
    start = clock.now
    ready = [(start + i * idle / processes, i, 0) for i in range(processes)]
    running: list = []  # heap of (end, process, grant, threads, began, nth)
    calls, most, peak, free = [], 0, 0, 0
    try:
        while ready or running:
            first = min(ready) if ready else (math.inf, -1, 0)
            if running and running[0][0] <= first[0]:
                end, p, g, t, began, nth = heapq.heappop(running)
                clock.advance(max(0.0, end - clock.now))
                if shared:
                    engine.host_act_as(slots[p])
                g.end()
                calls.append((p, began - start, end - start, t))
                if end - start < until:
                    after = end + (idle if nth + 1 == burst else 1e-6)
                    ready.append((after, p, (nth + 1) % burst))
                continue
            ready.remove(first)
            now, p, nth = first
            clock.advance(max(0.0, now - clock.now))
            if shared:
                engine.host_act_as(slots[p])
            g = grant(kernel, work, dtype)
            with engine.threads(want, exact=True):
                t = g.begin()
            busy = sum(r[3] for r in running)
            most = max(most, busy + t)
            s = host.time(model, work, t, dtype, taken=busy)
            heapq.heappush(running, (now + s, p, g, t, now, nth))
        if shared:
            peak, free = _others_leave(slots)
    finally:
        if shared:
            engine.host_act_as(slots[0])
            engine.host_leave()
    done = [c for c in calls if c[2] <= until]
    times = np.array([c[2] - c[1] for c in done]) if done else np.zeros(1)
    return ProcessesLog(calls, len(done) / until, float(times.mean()),
                        float(np.percentile(times, 90)), most, peak, free)
