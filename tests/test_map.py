"""breakeven.map: results, the plan from calibrated figures, joblib's
configuration, process and Dask workers."""

import math
import os
import warnings

import joblib
import numpy as np
import pytest

import breakeven as be
from breakeven import testing
from breakeven._calibrate import measure_batch
from breakeven._interop import map as map_module
from breakeven._profile import Profile, ProfileWarning, host_fingerprint, load_profile


@pytest.fixture(autouse=True)
def fresh_dispatch():
    testing.reset()
    yield
    testing.reset()


def synthetic(serial_ns, parallel_ns, overhead_us=0.2, start_s=1e-3, task_s=2e-5,
              threads=(2,)):
    """A profile whose sum float64 costs ``overhead + serial_ns * work`` ns
    serially and ``overhead + parallel_ns * work`` with each thread count in
    ``threads`` (parallel from work 4096 on), and joblib costs as given."""
    p = Profile(host_fingerprint(), {}, "now", 10000.0, "synthetic")
    works = [2 ** k for k in range(4, 25, 2)]
    rows = [(w, 1, overhead_us * 1e-6 + serial_ns * 1e-9 * w) for w in works]
    rows += [(w, t, overhead_us * 1e-6 + parallel_ns * 1e-9 * w)
             for w in works for t in threads]
    steps = ((0, 1), (4096, max(threads)))
    p.set_table("sum", "float64", steps, steps, rows)
    p.batch = {"start_s": start_s, "task_s": task_s}
    return p


def test_results_equal_the_calls(rng):
    xs = [rng.standard_normal(n) for n in (0, 1, 7, 1000, 70000)]
    assert be.map(be.sum, xs) == [be.sum(x) for x in xs]
    exps = be.map(be.exp, iter(xs))  # any iterable
    for x, e in zip(xs, exps, strict=True):
        np.testing.assert_array_equal(e, be.exp(x))
    pairs = [(x, x[::-1].copy()) for x in xs]
    assert be.map(be.dot, pairs) == [be.dot(a, b) for a, b in pairs]
    hists = be.map(be.histogram, [(x, 5) for x in xs[1:]])
    for x, (counts, edges) in zip(xs[1:], hists, strict=True):
        c, e = np.histogram(x, 5)
        np.testing.assert_array_equal(counts, c)
        np.testing.assert_array_equal(edges, e)
    X, C = rng.standard_normal((50, 4)), rng.standard_normal((6, 4))
    np.testing.assert_array_equal(be.map(be.nearest, [(X, C)])[0], be.nearest(X, C))
    assert be.map(be.sum, []) == []


