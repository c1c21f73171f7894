"""The k-means example library (docs/examples/bekmeans) against scikit-learn.

``bekmeans.lloyd`` claims scikit-learn's ``KMeans(init=init, n_init=1,
algorithm="lloyd")`` result: the same iterations, labels and centers (to
rounding), at every thread count bit for bit, and the same with breakeven
absent.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import cluster as sklearn_cluster  # a test dependency

import breakeven


@pytest.fixture(scope="module")
def bekmeans(example):
    sys.path.insert(0, str(example("bekmeans")))
    try:
        import bekmeans
        yield bekmeans
    finally:
        sys.path.remove(str(example("bekmeans")))


def sklearn_lloyd(X, init, max_iter=300, tol=1e-4):
    with warnings.catch_warnings():  # fewer distinct clusters than k
        warnings.simplefilter("ignore")
        km = sklearn_cluster.KMeans(n_clusters=init.shape[0], init=init, n_init=1,
                                    max_iter=max_iter, tol=tol,
                                    algorithm="lloyd").fit(X)
    return km.cluster_centers_, km.labels_, km.inertia_, km.n_iter_


def blobs(rng, n, d, spread=4, dtype=np.float64):
    """Samples around a few centers, with a random offset and scale."""
    centers = rng.uniform(-spread, spread, (5, d))
    X = centers[rng.integers(0, 5, n)] + rng.standard_normal((n, d))
    return (X * rng.uniform(0.5, 3) + rng.uniform(-10, 10)).astype(dtype)


def assert_same_result(ours, theirs, dtype):
    centers, labels, inertia, n_iter = ours
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert n_iter == theirs[3]
    np.testing.assert_array_equal(labels, theirs[1])
    scale = max(1.0, float(np.abs(theirs[0]).max()))
    np.testing.assert_allclose(centers, theirs[0], rtol=0, atol=rtol * scale)
    assert inertia == pytest.approx(theirs[2], rel=rtol, abs=rtol * scale)
    assert centers.dtype == dtype and labels.dtype == np.int32
    assert isinstance(inertia, float) and isinstance(n_iter, int)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "d", "k"), [
    (30, 2, 3), (257, 3, 8), (1000, 2, 8), (3000, 17, 5), (2000, 50, 8),
    (600, 5, 40)])
def test_same_as_sklearn(bekmeans, rng, n, d, k, dtype):
    X = blobs(rng, n, d, dtype=dtype)
    init = X[rng.choice(n, k, replace=False)]
    assert_same_result(bekmeans.lloyd(X, init), sklearn_lloyd(X, init), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_as_sklearn_few_iterations_and_no_tolerance(bekmeans, rng, dtype):
    # not converged: the labels are computed once more for the last centers
    X = blobs(rng, 5000, 4, dtype=dtype)
    init = X[:6]
    for max_iter, tol in [(1, 0.0), (3, 0.0), (300, 0.0), (300, 1e-2)]:
        ours = bekmeans.lloyd(X, init, max_iter=max_iter, tol=tol)
        assert ours[3] <= max_iter
        assert_same_result(ours, sklearn_lloyd(X, init, max_iter, tol), dtype)


def test_empty_cluster_takes_the_farthest_sample(bekmeans, rng):
    X = blobs(rng, 800, 3)
    init = np.vstack([X[:4], np.full((2, 3), 1e3)])  # two centers far away
    ours = bekmeans.lloyd(X, init, max_iter=2)
    assert_same_result(ours, sklearn_lloyd(X, init, max_iter=2), np.float64)
    # the far centers were moved onto samples, not left far away
    assert np.abs(ours[0]).max() < 100


def test_duplicate_points_and_more_clusters_than_distinct(bekmeans, rng):
    X = np.repeat(blobs(rng, 40, 2), 5, axis=0)  # every sample five times
    init = X[rng.choice(len(X), 10, replace=False)]
    assert_same_result(bekmeans.lloyd(X, init), sklearn_lloyd(X, init), np.float64)
    few = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 20, axis=0)
    init = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])  # 3 clusters, 2 points
    ours = bekmeans.lloyd(few, init)
    assert_same_result(ours, sklearn_lloyd(few, init), np.float64)
    assert set(ours[1]) == {0, 1}


def test_one_cluster_and_as_many_clusters_as_samples(bekmeans, rng):
    X = blobs(rng, 300, 4)
    one = bekmeans.lloyd(X, X[:1])
    assert_same_result(one, sklearn_lloyd(X, X[:1]), np.float64)
    np.testing.assert_allclose(one[0][0], X.mean(axis=0), rtol=1e-12)
    every = bekmeans.lloyd(X, X)
    assert_same_result(every, sklearn_lloyd(X, X), np.float64)
    np.testing.assert_array_equal(every[1], np.arange(300))
    assert every[2] == 0.0


@pytest.mark.openmp
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identical_at_every_thread_count(bekmeans, rng, dtype):
    X = blobs(rng, 20_000, 6, dtype=dtype)  # 79 chunks of 256 samples
    init = X[:7]
    results = {}
    for nt in (1, 2, breakeven.usable_cpus() + 2):  # the last one clamped
        breakeven.stats(reset=True)
        with breakeven.threads(nt, exact=True):
            results[nt] = bekmeans.lloyd(X, init, max_iter=20)
        s = breakeven.stats()["bekmeans.lloyd", np.dtype(dtype).name]
        # the passes ran with the count forced (clamped to the CPUs)
        assert (s.parallel > 0) == (min(nt, breakeven.usable_cpus()) > 1)
        assert s.most_threads <= breakeven.usable_cpus()
    first = results[1]
    for r in results.values():
        np.testing.assert_array_equal(r[0], first[0])  # bit for bit
        np.testing.assert_array_equal(r[1], first[1])
        assert r[2] == first[2] and r[3] == first[3]


def test_without_breakeven(bekmeans, example, rng):
    """breakeven blocked at import: the library's own rule, the same result."""
    X = blobs(rng, 3000, 5)
    init = X[:4]
    data = {"X": X, "init": init}
    path = example("bekmeans")
    script = (
        "import sys, pickle\n"
        "sys.modules['breakeven'] = None\n"  # import breakeven fails
        f"sys.path.insert(0, {str(path)!r})\n"
        "import bekmeans\n"
        "d = pickle.loads(sys.stdin.buffer.read())\n"
        "r = bekmeans.lloyd(d['X'], d['init'])\n"
        "loaded = {m.split('.')[0] for m, v in sys.modules.items() if v}\n"
        "sys.stdout.buffer.write(pickle.dumps((bekmeans.DISPATCHED, r,\n"
        "                                      'breakeven' in loaded)))\n")
    import pickle

    run = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(data),
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    dispatched, result, imported = pickle.loads(run.stdout)
    assert dispatched is False and imported is False
    assert bekmeans.DISPATCHED is True  # in this process, with breakeven
    assert_same_result(result, sklearn_lloyd(X, init), np.float64)
    ours = bekmeans.lloyd(X, init)
    np.testing.assert_array_equal(result[0], ours[0])


