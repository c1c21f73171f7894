"""The host's core budget: processes of one user on one CPU set share one
count of free cores in shared memory (breakeven/_core/host.py, host.h).

The suite's processes share a budget of their own (tests/conftest.py points
``BREAKEVEN_HOST_BUDGET_DIR`` at a temporary folder); the subprocesses
started here inherit it, and join it at their first call, as workers do.
"""

import contextlib
import copy
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import breakeven
from breakeven import testing
from breakeven._core import engine, host

BIG = 1 << 22


def run(code, env=None, **kw):
    """Run ``code`` in a new Python process; its stdout as JSON."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})}, **kw)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def start(code, env=None):
    """Start ``code`` in a new Python process that prints one line when it
    is ready, and return it once it has."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
    line = p.stdout.readline()
    assert line.strip() == "ready", p.stderr.read()
    return p


@pytest.fixture
def joined():
    """This process in the suite's host budget (as after a first call)."""
    folder = os.environ[host.FOLDER]
    assert breakeven.use_host_budget(True), breakeven.host_budget().reason
    yield breakeven.host_budget()
    breakeven.use_host_budget(False)  # back in the suite's (a test may have
    os.environ[host.FOLDER] = folder  # moved it: monkeypatch restores later)
    assert breakeven.use_host_budget(True)


HOLD = """
    import sys, time, breakeven
    assert breakeven.use_host_budget(True)
    with breakeven.section({n}):
        print("ready", flush=True)
        time.sleep(600)
"""


def test_a_process_joins_at_its_first_call_and_shares_the_file(joined):
    b = run("""
        import json, os, numpy as np, breakeven
        before = breakeven.host_budget().joined
        breakeven.exp(np.ones(1 << 16))
        b = breakeven.host_budget()
        print(json.dumps([before, b.joined, b.path, os.getpid(),
                          [p.pid for p in b.processes]]))
    """)
    before, after, path, pid, pids = b
    assert (before, after) == (False, True)
    assert path == joined.path
    assert pids[0] == pid and os.getpid() in pids
    mode = os.stat(path).st_mode
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.openmp
def test_cores_held_by_another_process_are_not_free_here(joined):
    usable = breakeven.usable_cpus()
    p = start(HOLD.format(n=usable))
    try:
        b = breakeven.host_budget()
        held = {q.pid: q.held for q in b.processes}
        assert held[p.pid] == usable
        assert b.free == 0
        # a parallel call here finds no core: serial
        with breakeven.threads(usable, exact=True):
            assert testing.hammer("exp", BIG, 3) == 1
    finally:
        p.terminate()
        p.wait()
    breakeven.host_budget(sweep=True)  # its cores back (it died holding them)
    with breakeven.threads(usable, exact=True):
        assert testing.hammer("exp", BIG, 3) == min(usable, engine.max_threads())


def test_a_process_killed_holding_cores_gives_them_back_within_a_second(joined):
    usable = breakeven.usable_cpus()
    p = start(HOLD.format(n=usable))
    assert breakeven.host_budget().free == 0
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    t0 = time.monotonic()
    while True:  # a call that wants cores sweeps (at most every SWEEP_SECONDS)
        with breakeven.section(usable):
            got = testing.thread_controls()[2]
        if got == usable or time.monotonic() - t0 > 1.0:
            break
        time.sleep(0.02)
    assert got == usable
    assert time.monotonic() - t0 < 1.0
    b = breakeven.host_budget()
    assert p.pid not in [q.pid for q in b.processes]
    assert b.swept >= usable


def test_a_zombie_holding_cores_counts_as_dead(joined):
    p = start(HOLD.format(n=1))
    os.kill(p.pid, signal.SIGKILL)
    time.sleep(0.2)  # not reaped yet: a zombie
    try:
        assert breakeven.host_budget(sweep=True).free == breakeven.usable_cpus()
    finally:
        p.wait()


