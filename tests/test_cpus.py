"""breakeven counts the CPUs a process may use as joblib does.

``breakeven.usable_cpus()`` (dispatch's thread counts, the core budget) and
``joblib.cpu_count()`` (``breakeven.map``'s workers, and every joblib user
in the same program) must agree, or the two would plan for different
machines.  Both are run in child processes under a restricted affinity mask
and under fake cgroup quotas (a private mount namespace in which a made-up
tree hides the real /sys/fs/cgroup).
"""

import os
import shutil
import subprocess
import sys

import pytest

COUNT = ("import breakeven, joblib; "
         "print(breakeven.usable_cpus(), joblib.cpu_count())")


def _env():
    env = dict(os.environ)
    env.pop("LOKY_MAX_CPU_COUNT", None)  # joblib's own override
    return env


def _counts(prefix=(), code=COUNT):
    out = subprocess.run([*prefix, sys.executable, "-c", code], env=_env(),
                         capture_output=True, text=True, check=True)
    ours, joblib = map(int, out.stdout.split())
    return ours, joblib


def test_agree_on_this_process():
    ours, joblib = _counts()
    assert ours == joblib


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                    reason="no affinity masks on this OS")
def test_agree_under_an_affinity_mask():
    first = min(os.sched_getaffinity(0))
    code = f"import os; os.sched_setaffinity(0, {{{first}}}); {COUNT}"
    assert _counts(code=code) == (1, 1)


def _can_fake_cgroups():
    if shutil.which("unshare") is None or not os.path.isdir("/sys/fs/cgroup"):
        return False
    r = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return r.returncode == 0


CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@pytest.mark.skipif(not _can_fake_cgroups(),
                    reason="needs a private mount namespace (unshare, as root)")
@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "50000 100000"}, 1),                      # v2: half a CPU
    ({"cpu.max": "150000 100000"}, min(2, CPUS)),          # v2: 1.5 -> 2
    ({"cpu.max": "max 100000"}, CPUS),                     # v2: no quota
    ({"cpu/cpu.cfs_quota_us": "100000",
      "cpu/cpu.cfs_period_us": "100000"}, 1),              # v1: one CPU
    ({"cpu/cpu.cfs_quota_us": "-1",
      "cpu/cpu.cfs_period_us": "100000"}, CPUS),           # v1: no quota
])
def test_agree_under_a_cgroup_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    script = f"mount --bind {tmp_path} /sys/fs/cgroup && exec \"$@\""
    prefix = ["unshare", "--mount", "sh", "-c", script, "sh"]
    assert _counts(prefix) == (expected, expected)
