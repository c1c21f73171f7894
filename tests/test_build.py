"""The build really is parallel, and the kernels really release the GIL."""

import importlib
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import breakeven
from breakeven import _threads
from breakeven._registry import KERNELS

SRC = Path(__file__).resolve().parents[1] / "src" / "breakeven"
PRANGE_SOURCES = sorted(
    p for p in SRC.glob("*.pyx")
    if re.search(r"cython\.parallel|\bprange\(", p.read_text())
)


def test_sources_found():
    assert len(PRANGE_SOURCES) >= 6, PRANGE_SOURCES


@pytest.mark.parametrize("pyx", PRANGE_SOURCES, ids=lambda p: p.name)
def test_every_prange_module_is_linked_with_openmp(pyx):
    """Without OpenMP, Cython compiles prange into a serial loop and the
    module references no GOMP_* (libgomp) or __kmpc_* (LLVM/Intel) entry
    point at all: a silent serial build."""
    module = importlib.import_module(f"breakeven.{pyx.stem}")
    binary = Path(module.__file__).read_bytes()
    assert re.search(rb"GOMP_parallel|__kmpc_fork_call", binary), (
        f"{module.__file__} was built without OpenMP")


def test_meson_requires_openmp():
    meson = (SRC.parents[1] / "meson.build").read_text()
    assert re.search(r"dependency\(\s*'openmp'\s*,\s*required\s*:\s*true\s*\)", meson)


@pytest.mark.skipif(breakeven.usable_cpus() < 2, reason="Requires at least 2 CPUs")
def test_team_has_more_than_one_thread():
    assert _threads.team_size(2) == 2
    n = breakeven.usable_cpus()
    assert _threads.team_size(n) == n


def test_team_size_rejects_non_positive():
    with pytest.raises(ValueError):
        _threads.team_size(0)


@pytest.mark.skipif(breakeven.usable_cpus() < 2, reason="Requires at least 2 CPUs")
def test_parallel_kernel_uses_several_threads():
    """CPU time above wall time during a parallel call: more than one thread
    was busy (a team that exists but idles would not show it)."""
    k = KERNELS["exp"]
    x, out = k.sample(1 << 23, np.float64, np.random.default_rng(0))
    k.parallel(x, out, 2)  # warm up: team created, pages touched
    best = 0.0
    for _ in range(5):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(5):
            k.parallel(x, out, 2)
        best = max(best, (time.process_time() - c0) / (time.perf_counter() - w0))
    assert best > 1.3


@pytest.fixture
def short_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("variant", ["serial", "parallel"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_releases_the_gil(name, variant, short_switch_interval):
    """The main thread keeps running Python while another thread is inside a
    long kernel call.  Were the GIL held, the main thread would stall for the
    whole call: its longest gap between two loop iterations would be the
    call's duration.  Released, the gaps stay near the switch interval."""
    k = KERNELS[name]
    fn = k.serial if variant == "serial" else (lambda *a: k.parallel(*a, 2))
    # A call long enough that the scheduler's time slices (a few ms, when the
    # kernel's threads occupy every CPU) stay well below half of it.
    work, top = 1 << 24, (1 << 28 if name == "nearest" else 1 << 26)
    while True:
        args = k.sample(work, np.float64, np.random.default_rng(0))
        fn(*args)  # warm-up
        t0 = time.perf_counter()
        fn(*args)
        if time.perf_counter() - t0 > 0.02 or work >= top:
            break
        work *= 4
    timing = {}

    def call():
        t0 = time.perf_counter()
        fn(*args)
        timing["elapsed"] = time.perf_counter() - t0

    worker = threading.Thread(target=call)
    last = time.perf_counter()
    max_gap = 0.0
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        max_gap = max(max_gap, now - last)
        last = now
    worker.join()
    assert timing["elapsed"] > 0.01, "kernel call too short to tell"
    assert max_gap < 0.5 * timing["elapsed"], (max_gap, timing)
