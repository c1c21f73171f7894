"""How many CPUs this process may really use: affinity and cgroup quota."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["Topology", "at_count", "cgroup_cpu_limit", "thread_candidates",
           "topology", "usable_cpus"]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike = "/proc/self/cgroup"
                     ) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs, or None if unlimited.

    Reads cgroup v2 ``cpu.max`` ("quota period" or "max period") along the
    process's cgroup path up to the root, and cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.  The smallest limit wins.
    The paths are parameters so that tests can point them at a fake tree.
    """
    root = Path(root)
    limits: list[float] = []
    rel = "/"
    text = _read(Path(proc_cgroup))
    if text:
        for line in text.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[0] == "0":
                rel = parts[2] or "/"
    # cgroup v2: every ancestor's cpu.max limits us.
    here = Path(rel.lstrip("/"))
    for d in [here, *here.parents]:
        content = _read(root / d / "cpu.max")
        if content:
            fields = content.split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    quota, period = float(fields[0]), float(fields[1])
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    # cgroup v1
    q = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(
        root / "cpu,cpuacct" / "cpu.cfs_quota_us")
    p = _read(root / "cpu" / "cpu.cfs_period_us") or _read(
        root / "cpu,cpuacct" / "cpu.cfs_period_us")
    if q and p:
        try:
            quota, period = float(q), float(p)
        except ValueError:
            quota = period = -1.0
        if quota > 0 and period > 0:
            limits.append(quota / period)
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by any cgroup quota.

    The quota is rounded up: a quota of 1.5 CPUs still lets two threads make
    progress.  Dispatch never runs more threads than this, and calibration
    tries thread counts up to it.

    Returns
    -------
    int
        At least 1.

    See Also
    --------
    os.sched_getaffinity : The affinity mask (``taskset``, ``--cpuset-cpus``).
    threads : Cap the threads further for a block of calls.

    Examples
    --------
    >>> import os, breakeven
    >>> 1 <= breakeven.usable_cpus() <= len(os.sched_getaffinity(0))
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows: no affinity call
        # (Python 3.13's process_cpu_count follows affinity where it can)
        n = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


class Topology(NamedTuple):
    """The usable CPUs as calibration sees them: ``cpus`` in all, on
    ``cores`` physical cores, ``node_cpus`` and ``node_cores`` of them in the
    largest NUMA node (all of them on a one-node host)."""

    cpus: int
    cores: int
    node_cpus: int
    node_cores: int


def _cpu_list(text: str | None) -> set[int]:
    """``"0-3,8,10-11"`` as a set of CPU numbers (empty if unreadable)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return set()
    return out


def topology(sysfs: str | os.PathLike = "/sys/devices/system") -> Topology:
    """Physical cores and NUMA nodes among the usable CPUs (Linux sysfs; on
    other systems, or where sysfs says nothing, every CPU counts as a core of
    one node).  The path is a parameter so that tests can use a fake tree."""
    n = usable_cpus()
    try:
        mine = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return Topology(n, n, n, n)
    root = Path(sysfs)
    core_of = {}
    for cpu in mine:
        top = root / "cpu" / f"cpu{cpu}" / "topology"
        pkg, core = _read(top / "physical_package_id"), _read(top / "core_id")
        core_of[cpu] = (pkg, core) if pkg is not None and core is not None else cpu
    nodes = [_cpu_list(_read(d / "cpulist")) & mine
             for d in sorted(root.glob("node/node[0-9]*"))]
    nodes = [s for s in nodes if s] or [mine]
    big = max(nodes, key=len)
    # a cgroup quota below the mask caps every count (threads, not places)
    cores = min(n, len(set(core_of.values())))
    return Topology(n, cores, min(n, len(big)),
                    min(cores, len({core_of[c] for c in big})))


def thread_candidates(usable: int, topology: Topology | None = None) -> list[int]:
    """The thread counts a calibration times (and dispatch's estimate chooses
    among): 1 (serial), 2, 4, 8, ... below
    ``usable``, and ``usable``; with a ``topology``, also the physical cores
    and one NUMA node's CPUs and cores (where memory-bound kernels stop
    scaling, often between two powers of two).

    Examples
    --------
    >>> thread_candidates(8)
    [1, 2, 4, 8]
    >>> thread_candidates(384, Topology(384, 192, 192, 96))
    [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384]
    """
    if usable < 1:
        raise ValueError(f"usable CPUs must be >= 1, got {usable}")
    out, t = {1}, 2
    while t < usable:
        out.add(t)
        t *= 2
    out.add(usable)
    if topology is not None:
        out.update(n for n in topology[1:] if 1 < n < usable)
    return sorted(out)


def at_count(t: int, known: dict[int, float]) -> float:
    """A figure measured at some thread counts (``known``: count -> value),
    at count ``t``: linear in the count between the counts either side,
    flat beyond the ends (a team's start and wake-up grow about linearly
    with the threads to start or wake).

    Examples
    --------
    >>> at_count(6, {4: 1.0, 8: 3.0}), at_count(2, {4: 1.0}), at_count(16, {4: 1.0})
    (2.0, 1.0, 1.0)
    """
    ks = sorted(known)
    if t <= ks[0]:
        return known[ks[0]]
    for lo, hi in zip(ks, ks[1:], strict=False):
        if t <= hi:
            return known[lo] + (known[hi] - known[lo]) * (t - lo) / (hi - lo)
    return known[ks[-1]]
