"""Calibration on simulated many-core hosts (breakeven.testing's cost model),
in simulated time: seconds of wall time for hosts of 8 to 192 cores."""

import math

import pytest

from breakeven import testing
from breakeven._calibrate import (
    Settings,
    TeamCosts,
    team_counts,
    team_interpolated,
    thread_candidates,
    worth_timing,
)
from breakeven._cpu import Topology, topology
from breakeven._profile.steps import Point

HOSTS = list(testing.HOSTS.values())
BIG = testing.HOSTS["server-192"]
CLASSES = ("sum", "exp", "nearest")  # memory-bound, compute-bound, BLAS-calling


# --- the model ---------------------------------------------------------------

@pytest.mark.parametrize("host", HOSTS, ids=lambda h: h.name)
def test_a_call_takes_longer_with_more_work(host):
    for name, model in testing.KERNEL_MODELS.items():
        for t in (1, 2, host.cores, host.cpus):
            times = [host.time(model, 2 ** e, t) for e in range(8, 27)]
            assert times == sorted(times), (name, t)


def test_fork_and_join_grow_with_the_team_and_with_each_node():
    h = BIG
    costs = [h.fork_join(t) for t in (2, 8, 64, 96, 97, 192, 384)]
    assert costs == sorted(costs)
    # the 97th thread is on the second node: a jump beyond the trend
    assert h.fork_join(97) - h.fork_join(96) > 10 * (h.fork_join(96) - h.fork_join(95))
    assert h.fork_join(1) == 0.0


def test_a_memory_bound_kernel_stops_scaling_at_the_data_s_node():
    """Data far beyond every cache: memory-bound kernels gain nothing past
    the bandwidth of the one node holding the data; a compute-bound one on
    data the caches hold uses more than the physical cores."""
    w = 1 << 29
    sum_best, _ = BIG.best(testing.KERNEL_MODELS["sum"], w)
    exp_best, _ = BIG.best(testing.KERNEL_MODELS["exp"], 1 << 24)
    assert sum_best < BIG.cores_per_node
    assert exp_best > BIG.cores  # both nodes, and SMT siblings too
    # no thread count beats one node's memory bandwidth
    m = testing.KERNEL_MODELS["sum"]
    floor = w * m.bytes / (BIG.node_gbs * 1e9)
    assert min(BIG.time(m, w, t) for t in range(1, BIG.cpus + 1)) >= floor


def test_waking_a_team_costs_only_after_it_slept():
    h = BIG
    assert h.wake(64, idle=h.sleep_after_ms / 2e3) == 0.0
    assert 0 < h.wake(8, idle=1e-3) < h.wake(64, idle=1e-3) < h.wake(64, idle=1.0)
    m = testing.KERNEL_MODELS["exp"]
    assert h.time(m, 1 << 16, 64, idle=1.0) > h.time(m, 1 << 16, 64)


def test_another_process_on_half_the_cpus_slows_calls_that_need_them():
    h, m = BIG, testing.KERNEL_MODELS["exp"]
    half = h.cpus // 2
    assert h.time(m, 1 << 24, half, taken=half) == h.time(m, 1 << 24, half)
    assert h.time(m, 1 << 24, h.cpus, taken=half) > 1.5 * h.time(m, 1 << 24, h.cpus)


# --- what calibration times on such hosts ------------------------------------

def test_candidates_include_the_cores_and_one_node():
    t = BIG.topology()
    assert t == Topology(384, 192, 192, 96)
    c = thread_candidates(t.cpus, t)
    assert {1, 2, 4, 64, 96, 128, 192, 256, 384} <= set(c)
    assert c == sorted(set(c))
    assert thread_candidates(2, Topology(2, 1, 2, 1)) == [1, 2]
    assert thread_candidates(1, Topology(1, 1, 1, 1)) == [1]


