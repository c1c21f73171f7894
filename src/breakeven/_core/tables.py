"""The profile in the core: which tables each kernel's calls are decided by.

The profile is loaded at the first dispatched call (or set with
:func:`use_profile`); each registered kernel then gets, per dtype, this
host's calibrated tables, its library's default for a similar host, or the
estimate (:class:`TableOrigin` says which), and the host's team costs.  What
the estimate learnt can be kept (:func:`save_learned`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import warnings
from dataclasses import dataclass

from breakeven._core import engine, host
from breakeven._core.openmp import region_seconds
from breakeven._cpu import at_count, thread_candidates
from breakeven._cpu import topology as host_topology
from breakeven._interop.blas import thread_setters
from breakeven._kernels import registry
from breakeven._profile import (
    EMBEDDED_DEFAULT,
    Profile,
    ProfileError,
    ProfileWarning,
    host_fingerprint,
    load_profile,
    now_utc,
    read_defaults,
)

__all__ = ["TableOrigin", "learned_profile", "origin", "profile", "profile_words",
           "save_learned", "use_profile"]

_lock = threading.RLock()
_profile: Profile | None = None


def profile() -> Profile:
    """The profile dispatch uses (loaded, and given to the core, on first
    use)."""
    p = _profile
    if p is None or not engine.configured():
        with _lock:
            if _profile is None:
                _use(load_profile())
            elif not engine.configured():
                _use(_profile)
            p = _profile
    return p


def profile_words(stale: bool = True) -> str:
    """The profile in use, in a few words: its file and when it was
    calibrated, or that this host has none.  ``stale=False`` leaves out what
    changed since (which looks the BLAS libraries up through threadpoolctl:
    not from inside threadpoolctl)."""
    p = profile()
    if p.source.startswith("embedded default"):
        return (f"{p.source} (this host is not calibrated: run "
                "`breakeven calibrate`)")
    changed = p.stale if stale else []
    tail = f"; stale: {', '.join(changed)}" if changed else ""
    return f"{p.source} (calibrated {p.calibrated_at or 'at an unknown time'}{tail})"


def use_profile(profile: Profile | None) -> None:
    """Make dispatch use ``profile`` from now on.

    Parameters
    ----------
    profile : Profile or None
        A profile (from :func:`breakeven.load_profile` or
        :func:`breakeven.calibrate`); ``None`` forgets the one in use, and
        the next dispatched call loads the profile file again.  Either way
        what dispatch learnt while running (contention back-offs, observed
        rates) is forgotten.

    See Also
    --------
    load_profile, calibrate

    Examples
    --------
    >>> import breakeven
    >>> breakeven.use_profile(breakeven.load_profile("/nonexistent/profile.toml"))
    >>> breakeven.explain(breakeven.sum, [1.0]).kernel
    'sum'
    >>> breakeven.use_profile(None)  # back to the profile file
    """
    if profile is not None and not isinstance(profile, Profile):
        raise TypeError(f"use_profile() takes a Profile or None, got "
                        f"{type(profile).__name__}")
    with _lock:
        global _profile
        engine.unconfigure()
        _profile = None
        _defaults_cache.clear()
        if profile is not None:
            _use(profile)


@dataclass(frozen=True)
class TableOrigin:
    """Where the tables of a kernel's calls on a dtype come from:
    ``"calibrated"`` on this host, ``"default"`` (its library's tables for a
    similar host: breakeven's embedded default for the built-ins), or
    ``"estimate"`` (none: the model, refined from the calls); ``profile``
    holds the tables (None for the estimate)."""

    kind: str
    profile: Profile | None = None

    def words(self) -> str:
        if self.profile is None:
            return "no table: estimated from its calls"
        return f"profile {self.profile.source}"


_defaults_cache: dict[str, Profile | None] = {}


def _default_file(path, owner: str) -> Profile | None:
    """A default profile file's entry for this host, or a similar one
    (cached until the profile in use changes); a file that cannot be used is
    warned about, naming it, and gives None."""
    key = str(path)
    if key not in _defaults_cache:
        name = ("embedded default" if path == EMBEDDED_DEFAULT
                else f"default {key}")
        try:
            _defaults_cache[key] = read_defaults(path, name=name)
        except (OSError, ProfileError) as exc:
            warnings.warn(f"breakeven: ignoring the default profile {key} of "
                          f"{owner}: {exc}", ProfileWarning, stacklevel=2)
            _defaults_cache[key] = None
    return _defaults_cache[key]


def _defaults(kernel: registry.Kernel) -> Profile | None:
    """The kernel's library default for this host, or None."""
    if kernel.defaults is None:
        return None
    return _default_file(kernel.defaults, kernel.name)


def origin(kernel: registry.Kernel, dtype: str,
           p: Profile | None = None) -> TableOrigin:
    """Where dispatch takes a kernel's tables for a dtype from, in order:
    this host's calibration (the profile in use), the kernel's library
    default for a similar host, the estimate."""
    p = p if p is not None else profile()
    if dtype in p.tables.get(kernel.name, {}):
        embedded = p.source.startswith("embedded default")
        return TableOrigin("default" if embedded else "calibrated", p)
    d = _defaults(kernel)
    if d is not None and dtype in d.tables.get(kernel.name, {}):
        return TableOrigin("default", d)
    return TableOrigin("estimate")


_sources: dict[tuple[int, int], TableOrigin] = {}


def origin_of(slot: int, d: int) -> TableOrigin | None:
    """Where the tables of this slot and dtype index came from (None: the
    kernel has not been given tables yet)."""
    return _sources.get((slot, d))


def _use(p: Profile) -> None:
    """Give every registered kernel its tables from ``p`` (lock held)."""
    global _profile
    _profile = p
    _sources.clear()
    _team(p)
    for k in list(registry.KERNELS.values()):
        _give_tables(p, k)
    engine.configure((_host_figures(p).sleep_after_us or 0) / 1e6)


def _host_figures(p: Profile) -> Profile:
    """The profile whose host figures apply (sleep time, wake-up costs):
    ``p``'s, or the embedded default's when ``p`` has none."""
    if p.sleep_after_us is not None or p.wake:
        return p
    return _default_file(EMBEDDED_DEFAULT, "breakeven") or p


def _give_tables(p: Profile, kernel: registry.Kernel) -> None:
    dtypes = {dt.name for dt in kernel.dtypes}
    for d, name in enumerate(engine.DTYPES):
        src = origin(kernel, name, p)
        _sources[(kernel.slot, d)] = src
        if src.profile is None:
            if name in dtypes:
                engine.set_estimate(kernel.slot, d)
            else:
                engine.clear_table(kernel.slot, d)
            continue
        q = src.profile
        engine.set_table(kernel.slot, d, q.steps(kernel.name, name, "hot"),
                        q.cold_tables(kernel.name, name))
        # The calibration's times are the uncontended yardstick: without
        # them the first calls seen would set it, contended or not.
        # Count by count, so that each count's sizes seed one table.
        rows = q.times(kernel.name, name, parallel_only=True)
        for work, threads, seconds in sorted(rows, key=lambda r: (r[1], r[0])):
            engine.seed_rate(kernel.slot, d, threads, work, seconds / max(work, 1))


_team_known: list = []  # [profile, threads] whose costs the core has


@functools.lru_cache(maxsize=4)
def _counts(full: int) -> list[int]:
    """The thread counts the estimate chooses among on ``full`` threads:
    the calibration's candidates (with this host's topology if it has that
    many CPUs: a simulated host's count has none)."""
    t = host_topology()
    return [c for c in thread_candidates(full, t if t.cpus == full else None)
            if c > 1]


def _team(p: Profile) -> None:
    """The host's team costs in the core, for the estimate and the online
    check of lone calls: a hot region's start from the profile, or measured
    now (well under a millisecond, once per process and profile); the
    wake-up costs from the profile's host figures."""
    full = min(engine.usable(), engine.max_threads())
    if _team_known and _team_known[0] is p and _team_known[1] == full:
        return
    known = dict(p.team_hot)
    if full > 1 and full not in known:
        known[full] = region_seconds(full)
    counts = [(t, at_count(t, known)) for t in _counts(full)]
    host = _host_figures(p)
    most = max((t for _, t, _ in host.wake), default=0)
    wake = [(gap / 1e6, seconds) for gap, t, seconds in host.wake if t == most]
    engine.set_team(known.get(full, 0.0), wake, counts)
    _team_known[:] = [p, full]


def _registered(kernel: registry.Kernel) -> None:
    """A kernel registered after the profile was loaded: its tables now."""
    with _lock:
        if _profile is not None and engine.configured():
            _give_tables(_profile, kernel)


def _load() -> None:
    """The core's hook, called (with the GIL) by the first dispatched call:
    the profile, and the host's core budget joined."""
    profile()
    host.join()


registry._listeners.append(_registered)
engine.set_hooks(load=_load, blas=thread_setters)


# ---------------------------------------------------------------------------
# what the estimate learnt, kept
# ---------------------------------------------------------------------------


def learned_profile() -> Profile:
    """What this process's calls taught the estimate, as a profile of this
    host: for each kernel and dtype without a table that measured both
    choices at some sizes, a hot table parallel from the smallest size from
    which every size measured went parallel (serial if none did), marked
    ``method = "learned"``; lone calls serial."""
    out = Profile(host_fingerprint(), {}, now_utc(), None, "learned")
    full = min(engine.usable(), engine.max_threads())
    for (slot, d), src in list(_sources.items()):
        if src.kind != "estimate":
            continue
        decided = [(b, learned) for b, _, _, learned, _, _
                   in engine.estimate_state(slot, d) if learned]
        if not decided:
            continue
        start = None
        for b, learned in reversed(decided):
            if learned != 2:
                break
            start = b
        hot = ((0, 1),) if start is None or full < 2 else \
            ((0, 1), (1 << max(start - 1, 0), full))
        out.set_table(engine.slot_name(slot), engine.DTYPES[d], hot, ((0, 1),),
                      method="learned")
    return out


def save_learned(path=None) -> Profile:
    """Write what the estimate learnt into the profile file.

    For each kernel and dtype without a table whose calls measured both
    choices at some sizes: a table parallel from the smallest size from
    which every size measured went parallel, marked ``method =
    "learned"``.  Written under the file's lock; an entry of a calibration
    is never replaced.  ``BREAKEVEN_SAVE_LEARNED=1`` in the environment
    does this at the process's exit.

    Parameters
    ----------
    path : path-like, optional
        The profile file (default: :func:`breakeven.load_profile`'s).

    Returns
    -------
    Profile
        What was written; its ``kept`` lists the entries the file kept
        instead (calibrated ones).

    See Also
    --------
    stats : ``source == "learned"`` marks the kernels concerned.
    calibrate : Measure a kernel properly.

    Examples
    --------
    >>> import breakeven
    >>> p = breakeven.save_learned("/tmp/learned-example.toml")
    >>> all(p.method(k, d) == "learned" for k in p.tables for d in p.tables[k])
    True
    """
    p = learned_profile()
    if p.tables:
        p.save(path)
    return p


def _save_learned_at_exit() -> None:
    with contextlib.suppress(Exception):  # never fail a process at exit
        save_learned()


# Opt-in: BREAKEVEN_SAVE_LEARNED=1 writes the learned tables back at exit.
if os.environ.get("BREAKEVEN_SAVE_LEARNED", "") not in ("", "0"):
    atexit.register(_save_learned_at_exit)
