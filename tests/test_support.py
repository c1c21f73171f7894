"""CPU counting, the timing engine, the registry and the command line."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import breakeven
from breakeven import _cpu
from breakeven._registry import KERNELS, Kernel, get_kernel, register
from breakeven._timing import time_interleaved

# ---------------------------------------------------------------------------
# usable CPUs
# ---------------------------------------------------------------------------


def fake_cgroup(tmp_path, files, proc="0::/\n"):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc)
    return dict(root=tmp_path, proc_cgroup=tmp_path / "proc_cgroup")


@pytest.mark.parametrize("files,proc,expected", [
    ({}, "0::/\n", None),
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
    # the process's own cgroup and an ancestor: the smaller limit wins
    ({"a/cpu.max": "300000 100000\n", "a/b/cpu.max": "50000 100000\n"},
     "0::/a/b\n", 0.5),
    ({"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n"},
     "0::/a/b\n", 1.0),
    # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "", 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "", None),
    # garbage is ignored, not fatal
    ({"cpu.max": "lots of cpus\n"}, "0::/\n", None),
    ({"cpu.max": "abc 100000\n"}, "0::/\n", None),
])
def test_cgroup_cpu_limit(tmp_path, files, proc, expected):
    assert _cpu.cgroup_cpu_limit(**fake_cgroup(tmp_path, files, proc)) == expected


def test_usable_cpus_respects_quota_and_affinity(monkeypatch):
    monkeypatch.setattr(_cpu, "cgroup_cpu_limit", lambda: 1.2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert _cpu.usable_cpus() == 2  # a quota of 1.2 CPUs rounds up
    monkeypatch.setattr(_cpu, "cgroup_cpu_limit", lambda: None)
    assert _cpu.usable_cpus() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert _cpu.usable_cpus() == 1


def test_usable_cpus_matches_affinity_here():
    expected = len(os.sched_getaffinity(0))
    quota = _cpu.cgroup_cpu_limit()
    if quota is not None:
        expected = min(expected, int(np.ceil(quota)))
    assert breakeven.usable_cpus() == expected


# ---------------------------------------------------------------------------
# timing engine, on a fake clock
# ---------------------------------------------------------------------------


class FakeClock:
    """Time advances only when a fake function 'runs'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def work(self, seconds):
        def fn():
            self.now += seconds
        return fn


def test_time_interleaved_measures_per_call_times():
    clock = FakeClock()
    t = time_interleaved({"fast": clock.work(1e-6), "slow": clock.work(3e-6)},
                         repeats=5, min_batch_time=1e-3, clock=clock)
    assert t["fast"].median == pytest.approx(1e-6)
    assert t["slow"].median == pytest.approx(3e-6)
    assert len(t["fast"].samples) == 5


def test_time_interleaved_interleaves_and_rotates():
    order = []
    clock = FakeClock()

    def cand(name):
        def fn():
            order.append(name)
            clock.now += 1.0  # one call is already a long enough batch
        return fn

    time_interleaved({"a": cand("a"), "b": cand("b"), "c": cand("c")},
                     repeats=3, min_batch_time=0.5, clock=clock)
    timed = order[3:]  # after one sizing call each
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_time_interleaved_batches_reach_min_time():
    clock = FakeClock()
    calls = itertools.count()

    def fn():
        next(calls)
        clock.now += 1e-6

    t = time_interleaved({"x": fn}, repeats=2, min_batch_time=1e-3, clock=clock)
    assert t["x"].median == pytest.approx(1e-6)
    assert next(calls) >= 3 * 1000  # sizing + two batches of >= 1000 calls


def test_time_interleaved_rejects_bad_repeats():
    with pytest.raises(ValueError):
        time_interleaved({"x": lambda: None}, repeats=0)


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


def test_builtin_kernels_registered():
    assert set(KERNELS) >= {"sum", "dot", "axpy", "exp", "cumsum", "histogram",
                            "nearest"}
    assert KERNELS["nearest"].uses_blas and not KERNELS["sum"].uses_blas


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_samples_have_the_requested_work(name, dtype):
    k = KERNELS[name]
    args = k.sample(1 << 16, np.dtype(dtype), np.random.default_rng(0))
    assert k.work(*args) == pytest.approx(1 << 16, rel=0.05)
    assert all(a.dtype == dtype for a in args if isinstance(a, np.ndarray)
               and a.dtype.kind == "f")
    k.serial(*args)
    k.parallel(*args, 2)


def test_get_kernel_unknown_names_the_known():
    with pytest.raises(KeyError, match="known kernels: .*sum"):
        get_kernel("nope")


def test_register_refuses_non_kernels():
    with pytest.raises(TypeError):
        register("sum")


def test_register_adds_and_replaces():
    k = KERNELS["sum"]
    mine = Kernel("mysum", k.serial, k.parallel, k.reference, k.work, k.sample)
    try:
        register(mine)
        assert get_kernel("mysum") is mine
    finally:
        KERNELS.pop("mysum", None)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "breakeven", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_calibrate_times_serial_and_parallel():
    r = run_cli("calibrate", "--size", "65536", "--repeats", "2",
                "--kernels", "sum,exp")
    assert r.returncode == 0, r.stderr
    lines = [ln.split() for ln in r.stdout.splitlines()]
    rows = {ln[0]: ln for ln in lines if ln and ln[0] in ("sum", "exp")}
    assert set(rows) == {"sum", "exp"}
    for row in rows.values():
        serial, parallel = float(row[1]), float(row[3])
        assert serial > 0 and parallel > 0


@pytest.mark.parametrize("args,message", [
    (("calibrate", "--kernels", "nope"), "unknown kernel"),
    (("calibrate", "--size", "0"), "--size must be positive"),
    (("frobnicate",), "invalid choice"),
])
def test_cli_errors_are_messages_not_tracebacks(args, message):
    r = run_cli(*args)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