def test_a_process_that_exits_releases_its_slot(joined):
    pid = run("""
        import json, os, numpy as np, breakeven
        with breakeven.section(1):
            pass
        print(json.dumps(os.getpid()))
    """)
    b = breakeven.host_budget()
    assert pid not in [q.pid for q in b.processes]
    assert b.free == b.usable


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_takes_a_slot_of_its_own(joined):
    r, w = os.pipe()
    with breakeven.section(1):  # the parent holds a core across the fork
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without atexit
            try:
                state = engine.host_state()
                with breakeven.section(1):
                    held = {row[0]: row[1] for row in engine.host_state()["slots"]}
                after = engine.host_state()["free"]
                msg = json.dumps([state["slot"], os.getpid() in held,
                                  held.get(os.getpid()), held.get(os.getppid()),
                                  state["free"], after])
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                msg = json.dumps(repr(exc))
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        data = json.loads(os.read(r, 4096))
        os.close(r)
        mine = engine.host_state()["slot"]
    usable = breakeven.usable_cpus()
    slot, listed, child_held, parent_held, free_at_fork, free_after = data
    assert slot != mine and listed
    assert child_held == 1 and parent_held == 1  # its own slot, the parent's kept
    assert free_at_fork == usable - 1  # the parent's core stays taken
    assert free_after == usable - 1  # the child's core came back
    assert breakeven.host_budget().free == usable


