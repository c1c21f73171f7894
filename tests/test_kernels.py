"""Every kernel, serial and parallel, against NumPy.

Parallel variants must give exactly the serial variant's bits for every
thread count (sum, dot and cumsum by their fixed block structure; the others
because each output depends on its own inputs only).  Serial variants must
agree with NumPy: bit for bit where the documentation says so (axpy,
histogram), within a few ulp for exp, and within a pairwise-summation error
bound for the reductions and the scan.
"""

import numpy as np
import pytest
from helpers import ulp_distance

from breakeven._core.openmp import usable_cpus
from breakeven._kernels import elementwise, reductions, scan
from breakeven._kernels import histogram as histogram_kernels
from breakeven._kernels import nearest as nearest_kernels

DTYPES = [np.float64, np.float32]
SIZES = [0, 1, 7, 1000, 2**20 + 3]
THREADS = [1, 2, 3, 64]


def make(n, dtype, rng, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, n).astype(dtype)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def assert_close_sum(got, x, ref, dtype):
    """|got - ref| within a pairwise-summation bound, relative to sum |x|."""
    scale = float(np.sum(np.abs(x), dtype=np.float64)) or 1.0
    n = max(len(x), 2)
    bound = (128 + 2 * np.log2(n)) * eps(dtype) * scale
    assert abs(float(got) - float(ref)) <= bound


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_sum(n, dtype, rng):
    x = make(n, dtype, rng)
    s = reductions.sum_serial(x)
    assert_close_sum(s, x, np.sum(x.astype(np.float64)), dtype)
    for t in THREADS:
        assert reductions.sum_parallel(x, t) == s


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dot(n, dtype, rng):
    x, y = make(n, dtype, rng), make(n, dtype, rng)
    d = reductions.dot_serial(x, y)
    xy = x.astype(np.float64) * y.astype(np.float64)
    assert_close_sum(d, xy, np.sum(xy), dtype)
    for t in THREADS:
        assert reductions.dot_parallel(x, y, t) == d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_axpy_is_numpy_bit_for_bit(n, dtype, rng):
    x, y0 = make(n, dtype, rng), make(n, dtype, rng)
    a = 0.7
    expected = y0.copy()
    expected += dtype(a) * x
    y = y0.copy()
    elementwise.axpy_serial(a, x, y)
    np.testing.assert_array_equal(y, expected)
    for t in THREADS:
        y = y0.copy()
        elementwise.axpy_parallel(a, x, y, t)
        np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_exp(n, dtype, rng):
    x = make(n, dtype, rng, -20, 20)
    out = np.empty_like(x)
    elementwise.exp_serial(x, out)
    assert ulp_distance(out, np.exp(x)).max(initial=0) <= 4
    for t in THREADS:
        par = np.full_like(x, np.nan)
        elementwise.exp_parallel(x, par, t)
        np.testing.assert_array_equal(par, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_whole_range_within_4_ulp(dtype, rng):
    """Over the whole domain, including subnormal results and the overflow
    and underflow thresholds, and the special values."""
    info = np.finfo(dtype)
    top = float(np.log(info.max))
    bottom = float(np.log(info.smallest_subnormal))
    x = np.concatenate([
        rng.uniform(bottom - 2, top + 2, 200_000),
        rng.uniform(-1e-3, 1e-3, 10_000),
        np.linspace(bottom - 1, bottom + 30, 5_000),  # subnormal results
        np.linspace(top - 1, top + 1, 5_000),  # around overflow
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e-300, 700.0, -700.0,
         708.0, -708.0, 709.78, -745.13, -745.14, 88.72, -103.97, 1e30, -1e30],
    ]).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        ref = np.exp(x)
    out = np.empty_like(x)
    elementwise.exp_serial(x, out)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    fin = np.isfinite(ref)
    special = ~fin & ~np.isnan(ref)
    np.testing.assert_array_equal(out[special], ref[special])
    assert ulp_distance(out[fin], ref[fin]).max() <= 4
    assert np.exp(dtype(0)) == out[np.flatnonzero(x == 0)[0]] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_cumsum(n, dtype, rng):
    x = make(n, dtype, rng)
    out = np.empty_like(x)
    scan.cumsum_serial(x, out)
    ref = np.cumsum(x.astype(np.float64))
    scale = np.cumsum(np.abs(x), dtype=np.float64)
    bound = (128 + 2 * np.log2(max(n, 2))) * eps(dtype) * scale
    assert np.all(np.abs(out - ref) <= bound)
    for t in THREADS:
        par = np.full_like(x, np.nan)
        scan.cumsum_parallel(x, par, t)
        np.testing.assert_array_equal(par, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("bins", [1, 10, 257])
def test_histogram_equals_numpy(n, dtype, bins, rng):
    # range narrower than the data: values outside are ignored, both ends hit
    x = make(n, dtype, rng, -1.2, 1.2)
    if n > 4:
        x[:4] = [-1.0, 1.0, np.nan, 0.0]
    ref_counts, ref_edges = np.histogram(x, bins, (-1.0, 1.0))
    counts, edges = histogram_kernels.histogram_serial(x, bins, -1.0, 1.0)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(edges, ref_edges)
    assert counts.dtype == ref_counts.dtype and edges.dtype == ref_edges.dtype
    for t in THREADS:
        c, e = histogram_kernels.histogram_parallel(x, bins, -1.0, 1.0, t)
        np.testing.assert_array_equal(c, ref_counts)
        np.testing.assert_array_equal(e, ref_edges)


@pytest.mark.parametrize("dtype", DTYPES)
def test_histogram_values_on_every_edge(dtype):
    """Values exactly on the edges: the bin rule's corner cases."""
    bins, lo, hi = 7, -0.3, 2.9
    _, edges = np.histogram([], bins, (lo, hi))
    x = np.repeat(edges.astype(dtype), 3)
    x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
    ref_counts, ref_edges = np.histogram(x, bins, (lo, hi))
    counts, edges_got = histogram_kernels.histogram_serial(x, bins, lo, hi)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(edges_got, ref_edges)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bins, lo, hi", [
    (64, -1.0, 1.0),             # wide bins: the multiplication, few checks
    (1000, 1e6, 1e6 + 1.0),      # far from 0: edges round coarsely
    (3, 0.1, 0.1 + 3e-13),       # bins of a few float64 ulps: NumPy's arithmetic
    (100_000, -1.0, 1.0),        # many bins: float32's subtraction error
    (5, 1e-300, 1e-299),         # tiny numbers
])
def test_histogram_near_every_edge(dtype, bins, lo, hi, rng):
    """Values on, just above and just below each edge (in the data's type),
    and random ones: the counts are NumPy's, bit for bit, in every regime of
    the bin estimate."""
    try:
        ref_counts, ref_edges = np.histogram(np.zeros(0, dtype), bins, (lo, hi))
        # NumPy before 2.1 returns repeated edges instead of raising
        degenerate = bool(np.any(ref_edges[:-1] >= ref_edges[1:]))
    except ValueError:  # too many bins for float32's resolution: as NumPy
        degenerate = True
    if degenerate:
        with pytest.raises(ValueError, match="Too many bins"):
            histogram_kernels.histogram_serial(np.zeros(1, dtype), bins, lo, hi)
        return
    e = ref_edges.astype(dtype)
    near = [e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf),
            np.nextafter(np.nextafter(e, np.inf), np.inf)]
    x = np.concatenate(near + [rng.uniform(lo, hi, 20_000).astype(dtype)])
    ref_counts, _ = np.histogram(x, bins, (lo, hi))
    for t in (1, 2):
        counts, edges_got = histogram_kernels.histogram_parallel(x, bins, lo, hi, t)
        np.testing.assert_array_equal(counts, ref_counts)
        np.testing.assert_array_equal(edges_got, ref_edges)