def test_registered_and_calibratable(bekmeans, rng):
    k = breakeven.get_kernel("bekmeans.lloyd")
    assert k.uses_blas
    args = k.sample(50_000, np.dtype(np.float64), rng)
    X, centers = args[0], args[1]
    per_sample = k.work(X[:1], centers)
    assert k.work(*args) == X.shape[0] * per_sample  # in proportion to n
    assert abs(k.work(*args) - 50_000) <= per_sample
    # more features or centers: more work per sample
    assert k.work(X[:1, :8], centers[:, :8]) < per_sample < k.work(X[:1], X[:9])
    changed = k.call(*args)  # one pass: every label set from -1
    assert changed == X.shape[0]
    assert k.call(*args) == 0  # the same centers: no label changes
    assert set(np.unique(args[2])) <= set(range(centers.shape[0]))


@pytest.mark.parametrize(("X", "init", "kwargs", "error", "match"), [
    ([[1, 2], [3, 4]], [[1, 2, 3]], {}, ValueError, "features"),
    ([[1, 2], [3, 4]], [[1, 2]] * 3, {}, ValueError, "between 1 and n_samples"),
    ([1, 2, 3], [[1]], {}, ValueError, "2-D"),
    ([["a", "b"]], [[1, 2]], {}, TypeError, "real numbers"),
    ([[1, np.nan]], [[1, 2]], {}, ValueError, "NaN"),
    ([[1, 2]], [[np.inf, 2]], {}, ValueError, "NaN or infinity"),
    (np.empty((0, 2)), np.empty((0, 2)), {}, ValueError, "at least one sample"),
    ([[1, 2]], [[1, 2]], {"max_iter": 0}, ValueError, "max_iter"),
    ([[1, 2]], [[1, 2]], {"max_iter": 2.5}, TypeError, "max_iter"),
    ([[1, 2]], [[1, 2]], {"tol": -1}, ValueError, "tol"),
    ([[1, 2]], [[1, 2]], {"tol": "x"}, TypeError, "tol"),
])
def test_bad_input(bekmeans, X, init, kwargs, error, match):
    with pytest.raises(error, match=match):
        bekmeans.lloyd(X, init, **kwargs)


def test_input_types(bekmeans):
    X = [[0, 0], [0, 2], [10, 0], [10, 2]]  # a list of ints: float64
    centers, labels, inertia, n_iter = bekmeans.lloyd(X, [[0, 0], [10, 0]])
    assert centers.dtype == np.float64
    np.testing.assert_array_equal(centers, [[0, 1], [10, 1]])
    assert inertia == 4.0
    Xf = np.asarray(X, np.float32)
    assert bekmeans.lloyd(Xf, Xf[[0, 2]])[0].dtype == np.float32
    Xs = np.asarray(X, np.float64)[::-1]  # not contiguous: copied, not changed
    before = Xs.copy()
    bekmeans.lloyd(Xs, Xs[:2])
    np.testing.assert_array_equal(Xs, before)