def test_topology_reads_cores_and_nodes_from_sysfs(tmp_path, monkeypatch):
    """A fake sysfs of 2 nodes, 2 cores each, 2 hardware threads per core:
    CPUs 0-3 on node 0 (cores 0 and 1, each with a sibling), 4-7 on node 1."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr("breakeven._cpu.cgroup_cpu_limit", lambda: None)
    for cpu in range(8):
        top = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
        top.mkdir(parents=True)
        (top / "physical_package_id").write_text(str(cpu // 4))
        (top / "core_id").write_text(str(cpu % 2))
    for node, cpus in ((0, "0-3"), (1, "4-7")):
        d = tmp_path / "node" / f"node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
    assert topology(tmp_path) == Topology(8, 4, 4, 2)
    # an affinity mask of node 1's first core only (CPU 4 and its sibling 6)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {4, 6})
    assert topology(tmp_path) == Topology(2, 1, 2, 1)
    # no sysfs at all: every CPU a core of one node
    assert topology(tmp_path / "missing") == Topology(2, 2, 2, 2)


def test_the_team_is_measured_at_a_few_counts_and_interpolated():
    threads = [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384]
    counts = team_counts(threads)
    assert counts[0] == 2 and counts[-1] == 384 and len(counts) <= 4
    assert team_counts([1, 2]) == [2]
    penalty = {t: 1e-6 * t for t in counts}
    rows = tuple((gap, t, g * 1e-7 * t) for g, gap in enumerate((300.0, 1000.0))
                 for t in counts)
    hot = {t: 1e-7 * t for t in counts}
    full = team_interpolated(threads, TeamCosts(penalty, 300.0, rows, hot))
    for t in threads[1:]:  # linear data: interpolated exactly
        assert full.penalty[t] == pytest.approx(1e-6 * t)
        assert full.hot[t] == pytest.approx(1e-7 * t)
    by = {(g, t): s for g, t, s in full.wake}
    assert by[(1000.0, 64)] == pytest.approx(1e-7 * 64)
    assert full.sleep_after_us == 300.0


def test_only_candidates_that_can_win_are_timed():
    threads = [1, 2, 4, 8, 16, 32, 64]
    hot = {t: 1e-6 * t for t in threads if t > 1}
    # first size: everything
    assert worth_timing(threads, hot, [], 256) == threads
    # serial 1 us at 256: a region of 8 or more threads alone is > 2x serial
    # at 512, and the best was serial: one below to two above it, and the most
    p = Point(256, {1: 1e-6, 2: 3e-6, 4: 5e-6, 8: 9e-6, 16: 17e-6, 32: 33e-6,
                    64: 65e-6})
    got = worth_timing(threads, hot, [p], 512)
    assert 1 in got and 2 in got and 64 not in got and 16 not in got
    # large size, 16 best by far: serial and 2 left out, 64 kept
    q = Point(1 << 22, {1: 8e-3, 2: 4e-3, 4: 2e-3, 8: 1.1e-3, 16: 0.5e-3,
                        32: 0.6e-3, 64: 0.9e-3})
    got = worth_timing(threads, hot, [p, q], 1 << 23)
    assert 1 not in got and 2 not in got and {8, 16, 32, 64} <= set(got)


# --- calibration on each preset ----------------------------------------------

@pytest.fixture(scope="module")
def calibrated():
    """A default calibration of every built-in on each preset (seed 0)."""
    return {h.name: testing.Simulation(h, seed=0).calibrate() for h in HOSTS}


@pytest.mark.parametrize("host", HOSTS, ids=lambda h: h.name)
def test_a_default_calibration_keeps_to_its_budget(host, calibrated):
    p = calibrated[host.name]
    assert p.elapsed <= Settings().budget
    assert set(p.tables) == set(testing.KERNEL_MODELS)


@pytest.mark.parametrize("host", HOSTS, ids=lambda h: h.name)
def test_calibrated_tables_are_within_5_percent_of_the_best(host, calibrated):
    """Integrated over work 2^8..2^26, for every kernel and dtype; the fixed
    rules (every CPU, PyTorch's grain) lose far more on the same model."""
    p = calibrated[host.name]
    for name, model in testing.KERNEL_MODELS.items():
        for dtype in ("float64", "float32"):
            steps = p.steps(name, dtype, "hot")
            rule = testing.table_rule(steps)
            integrated, _ = testing.regret(host, model, rule, dtype)
            assert integrated <= 0.05, (name, dtype, steps)
    rules = testing.fixed_rules(host)
    for name in CLASSES:
        model = testing.KERNEL_MODELS[name]
        assert testing.regret(host, model, rules["all CPUs"])[0] > 0.2


def test_a_small_budget_is_kept_on_the_biggest_host():
    p = testing.Simulation(BIG, seed=1).calibrate(["sum", "exp"], budget=8.0)
    assert p.elapsed <= 8.0
    for name in ("sum", "exp"):
        assert p.steps(name, "float64", "hot")[-1][1] > 1


def test_serial_far_behind_is_extrapolated_not_timed():
    """On a 192-core host, serial is timed only while it can matter: at the
    largest sizes its time comes from the last one measured, scaled."""
    sim = testing.Simulation(BIG, seed=0)
    timed = []
    measure = sim.measure

    def spy(kernel, dtype, work, threads, settings):
        timed.append((work, tuple(threads)))
        return measure(kernel, dtype, work, threads, settings)

    sim.measure = spy
    p = sim.calibrate(["exp"], dtypes=("float64",))
    top = max(w for w, _ in timed)
    assert all(1 not in th for w, th in timed if w == top)
    pts = {q.work: q for q in p.sweeps[("exp", "float64")]}
    model = testing.KERNEL_MODELS["exp"]
    assert pts[top].times[1] == pytest.approx(BIG.time(model, top, 1), rel=0.3)
    assert math.isfinite(pts[top].times[1])