def nearest_reference(X, C):
    d = (X * X).sum(1)[:, None] - 2 * (X @ C.T) + (C * C).sum(1)[None, :]
    return np.argmin(d, axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_nearest_integer_data_equals_numpy(n, dtype, rng):
    """Small integers make every distance exact, so ties are real ties and
    the lowest index must win, exactly as np.argmin decides."""
    d = 5
    X = rng.integers(-3, 4, (n, d)).astype(dtype)
    C = rng.integers(-3, 4, (7, d)).astype(dtype)
    C[3] = C[1]  # a guaranteed tie between centres 1 and 3
    ref = nearest_reference(X, C)
    got = nearest_kernels.nearest_serial(X, C)
    assert got.dtype == np.int64 and got.shape == (n,)
    np.testing.assert_array_equal(got, ref)
    assert not np.any(got == 3)
    for t in THREADS:
        np.testing.assert_array_equal(nearest_kernels.nearest_parallel(X, C, t), ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest_random_data_picks_a_nearest_centre(dtype, rng):
    X = rng.standard_normal((5000, 16)).astype(dtype)
    C = rng.standard_normal((300, 16)).astype(dtype)  # several chunks of rows
    got = nearest_kernels.nearest_serial(X, C)
    ref = nearest_reference(X.astype(np.float64), C.astype(np.float64))
    dist = ((X[:, None, :].astype(np.float64) - C[None, :, :]) ** 2).sum(-1)
    best = dist[np.arange(len(X)), ref]
    chosen = dist[np.arange(len(X)), got]
    assert np.all(chosen <= best + 1e3 * eps(dtype) * (1 + best))
    assert np.mean(got == ref) > 0.99
    for t in THREADS:
        np.testing.assert_array_equal(nearest_kernels.nearest_parallel(X, C, t), got)


def test_nearest_shapes_and_errors(rng):
    X = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="same number of columns"):
        nearest_kernels.nearest_serial(X, rng.standard_normal((2, 4)))
    with pytest.raises(ValueError, match="at least one row"):
        nearest_kernels.nearest_serial(X, np.empty((0, 3)))
    # zero features: every distance is 0, the first centre wins
    np.testing.assert_array_equal(
        nearest_kernels.nearest_serial(np.empty((3, 0)), np.empty((2, 0))), [0, 0, 0])


# ---------------------------------------------------------------------------
# accuracy: blocked pairwise, not a naive running sum
# ---------------------------------------------------------------------------

def test_float32_sum_and_cumsum_are_not_naive():
    """A naive float32 running sum of 2^20 copies of 0.1 is off by ~4%
    (it stagnates); a blocked pairwise sum is within a few ulp."""
    x = np.full(2**20 + 3, 0.1, dtype=np.float32)
    exact = float(np.float32(0.1)) * len(x)
    naive = np.float32(0)
    for chunk in np.split(x[: 2**20], 64):  # the naive error, for the record
        naive = np.float32(naive + np.add.accumulate(chunk)[-1])
    assert abs(reductions.sum_serial(x) - exact) / exact < 1e-6
    out = np.empty_like(x)
    scan.cumsum_serial(x, out)
    assert abs(float(out[-1]) - exact) / exact < 1e-5
    assert abs(float(out[len(x) // 2]) - exact / 2) / exact < 1e-5
    assert abs(float(np.add.accumulate(x)[-1]) - exact) / exact > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_zero_and_empty(dtype):
    z = np.array([-0.0, -0.0], dtype=dtype)
    assert np.signbit(reductions.sum_serial(z)) == np.signbit(np.sum(z))
    out = np.empty_like(z)
    scan.cumsum_serial(z, out)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(np.cumsum(z)))
    e = np.empty(0, dtype=dtype)
    assert reductions.sum_serial(e) == 0.0 == np.sum(e)
    assert reductions.dot_serial(e, e) == 0.0


# ---------------------------------------------------------------------------
# NaN and inf propagate as in NumPy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [
    [np.nan], [np.inf], [-np.inf], [np.inf, -np.inf], [np.nan, np.inf]])
@pytest.mark.parametrize("t", [1, 2])
def test_specials_propagate(dtype, special, t, rng):
    n = 50_000
    x = make(n, dtype, rng)
    pos = rng.choice(n, len(special), replace=False)
    x[pos] = special
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(reductions.sum_parallel(x, t), np.sum(x))
        ones = np.ones_like(x)
        np.testing.assert_array_equal(reductions.dot_parallel(x, ones, t),
                                      np.dot(x, ones))
        out = np.empty_like(x)
        scan.cumsum_parallel(x, out, t)
        ref = np.cumsum(x)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
        np.testing.assert_array_equal(np.sign(out[np.isinf(ref)]),
                                      np.sign(ref[np.isinf(ref)]))
        elementwise.exp_parallel(x, out, t)
        np.testing.assert_array_equal(out[pos], np.exp(x[pos]))
        c, _ = histogram_kernels.histogram_parallel(x, 10, -1.0, 1.0, t)
        np.testing.assert_array_equal(c, np.histogram(x, 10, (-1.0, 1.0))[0])


def test_nearest_nan_follows_argmin(rng):
    X = rng.standard_normal((40, 4))
    C = rng.standard_normal((6, 4))
    X[5, 2] = np.nan  # every distance of row 5 is NaN: argmin says 0
    C[4, 0] = np.nan  # column 4 is NaN for every row: argmin says 4
    with np.errstate(invalid="ignore"):
        ref = nearest_reference(X, C)
    np.testing.assert_array_equal(nearest_kernels.nearest_serial(X, C), ref)
    np.testing.assert_array_equal(nearest_kernels.nearest_parallel(X, C, 2), ref)


# ---------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------

PARALLEL_CALLS = [
    ("sum", lambda x, t: reductions.sum_parallel(x, t)),
    ("dot", lambda x, t: reductions.dot_parallel(x, x, t)),
    ("axpy", lambda x, t: elementwise.axpy_parallel(1.0, x, x.copy(), t)),
    ("exp", lambda x, t: elementwise.exp_parallel(x, np.empty_like(x), t)),
    ("cumsum", lambda x, t: scan.cumsum_parallel(x, np.empty_like(x), t)),
    ("histogram", lambda x, t: histogram_kernels.histogram_parallel(x, 4, 0.0, 1.0, t)),
    ("nearest", lambda x, t: nearest_kernels.nearest_parallel(x.reshape(-1, 2),
                                                       x[:4].reshape(2, 2), t)),
]


CALL_IDS = [c[0] for c in PARALLEL_CALLS]


@pytest.mark.parametrize("name,call", PARALLEL_CALLS, ids=CALL_IDS)
@pytest.mark.parametrize("bad", [0, -1, -(2**40)])
def test_non_positive_thread_counts_raise(name, call, bad):
    with pytest.raises(ValueError, match="n_threads"):
        call(np.ones(64), bad)


@pytest.mark.parametrize("name,call", PARALLEL_CALLS, ids=CALL_IDS)
def test_huge_thread_counts_are_clamped(name, call):
    call(np.ones(64), 10**6)  # must neither fail nor start a million threads


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length"):
        reductions.dot_serial(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="same length"):
        elementwise.axpy_parallel(1.0, np.ones(3), np.ones(4), 2)
    with pytest.raises(ValueError, match="same length"):
        elementwise.exp_serial(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="same length"):
        scan.cumsum_parallel(np.ones(3), np.ones(4), 2)


@pytest.mark.parametrize("bins,lo,hi,match", [
    (0, 0.0, 1.0, "bins"), (3, 1.0, 1.0, "lo < hi"), (3, 2.0, 1.0, "lo < hi"),
    (3, 0.0, np.inf, "not finite"), (3, np.nan, 1.0, "not finite")])
def test_histogram_bad_arguments(bins, lo, hi, match):
    with pytest.raises(ValueError, match=match):
        histogram_kernels.histogram_serial(np.ones(3), bins, lo, hi)


def test_wrong_dtypes_and_layouts_are_refused():
    with pytest.raises((TypeError, ValueError)):
        reductions.sum_serial(np.ones(4, dtype=np.int64))
    with pytest.raises((TypeError, ValueError)):
        reductions.sum_serial(np.ones(8)[::2])  # not contiguous
    with pytest.raises((TypeError, ValueError)):
        reductions.dot_serial(np.ones(4), np.ones(4, dtype=np.float32))
    ro = np.ones(4)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        elementwise.exp_serial(np.ones(4), ro)
    assert reductions.sum_serial(ro) == 4.0  # read-only input is fine


def test_in_place_exp_and_cumsum(rng):
    x = make(10_000, np.float64, rng)
    ref_e, ref_c = np.exp(x), np.empty_like(x)
    scan.cumsum_serial(x, ref_c)
    y = x.copy()
    elementwise.exp_parallel(y, y, 2)
    assert ulp_distance(y, ref_e).max() <= 4
    y = x.copy()
    scan.cumsum_parallel(y, y, 2)
    np.testing.assert_array_equal(y, ref_c)


def test_usable_cpus_positive():
    assert usable_cpus() >= 1
