"""breakeven as threadpoolctl sees it: listed by threadpool_info(), capped
by threadpool_limits(), whichever of the two packages is imported first."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import threadpoolctl
from helpers import ladder_profile

import breakeven as be
from breakeven import testing

BIG = 10**9  # past every step of the ladder


@pytest.fixture(autouse=True)
def eight_cpus():
    with testing.simulated_cpus(8):
        testing.reset(ladder_profile(8))
        yield
    testing.reset()


def _ours():
    found = [p for p in threadpoolctl.threadpool_info()
             if p["user_api"] == "breakeven"]
    assert len(found) == 1, threadpoolctl.threadpool_info()
    return found[0]


def test_threadpool_info_lists_breakeven():
    info = _ours()
    assert info["internal_api"] == "breakeven"
    assert info["version"] == be.__version__
    assert info["num_threads"] == 8  # no limit: the usable CPUs
    assert os.path.samefile(info["filepath"], be._core.engine.__file__)
    assert "ladder profile" in info["profile"]
    assert info["openmp"] == be._core.openmp.OPENMP_RUNTIME


@pytest.mark.parametrize("user_api", [None, "breakeven"])
def test_threadpool_limits_caps_dispatch_and_is_undone(user_api):
    assert be.decide("sum", BIG).threads == 8
    with threadpoolctl.threadpool_limits(3, user_api=user_api):
        assert _ours()["num_threads"] == 3
        d = be.decide("sum", BIG)
        assert d.threads == 3
        assert "threadpoolctl limit 3" in d.reason
    assert _ours()["num_threads"] == 8
    assert be.decide("sum", BIG).threads == 8


def test_limit_on_blas_alone_leaves_breakeven():
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert _ours()["num_threads"] == 8
        assert be.decide("sum", BIG).threads == 8


def test_limit_holds_in_every_thread():
    # OpenMP's own limit (omp_set_num_threads) is per thread; breakeven's is
    # the process's, as threadpool_limits promises.
    seen = []
    with threadpoolctl.threadpool_limits(2, user_api="breakeven"):
        t = threading.Thread(target=lambda: seen.append(be.decide("sum", BIG).threads))
        t.start()
        t.join()
    assert seen == [2]


def test_limited_kernel_still_computes():
    x = np.arange(1_000_000, dtype=np.float64)
    with threadpoolctl.threadpool_limits(1):
        assert be.sum(x) == x.sum()


@pytest.mark.parametrize("first", ["breakeven", "threadpoolctl"])
def test_registered_whichever_is_imported_first(first):
    second = "threadpoolctl" if first == "breakeven" else "breakeven"
    code = (f"import {first}, {second}, numpy\n"
            "import breakeven as be, threadpoolctl as t\n"
            "be.sum(numpy.ones(4))\n"
            "apis = [p['user_api'] for p in t.threadpool_info()]\n"
            "print(apis.count('breakeven'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["1"], out.stderr


def test_show_versions_and_info_report_the_essentials(capsys):
    be.show_versions()
    text = capsys.readouterr().out
    for needle in (be.__version__, be._core.openmp.OPENMP_RUNTIME,
                   f"{be.usable_cpus()} usable", np.__version__, "profile:",
                   "wait policy", "blas:"):
        assert needle in text, needle
    out = subprocess.run([sys.executable, "-m", "breakeven", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"breakeven {be.__version__}"
    out = subprocess.run([sys.executable, "-m", "breakeven", "info", "--json"],
                         capture_output=True, text=True, check=True)
    sections = json.loads(out.stdout)
    assert sections["breakeven"]["version"] == be.__version__
    assert set(sections) >= {"host", "openmp", "blas", "profile", "packages"}