@pytest.fixture
def public_folder():
    """A folder like /dev/shm: anyone may make files in it, sticky."""
    folder = tempfile.mkdtemp(prefix="breakeven-public-")
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_another_user_has_a_budget_of_its_own(public_folder, joined):
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a process as another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable]
    can = subprocess.run([*as_nobody, "-c", "pass"], capture_output=True, text=True,
                         timeout=60)
    if can.returncode != 0:  # an interpreter under root's home (pyenv's)
        pytest.skip("user nobody cannot run this Python: " + can.stderr[-200:])
    folder = public_folder
    env = {"BREAKEVEN_HOST_BUDGET_DIR": str(folder)}
    ours = start(HOLD.format(n=1), env)
    try:
        path = run("""
            import json, breakeven
            breakeven.use_host_budget(True)
            print(json.dumps(breakeven.host_budget().path))
        """, env)
        code = f"""
            import json, os, breakeven
            try:
                open({path!r}, "rb").read()
                readable = True
            except PermissionError:
                readable = False
            joined = breakeven.use_host_budget(True)
            b = breakeven.host_budget()
            print(json.dumps([os.getuid(), readable, joined, b.reason, b.free,
                              [p.pid for p in b.processes]]))
        """
        out = subprocess.run([*as_nobody, "-c", textwrap.dedent(code)],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
        assert out.returncode == 0, out.stderr
        uid, readable, other_joined, other_reason, other_free, pids = json.loads(
            out.stdout.strip().splitlines()[-1])
    finally:
        ours.terminate()
        ours.wait()
    assert uid == 65534
    assert not readable  # nobody cannot read (or change) root's budget
    assert other_joined, other_reason
    assert "user 65534" in other_reason
    assert other_free == breakeven.usable_cpus()  # root's held core is not its
    assert ours.pid not in pids


def test_a_file_of_another_user_is_refused_with_one_warning(tmp_path, monkeypatch,
                                                            joined):
    if os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    breakeven.use_host_budget(False)
    monkeypatch.setenv(host.FOLDER, str(tmp_path))
    path = host.segment_path()
    path.write_bytes(b"\0" * engine.host_segment_size())
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.warns(host.HostBudgetWarning, match="belongs to user 65534") as w:
        assert breakeven.use_host_budget(True) is False
    assert str(path) in str(w[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only one warning
        assert breakeven.use_host_budget(True) is False
    b = breakeven.host_budget()
    assert not b.joined and "belongs to user 65534" in b.reason
    assert b.free == b.usable  # the process's own budget
    assert float(breakeven.sum(np.ones(BIG))) == BIG


@pytest.mark.parametrize("damage", ["garbage", "short", "other CPUs", "open to all"])
def test_a_corrupt_file_falls_back_to_the_process_budget(tmp_path, monkeypatch,
                                                         joined, damage):
    breakeven.use_host_budget(False)
    monkeypatch.setenv(host.FOLDER, str(tmp_path))
    assert breakeven.use_host_budget(True)  # makes the file in tmp_path
    path = host.segment_path()
    breakeven.use_host_budget(False)
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data[:] = np.random.default_rng(1).integers(0, 256, len(data),
                                                    dtype=np.uint8).tobytes()
    elif damage == "short":
        data = data[:100]
    elif damage == "other CPUs":
        data[16:20] = (999).to_bytes(4, sys.byteorder)  # the usable count
    path.write_bytes(bytes(data))
    os.chmod(path, 0o666 if damage == "open to all" else 0o600)
    with pytest.warns(host.HostBudgetWarning, match=str(path)):
        assert breakeven.use_host_budget(True) is False
    b = breakeven.host_budget()
    assert not b.joined and str(path) in b.reason
    with breakeven.section(2):
        assert 1 <= testing.thread_controls()[2] <= 2
    assert float(breakeven.sum(np.ones(BIG))) == BIG
    assert breakeven.host_budget().free == b.usable


def test_it_can_be_turned_off(joined):
    assert breakeven.use_host_budget(False) is False
    b = breakeven.host_budget()
    assert not b.joined and "use_host_budget(False)" in b.reason
    with breakeven.section(1):  # takes from the process's own budget only
        assert host.host_budget().free == b.usable - 1
    out = run("""
        import json, numpy as np, breakeven
        breakeven.exp(np.ones(1 << 16))
        b = breakeven.host_budget()
        print(json.dumps([b.joined, b.reason]))
    """, {"BREAKEVEN_HOST_BUDGET": "off"})
    assert out == [False, "turned off by BREAKEVEN_HOST_BUDGET=off"]
    with pytest.raises(TypeError, match="True or False"):
        breakeven.use_host_budget("yes")


def test_another_cpu_set_joins_another_budget(joined):
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs in the affinity mask")
    cpu = min(os.sched_getaffinity(0))
    out = run(f"""
        import json, os, breakeven
        os.sched_setaffinity(0, {{{cpu}}})
        from breakeven._core import engine
        engine.set_usable(breakeven.usable_cpus())
        breakeven.use_host_budget(True)
        b = breakeven.host_budget()
        print(json.dumps([b.joined, b.path, b.usable]))
    """)
    assert out[0] and out[1] != joined.path and out[2] == 1


def test_simulated_cpus_keep_a_budget_of_their_own(joined):
    with testing.simulated_cpus(64):
        b = breakeven.host_budget()
        assert not b.joined and b.usable == 64
        assert not breakeven.use_host_budget(True)
        assert "simulated" in breakeven.host_budget().reason
    assert breakeven.host_budget().joined


HAMMER = """
    import json, os, threading, breakeven
    from breakeven import testing
    from breakeven._core import engine
    assert breakeven.use_host_budget(True)
    most = []
    def work():
        with breakeven.threads({want}, exact=True):
            most.append(testing.hammer("exp", 1 << 22, {calls}))
    ts = [threading.Thread(target=work) for _ in range({threads})]
    [t.start() for t in ts]
    [t.join() for t in ts]
    s = breakeven.stats()["exp", "float64"]
    me = [r for r in engine.host_state()["slots"] if r[0] == os.getpid()][0]
    breakeven.use_host_budget(False)  # as at exit: what its team spun on back
    print(json.dumps([max(most), s.parallel, me[1], me[4], engine.budget()[2]]))
"""


@pytest.mark.openmp
def test_four_processes_of_four_threads_share_the_cores_exactly(joined):
    usable = breakeven.usable_cpus()
    want = usable + 2  # more than the CPUs: clamped
    before = breakeven.host_budget()
    code = textwrap.dedent(HAMMER.format(want=want, calls=3000, threads=4))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    rows = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    after = breakeven.host_budget(sweep=True)
    for most, parallel, held, calls, in_flight in rows:
        assert most <= usable
        assert calls >= parallel
        assert held == 0 and in_flight == 0  # everything given back
    # (a process whose team spins on the cores keeps them while it calls)
    assert max(r[0] for r in rows) >= 2
    assert before.peak <= after.peak <= usable  # never more held than CPUs
    assert after.free == usable
    assert sum(q.held for q in after.processes) == 0


def test_the_budget_command_lists_the_processes_and_their_cores(joined):
    usable = breakeven.usable_cpus()
    p = start(HOLD.format(n=usable))
    try:
        out = subprocess.run([sys.executable, "-m", "breakeven", "budget", "--json"],
                             capture_output=True, text=True, timeout=120, check=True)
        text = subprocess.run([sys.executable, "-m", "breakeven", "budget"],
                              capture_output=True, text=True, timeout=120,
                              check=True).stdout
    finally:
        p.terminate()
        p.wait()
    b = json.loads(out.stdout)
    assert b["joined"] and b["path"] == joined.path and b["free"] <= 0
    rows = {q["pid"]: q for q in b["processes"]}
    assert rows[p.pid]["held"] == usable and rows[p.pid]["alive"]
    assert os.getpid() in rows  # this process, joined by the fixture
    assert "host budget: on" in text and str(p.pid) in text


def test_info_says_which_budget_and_why():
    out = subprocess.run([sys.executable, "-m", "breakeven", "info", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["host"]["core budget"].startswith("the host's")
    out = subprocess.run([sys.executable, "-m", "breakeven", "info", "--json"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "BREAKEVEN_HOST_BUDGET": "0"})
    said = json.loads(out.stdout)["host"]["core budget"]
    assert said.startswith("this process's own") and "BREAKEVEN_HOST_BUDGET=0" in said


@pytest.fixture
def slow_team():
    """A profile whose OpenMP team spins for a minute after a call (so that
    what is lent stays lent while a test looks)."""
    slow = copy.copy(testing.profile())
    slow.sleep_after_us = 60e6
    testing.reset(slow)
    yield
    testing.reset()


@pytest.mark.openmp
def test_a_parallel_call_s_cores_stay_with_its_idle_team(joined, slow_team):
    """After a parallel call, its cores are lent to the process's team (which
    spins on them) until it sleeps: the process's next call takes them, a
    neighbour does not (it runs serially)."""
    usable = breakeven.usable_cpus()
    with breakeven.threads(usable, exact=True):
        assert testing.hammer("exp", BIG, 1) == usable
    me = {q.pid: q for q in breakeven.host_budget().processes}[os.getpid()]
    assert me.lent == usable and breakeven.host_budget().free == 0
    assert testing.budget().free == usable  # for this process: its own team's
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json, sys, breakeven
        from breakeven import testing
        assert breakeven.use_host_budget(True)
        print("ready", flush=True)
        sys.stdin.readline()
        with breakeven.threads({usable}, exact=True):
            most = testing.hammer("exp", {BIG}, 1)
        print(json.dumps(most), flush=True)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with breakeven.threads(usable, exact=True):  # lent again, just now
            assert testing.hammer("exp", BIG, 1) == usable
        child.stdin.write("go\n")
        child.stdin.flush()
        got = json.loads(child.stdout.readline())
    finally:
        child.communicate(timeout=60)
    assert got == 1  # within our team's sleep time: not its cores
    with breakeven.threads(usable, exact=True):
        assert testing.hammer("exp", BIG, 1) == usable  # ours, at once
    testing.reset()  # leaves the budget (what it lent back) and joins again
    assert breakeven.host_budget().free == usable


def test_calibration_measures_on_the_process_s_own_budget(joined):
    """A forced count measured while another process held cores of the
    host's budget would run serially and pass for a parallel time:
    calibration leaves the host's budget while it measures, and joins again
    after."""
    from breakeven._calibrate import calibrate
    from breakeven._calibrate.team import TeamCosts
    from breakeven._profile.steps import Point

    seen = []

    def measure(kernel, dtype, work, threads, settings):
        seen.append((breakeven.host_budget().joined, testing.budget().free))
        return Point(work, {t: work * 1e-9 / t + 1e-6 * (t > 1) for t in threads})

    usable = breakeven.usable_cpus()
    p = start(HOLD.format(n=usable))  # every core of the host's budget held
    try:
        calibrate(["sum"], progress=False, dtypes=("float64",), budget=0.5,
                  measure=measure, team=lambda threads: TeamCosts({}, 20000.0),
                  batch=lambda usable: {"start_s": 1e-3, "task_s": 2e-5})
        assert breakeven.host_budget().joined  # again
    finally:
        p.terminate()
        p.wait()
    assert seen and all(not j and free == usable for j, free in seen)


@pytest.mark.openmp
def test_explain_says_whose_budget_the_cores_come_from(joined):
    x = np.ones(BIG)
    with breakeven.threads(2, exact=True):
        assert "CPUs free in the host's budget" in breakeven.explain(breakeven.sum,
                                                                     x).reason
        breakeven.use_host_budget(False)
        reason = breakeven.explain(breakeven.sum, x).reason
    assert "CPUs free" in reason and "host" not in reason


# ---------------------------------------------------------------------------
# waiting for cores another process holds
# ---------------------------------------------------------------------------

# sum's measured time on 2 threads, in seconds per element (a synthetic
# rate, the profile's): a call of 2^20 elements is expected to take 100 ms
# in parallel and twice that serially, so it waits up to
# 100 * (2 * EFFICIENCY - 1) ms for cores rather than run serially.
RATE = 0.1 / 2**20

HOLD_CALL = """
    import sys, breakeven
    assert breakeven.use_host_budget(True)
    with breakeven.grant("sum", {work}) as g:
        assert g.threads == 2, g.threads
        print("ready", flush=True)
        sys.stdin.readline()  # until the test says
"""


def _waiting_profile():
    from breakeven._profile import Profile, host_fingerprint

    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "waiting profile")
    times = [(w, t, RATE * w * (2 if t == 1 else 1))
             for w in (2**12, 2**16, 2**20, 2**24) for t in (1, 2)]
    p.set_table("sum", "float64", ((0, 1), (1000, 2)), ((0, 1), (1000, 2)), times)
    return p


@pytest.mark.openmp
@pytest.mark.skipif(breakeven.usable_cpus() < 2, reason="Requires at least 2 CPUs")
@pytest.mark.parametrize("held_work, waits", [(2**16, True), (2**24, False)])
def test_a_call_waits_for_cores_another_process_holds_when_waiting_pays(
        joined, tmp_path, held_work, waits):
    """Another process holds every core in a call expected to end soon (6 ms,
    against the 100 ms this call takes in parallel): this call waits for
    them and runs in parallel, and explain says so beforehand.  Held by a
    call expected to take 1.6 s: it runs serially at once."""
    profile = _waiting_profile()
    path = profile.save(tmp_path / "profile.toml")
    testing.reset(profile)
    assert breakeven.use_host_budget(True)
    x = np.ones(2**20)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_CALL.format(work=held_work))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "BREAKEVEN_PROFILE": str(path)})
    assert holder.stdout.readline().strip() == "ready", holder.stderr.read()

    def end_holder():
        with contextlib.suppress(OSError, ValueError):  # (already gone)
            holder.stdin.write("\n")
            holder.stdin.flush()

    timer = threading.Timer(0.02, end_holder)

    try:
        d = breakeven.explain(breakeven.sum, x)
        assert ("would wait for the call in flight" in d.reason) == waits, d.reason
        assert d.variant == ("parallel" if waits else "serial"), d.reason
        timer.start()  # the holder's call ends in 20 ms
        assert breakeven.sum(x) == 2**20
        st = breakeven.stats()["sum", "float64"]  # (reset() cleared them)
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
        holder.kill()
        holder.wait()
    assert st.waits == (1 if waits else 0)
    assert (st.parallel, st.serial) == ((1, 0) if waits else (0, 1))
    if waits:  # it waited for the holder, not for its whole allowance
        assert 0.005 < st.wait_seconds < 0.08