def test_every_plan_gives_the_same_results(rng):
    xs = [rng.standard_normal(n) for n in (3, 5000, 100, 9000, 1, 64)]
    want = [be.exp(x) for x in xs]
    for mode, workers, threads, tasks in [("inner", 1, 0, 1), ("outer", 2, 1, 3),
                                          ("outer", 3, 1, 6), ("mixed", 2, 2, 2)]:
        plan = map_module.MapPlan(mode, workers, threads, tasks, 0, "exp", "test",
                            backend="threading")
        got = map_module._run(plan, be.exp, xs)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_bad_arguments():
    x = [np.ones(3)]
    with pytest.raises(TypeError, match="breakeven function"):
        be.map(np.sum, x)
    with pytest.raises(TypeError, match="iterable"):
        be.map(be.sum, 5)
    with pytest.raises(ValueError, match="n_jobs == 0"):
        be.map(be.sum, x, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs"):
        be.map(be.sum, x, n_jobs="2")
    with pytest.raises(TypeError):  # what the function raises, as a call would
        be.map(be.dot, [(np.ones(2),)])


@pytest.mark.openmp
def test_cheap_items_run_one_after_another():
    """Calls that cost about their overhead (which holds the GIL) gain
    nothing from worker threads: inner."""
    testing.reset(synthetic(serial_ns=0.1, parallel_ns=0.05))
    d = be.explain(be.map, be.sum, [np.ones(256)] * 10000)
    assert d.variant == "inner" and d.workers == 1
    assert "estimated" in d.reason and "synthetic" in d.reason


@testing.simulated_cpus(4)
def test_costly_serial_items_are_spread():
    """Many items below the parallel threshold, each far costlier than its
    overhead: outer, every usable CPU a worker."""
    testing.reset(synthetic(serial_ns=5, parallel_ns=4, threads=(2, 4)))
    d = be.explain(be.map, be.sum, [np.ones(2048)] * 5000)
    assert (d.variant, d.workers, d.threads) == ("outer", 4, 1)
    # ... unless n_jobs says otherwise
    assert be.explain(be.map, be.sum, [np.ones(2048)] * 5000, n_jobs=1).variant \
        == "inner"
    assert be.explain(be.map, be.sum, [np.ones(2048)] * 5000, n_jobs=2).workers == 2
    # ... or a threads() cap
    with be.threads(1):
        assert be.explain(be.map, be.sum, [np.ones(2048)] * 5000).variant == "inner"


def test_few_large_items_go_inner_when_parallel_kernels_scale():
    testing.reset(synthetic(serial_ns=1.0, parallel_ns=0.5, start_s=5e-3))
    d = be.explain(be.map, be.sum, [np.ones(2 ** 20)] * 2)
    assert d.variant == "inner"


@testing.simulated_cpus(4)
def test_mix_of_workers_and_threads():
    """4 CPUs, kernels that scale to 2 threads but no further, 4 large
    items: 2 workers x 2 threads is estimated far better than one item after
    another on 4 threads, and no plan uses more threads than CPUs."""
    p = synthetic(serial_ns=4, parallel_ns=2, threads=(2,), start_s=1e-4,
                  task_s=1e-6)
    rows = [r for r in p.times("sum", "float64")]
    rows += [(w, 4, s) for w, t, s in rows if t == 2]  # 4 threads: no better
    p.set_table("sum", "float64", ((0, 1), (4096, 4)), ((0, 1), (4096, 4)), rows)
    testing.reset(p)
    estimates = map_module._plan(be.sum, [np.ones(2 ** 20)] * 4, None).estimates
    costs = {e[:3]: e[4] for e in estimates}
    # k workers x t threads never exceed the CPUs
    assert all(k * max(t, 1) <= 4 for _, k, t in costs)
    assert costs[("mixed", 2, 2)] < costs[("inner", 1, 0)]
    assert math.isclose(costs[("mixed", 2, 2)], costs[("outer", 4, 1)], rel_tol=0.5)


@pytest.mark.openmp
def test_plans_are_reused_only_for_alike_batches_and_the_same_profile():
    """A batch of arrays like one planned before reuses its plan; arrays
    that differ in what a planner reads, or a new profile, are planned
    anew."""
    testing.reset(synthetic(serial_ns=0.1, parallel_ns=0.05))
    first = map_module._plan(be.sum, [np.ones(256)] * 1000, None)
    assert map_module._plan(be.sum, [np.zeros(256)] * 1000, None) is first
    # strided views: NumPy computes them, whatever was planned for the rest
    strided = [np.ones(512)[::2]] * 1000
    assert "NumPy" in map_module._plan(be.sum, strided, None).reason
    ones = [np.ones(256, np.float32)] * 1000
    assert map_module._plan(be.sum, ones, None) is not first
    # another profile: planned from it
    testing.reset(synthetic(serial_ns=0.1, parallel_ns=0.05, start_s=2e-3))
    again = map_module._plan(be.sum, [np.ones(256)] * 1000, None)
    assert again is not first and again.estimates != first.estimates


@pytest.mark.openmp
def test_uncalibrated_profile_runs_inner():
    p = synthetic(1, 1)
    p.batch = {}
    testing.reset(p)
    d = be.explain(be.map, be.sum, [np.ones(10)] * 10)
    assert d.variant == "inner" and "not calibrated" in d.reason


def test_numpy_items_run_inner():
    d = be.explain(be.map, be.sum, [[1, 2, 3]] * 100)
    assert d.variant == "inner" and "NumPy" in d.reason


@testing.simulated_cpus(4)
def test_parallel_config_threading_n_jobs_one_runs_inner():
    testing.reset(synthetic(serial_ns=5, parallel_ns=4))
    with joblib.parallel_config(backend="threading", n_jobs=1):
        d = be.explain(be.map, be.sum, [np.ones(2048)] * 5000)
    assert d.variant == "inner"


def test_loky_workers_obey_their_thread_limit(rng):
    xs = [rng.standard_normal(2 ** 16) for _ in range(6)]
    with joblib.parallel_config(backend="loky", n_jobs=2, inner_max_num_threads=1):
        d = be.explain(be.map, be.exp, xs)
        got = be.map(be.exp, xs)
        log = joblib.delayed(map_module.worker_log)
        logs = joblib.Parallel()(log() for _ in range(4))
    assert d.variant == "backend" and "loky" in d.reason
    for g, x in zip(got, xs, strict=True):
        np.testing.assert_array_equal(g, be.exp(x))
    entries = [e for log in logs for e in log]
    assert entries, "no worker ran a batch"
    assert all(limit == 1 and peak <= 1 for _, limit, peak in entries)


@pytest.fixture
def environ_kept():
    """Dask's nanny writes its workers' thread limits (OMP_NUM_THREADS=1,
    ...) into this process's environment; later subprocesses must not
    inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_dask_cluster(rng, environ_kept):
    distributed = pytest.importorskip("distributed",
                                      reason="the dask extra is not installed")
    xs = [rng.standard_normal(2 ** 17) for _ in range(8)]
    want = [be.exp(x) for x in xs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's own chatter
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                      processes=True, host="127.0.0.1",
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client, \
                joblib.parallel_config(backend="dask"):
            assert be.explain(be.map, be.exp, xs).variant == "backend"
            got = be.map(be.exp, xs)
            logs = client.run(map_module.worker_log)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    entries = [e for log in logs.values() for e in log]
    assert len(logs) == 2 and entries
    # Dask's nanny sets OMP_NUM_THREADS=1 in its workers: obeyed
    assert all(limit == 1 and peak <= 1 for _, limit, peak in entries)


def test_calibration_measures_joblib():
    b = measure_batch(2, repeats=2, tasks=16)
    assert set(b) == {"start_s", "task_s"}
    assert 0 < b["start_s"] < 1 and 0 <= b["task_s"] < 0.1


def test_batch_figures_round_trip_and_faults(tmp_path):
    p = synthetic(1, 1)
    path = tmp_path / "p.toml"
    p.save(path)
    assert load_profile(path).batch == p.batch
    text = path.read_text().replace("task_s = ", "task_s = -")
    path.write_text(text)
    with pytest.warns(ProfileWarning, match="batch.task_s"):
        q = load_profile(path)
    assert q.source == "embedded default"


@pytest.mark.openmp
def test_loky_workers_share_the_host_budget_instead_of_a_static_split(rng):
    """With the host's core budget, a loky batch lifts joblib's
    inner_max_num_threads (cpus // n_jobs by default) to every usable CPU:
    the workers take the cores their neighbours leave idle."""
    usable = be.usable_cpus()
    if usable < 2:
        pytest.skip("one usable CPU: nothing to share")
    xs = [rng.standard_normal(2 ** 16) for _ in range(6)]
    log = joblib.delayed(map_module.worker_log)
    assert be.use_host_budget(True)
    try:
        with joblib.parallel_config(backend="loky", n_jobs=2):
            d = be.explain(be.map, be.exp, xs)
            got = be.map(be.exp, xs)
        # the same workers (loky keeps them for the same limits)
        with joblib.parallel_config(backend="loky", n_jobs=2,
                                    inner_max_num_threads=usable):
            logs = joblib.Parallel()(log() for _ in range(4))
        be.use_host_budget(False)
        with joblib.parallel_config(backend="loky", n_jobs=2):
            off = be.explain(be.map, be.exp, xs)
    finally:
        be.use_host_budget(True)
    assert d.variant == "backend" and f"lifted to {usable}" in d.reason
    assert "lifted" not in off.reason
    for g, x in zip(got, xs, strict=True):
        np.testing.assert_array_equal(g, be.exp(x))
    entries = [e for lg in logs for e in lg]
    assert entries, "no worker ran a batch"
    assert all(limit == usable for _, limit, _ in entries)
