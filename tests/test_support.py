"""CPU counting, the timing engine, the registry and the command line."""

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import breakeven
from breakeven import _cpu
from breakeven._calibrate.timing import time_interleaved
from breakeven._kernels.registry import BUILTINS, KERNELS, Kernel, get_kernel, register

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
    timed = order[6:]  # after two sizing calls each (the first may be slow)
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


def test_time_interleaved_sizes_batches_past_a_slow_first_call():
    """A first call that pays a one-time cost (loading a profile) must not
    make every batch a single call."""
    clock = FakeClock()
    calls = itertools.count()

    def fn():
        clock.now += 0.05 if next(calls) == 0 else 1e-6

    t = time_interleaved({"x": fn}, repeats=3, min_batch_time=1e-3, clock=clock)
    assert t["x"].median == pytest.approx(1e-6)


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
        got = register(mine)
        assert get_kernel("mysum") is got
        assert got.slot >= len(BUILTINS) and got == dataclasses.replace(mine,
                                                                        slot=got.slot)
        again = register(dataclasses.replace(mine, uses_blas=True))
        assert again.slot == got.slot and get_kernel("mysum").uses_blas
    finally:
        KERNELS.pop("mysum", None)


@pytest.mark.parametrize("name", ["", "1abc", "my lib.relu", "a/b", 3])
def test_register_refuses_bad_names(name):
    k = KERNELS["sum"]
    with pytest.raises(ValueError, match="kernel name"):
        register(Kernel(name, k.serial, k.parallel, k.reference, k.work, k.sample))


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "breakeven", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.openmp
def test_cli_calibrate_show_plot_check(tmp_path):
    path = tmp_path / "p.toml"
    r = run_cli("calibrate", "--quick", "--kernels", "sum,exp", "--dtypes", "float64",
                "--budget", "3", "--output", str(path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "profile written to" in r.stdout and str(path) in r.stdout
    rows = [ln.split() for ln in r.stdout.splitlines()]
    names = {row[0] for row in rows if row and row[0] in ("sum", "exp")}
    assert names == {"sum", "exp"}
    assert path.exists() and Path(str(path) + ".sweeps.json").exists()

    r = run_cli("show", "--profile", str(path))
    assert r.returncode == 0, r.stderr
    assert "calibrated here" in r.stdout and "sum" in r.stdout

    r = run_cli("show", "--json", "--profile", str(path))
    data = json.loads(r.stdout)
    assert data["matches_this_host"] is True
    assert data["kernels"]["sum"]["float64"]["hot"][0] == [0, 1]

    png = tmp_path / "c.png"
    r = run_cli("plot", "--profile", str(path), "-o", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    r = run_cli("check", "--profile", str(path), "--kernels", "exp")
    assert r.returncode in (0, 1), r.stderr
    assert "exp" in r.stdout and "Traceback" not in r.stderr


def test_cli_show_without_profile_uses_the_default(tmp_path):
    r = run_cli("show", "--profile", str(tmp_path / "none.toml"))
    assert r.returncode == 0, r.stderr
    assert "embedded default" in r.stdout


def test_cli_check_flags_a_drifted_threshold(tmp_path):
    """A profile claiming exp pays from 2^7 elements on: at 2^8 parallel
    loses to serial (the team's start alone is longer than the work), far
    above the claim: drifted.  (The drift chosen is the one a noisy host
    cannot hide: noise makes parallel slower, never faster.)"""
    from breakeven._profile import Profile, host_fingerprint

    p = Profile(host_fingerprint())
    p.set_table("exp", "float64", ((0, 1), (1 << 7, 2)), ((0, 1), (1 << 7, 2)))
    path = p.save(tmp_path / "p.toml")
    if breakeven.usable_cpus() < 2:
        pytest.skip("Requires at least 2 CPUs")
    r = run_cli("check", "--profile", str(path), "--kernels", "exp")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exp/float64" in r.stdout


@pytest.mark.parametrize("args,message", [
    (("calibrate", "--kernels", "nope"), "unknown kernel"),
    (("calibrate", "--budget", "0"), "--budget must be"),
    (("calibrate", "--dtypes", "int8"), "--dtypes"),
    (("calibrate", "--module", "no_such_module_xyz"), "cannot import module"),
    (("plot", "-o", "x.png", "--profile", "/nonexistent/p.toml"), "no recorded"),
    (("frobnicate",), "invalid choice"),
])
def test_cli_errors_are_messages_not_tracebacks(args, message):
    r = run_cli(*args)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_make_default_is_up_to_date():
    """The embedded default is exactly what the recorded calibrations under
    calibration/ produce: every default number traces to a measurement."""
    script = Path(__file__).resolve().parents[1] / "calibration" / "make_default.py"
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
