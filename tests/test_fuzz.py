"""Property-based tests: every drop-in function against NumPy.

Each example draws inputs (dtypes float16/32/64, integers, bool, complex,
object; 0-D to 3-D; empty; strided, negative, huge and zero strides,
Fortran order, unaligned, byte-swapped, read-only; NaN, inf, subnormal and
huge values), a dispatch state (a profile that sends small calls parallel,
hot or cold; one that keeps everything on the C fast path; the embedded
default) and a thread control (``threads()`` caps, forced counts, huge
counts, ``section()``), and checks that the drop-in returns NumPy's result
or raises NumPy's exception class.

Exactness, as the documentation promises it:

- ``histogram`` and ``axpy``: bit for bit, always;
- anything the kernels do not take (other dtypes, layouts, options): bit for
  bit, since NumPy computes it;
- ``sum``/``dot`` on the kernel path: within ``(128 + 2 log2 n) eps sum|x|``
  of NumPy's (both are pairwise sums with different blockings); ``cumsum``:
  the same bound per element, with the running ``sum|x|``; NaN and infinite
  results exactly where NumPy has them, unless the finite values alone could
  overflow (then the order of the additions decides, and only the type and
  shape are checked);
- ``exp`` on the kernel path: within 4 ulp of ``np.exp``, specials exact;
- ``nearest``: the chosen centre's distance within a rounding bound of the
  best one (near-ties may pick another index); with NaN or inf in the data,
  NumPy's index, unless finite values are large enough for squares or
  products to overflow (then where NaN and inf arise depends on rounding,
  and any index in range is accepted).

The default profile (``make test``) is small and derandomised; ``make fuzz``
(``--hypothesis-profile=fuzz``) runs over 10,000 examples in all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings

import numpy as np
import pytest
from helpers import thread_control, ulp_distance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import breakeven as be
from breakeven import testing
from breakeven._kernels.registry import BUILTINS
from breakeven._profile import Profile, host_fingerprint

CPUS = be.usable_cpus()
EXAMPLES = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def record_examples():
    """Count the examples run; reliability/run.py reads the total."""
    EXAMPLES["count"] = 0
    yield
    log = os.environ.get("BREAKEVEN_RELIABILITY_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"item": "fuzz examples",
                                "count": EXAMPLES["count"]}) + "\n")
    testing.reset()


# ---------------------------------------------------------------------------
# dispatch states and thread controls
# ---------------------------------------------------------------------------


def profile_with(threshold: int, cold: int) -> Profile:
    t = max(2, CPUS)
    p = Profile(host_fingerprint(), {}, "now", 10_000.0, "fuzz profile")
    for k in BUILTINS:
        for d in ("float64", "float32"):
            p.set_table(k, d, ((0, 1), (threshold, t)), ((0, 1), (cold, t)))
    return p


EAGER = profile_with(16, 64)
NEVER = profile_with(10**12, 10**12 + 1)

STATES = ["eager hot", "eager cold", "fast path only", "embedded default"]
CONTROLS = [None, ("threads", 1), ("threads", 2), ("threads", 2**40),
            ("exact", 1), ("exact", 2), ("exact", 3), ("exact", 2**40),
            ("section", None), ("section", 1)]


def set_state(state: str) -> None:
    if state == "embedded default":
        testing.reset()
        return
    testing.reset(NEVER if state == "fast path only" else EAGER)
    if state == "eager hot":  # a call in a loop: the team is awake
        testing.idle(-3600)
    else:
        testing.idle(1e9)


def assert_clean_state() -> None:
    """No thread control, reservation or in-flight count left behind."""
    usable, free, in_flight, _ = testing.budget()
    assert (free, in_flight) == (usable, 0)
    assert testing.thread_controls() == (0, 0, 0)


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

FLOATS = [np.float64, np.float32]
ALL_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8,
              np.bool_, np.complex128, np.complex64, object]
LAYOUTS = ["contiguous", "contiguous", "contiguous", "step", "negative", "fortran",
           "huge stride", "unaligned", "byteswapped", "broadcast", "readonly",
           "offset view"]
VALUES = ["normal", "normal", "integers", "specials", "subnormal", "huge", "exp range"]
SIZES = st.one_of(st.integers(0, 40),
                  st.sampled_from([63, 64, 65, 255, 256, 257, 1023, 1024, 1025,
                                   4095, 4096, 4097, 8191, 8192, 8193]),
                  st.integers(0, 20_000))


def values(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n float64 values of one kind."""
    if kind == "integers":
        return rng.integers(-5, 6, n).astype(np.float64)
    if kind == "subnormal":
        return rng.standard_normal(n) * 1e-310
    if kind == "huge":
        return rng.standard_normal(n) * 1e305
    if kind == "exp range":
        return rng.uniform(-800, 800, n)
    x = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3])
    if kind == "specials" and n:
        specials = [np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7e308, -1.7e308,
                    1e-40, 3.4e38]
        pos = rng.integers(0, n, rng.integers(1, 4))
        x[pos] = rng.choice(specials, len(pos))
    return x


def cast(x: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype.kind in "iu":
            x = np.nan_to_num(x, nan=0.0, posinf=100.0, neginf=-100.0)
            info = np.iinfo(dtype)
            return np.clip(x, info.min, info.max).astype(dtype)
        if dtype.kind == "b":
            return x > 0
        if dtype.kind == "c":
            return (x + 1j * x[::-1]).astype(dtype)
        if dtype.kind == "O":
            return x.astype(object)
        return x.astype(dtype)


def layout(x: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """The same values as ``x``, laid out another way."""
    if how == "step":
        base = np.zeros((x.size * 3,), x.dtype) if x.ndim <= 1 else \
            np.zeros(x.shape[:-1] + (x.shape[-1] * 3,), x.dtype)
        view = base[::3] if x.ndim <= 1 else base[..., ::3]
        view[...] = x
        return view if x.ndim else view.reshape(())
    if how == "negative":
        return x[::-1].copy()[::-1] if x.ndim else x
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "huge stride" and x.ndim == 1 and x.size <= 64:
        base = np.zeros(max(x.size, 1) * 4096, x.dtype)
        view = base[::4096][: x.size]
        view[...] = x
        return view
    if how == "unaligned" and x.dtype.itemsize > 1 and x.dtype != object:
        buf = np.zeros(x.nbytes + 1, np.uint8)
        view = buf[1:].view(x.dtype).reshape(x.shape)
        view[...] = x
        return view
    if how == "byteswapped" and x.dtype.itemsize > 1 and x.dtype != object:
        return x.astype(x.dtype.newbyteorder())
    if how == "broadcast" and x.ndim >= 1 and x.size:
        return np.broadcast_to(x[..., :1], x.shape)
    if how == "readonly":
        x = x.copy()
        x.flags.writeable = False
        return x
    if how == "offset view" and x.ndim == 1:
        base = np.zeros(x.size + 1, x.dtype)
        base[1:] = x
        return base[1:]
    return x


@st.composite
def shapes(draw, min_dims=0, max_dims=3):
    nd = draw(st.integers(min_dims, max_dims))
    if nd == 0:
        return ()
    if nd == 1:
        return (draw(SIZES),)
    return tuple(draw(st.lists(st.integers(0, 12 if nd == 3 else 40),
                               min_size=nd, max_size=nd)))


@st.composite
def array_specs(draw, dtypes=ALL_DTYPES, min_dims=0, max_dims=3, shape=None):
    """What an array is made of (a plain tuple, so that an example can build
    two independent, identical copies: one for NumPy, one for breakeven)."""
    float_bias = draw(st.booleans())  # half the arrays are kernel dtypes
    dtype = draw(st.sampled_from(FLOATS if float_bias else dtypes))
    if shape is None:
        shape = draw(shapes(min_dims, max_dims))
    return (dtype, shape, draw(st.sampled_from(VALUES)),
            draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, 2**32 - 1)))


def build(spec) -> np.ndarray:
    dtype, shape, kind, how, seed = spec
    rng = np.random.default_rng(seed)
    x = cast(values(kind, math.prod(shape), rng), dtype).reshape(shape)
    return layout(x, how, rng)


# ---------------------------------------------------------------------------
# comparing outcomes
# ---------------------------------------------------------------------------


def outcome(f):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return True, f()
        except Exception as exc:  # compared with NumPy's below
            return False, exc


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def kernel_took(func, *args, **kwargs) -> bool:
    """Whether the call goes to a breakeven kernel (else NumPy computes it)."""
    try:
        return be.explain(func, *args, **kwargs).variant != "numpy"
    except Exception:
        return False


def same_type(got, ref) -> None:
    assert type(got) is type(ref), (type(got), type(ref))
    if isinstance(ref, (np.ndarray, np.generic)):
        assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
        assert np.shape(got) == np.shape(ref)


def exact(got, ref) -> None:
    same_type(got, ref)
    if isinstance(ref, tuple):
        for g, r in zip(got, ref, strict=True):
            exact(g, r)
        return
    if isinstance(ref, np.ndarray) and ref.dtype == object:
        # object arrays: NumPy's == says NaN != NaN; compare as numbers
        with contextlib.suppress(TypeError, ValueError):
            got, ref = got.astype(complex), ref.astype(complex)
    np.testing.assert_array_equal(got, ref, strict=True)


def sum_bound(terms: np.ndarray, dtype, axis=None):
    """(bound, could overflow) for pairwise sums of ``terms`` (float64)."""
    finite = np.where(np.isfinite(terms), np.abs(terms), 0.0)
    with np.errstate(over="ignore"):
        scale = np.cumsum(finite) if axis == "running" else np.sum(finite)
    n = max(terms.size, 2)
    bound = (128 + 2 * np.log2(n)) * eps(dtype) * scale
    return bound, scale >= float(np.finfo(dtype).max) / 4


def close_sums(got, ref, terms: np.ndarray, dtype, running=False) -> None:
    """NumPy's sums and a blocked pairwise sum agree within the bound; the
    non-finite results agree unless finite terms could overflow."""
    bound, overflow = sum_bound(terms, dtype, "running" if running else None)
    g = np.asarray(got, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore"):
        ok = overflow | (np.isnan(g) & np.isnan(r)) | (g == r) \
            | (np.isfinite(g) & np.isfinite(r) & (np.abs(g - r) <= bound))
    assert np.all(ok), (g[~ok][:5], r[~ok][:5])


def close_exp(got, ref) -> None:
    same_type(got, ref)
    g, r = np.ravel(got), np.ravel(ref)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
    fin = np.isfinite(r)
    special = ~fin & ~np.isnan(r)
    np.testing.assert_array_equal(g[special], r[special])
    assert ulp_distance(g[fin], r[fin]).max(initial=0) <= 4


def compare(ours, theirs, check) -> None:
    """Run both; the same exception class, or ``check(got, ref)``."""
    ok_r, ref = outcome(theirs)
    ok_g, got = outcome(ours)
    if not ok_r:
        assert not ok_g, f"NumPy raised {ref!r}, breakeven returned {got!r}"
        assert type(got) is type(ref), f"breakeven raised {got!r}, NumPy {ref!r}"
        return
    assert ok_g, f"breakeven raised {got!r}, NumPy returned a result"
    check(got, ref)


def run(state, ctl, body) -> None:
    """One example: set the dispatch state, run ``body`` under the thread
    control, check that nothing was left behind."""
    EXAMPLES["count"] += 1
    set_state(state)
    try:
        body(ctl)
        assert_clean_state()
    finally:
        testing.reset()


FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
states = st.sampled_from(STATES)
controls = st.sampled_from(CONTROLS)


# ---------------------------------------------------------------------------
# the drop-ins
# ---------------------------------------------------------------------------

SUM_OPTIONS = st.fixed_dictionaries({}, optional={
    "axis": st.sampled_from([None, 0, -1, 1, 3, (0, 1), 1.5]),
    "dtype": st.sampled_from([None, np.float32, np.float64, np.int64, "f8"]),
    "keepdims": st.booleans(),
    "initial": st.sampled_from([0.0, 5, np.float32(1.5)]),
    "where": st.just("mask"),
    "out": st.just("out"),
})


@FUZZ
@given(spec=array_specs(), opts=SUM_OPTIONS, state=states, ctl=controls,
       as_list=st.booleans())
def test_sum(spec, opts, state, ctl, as_list):
    def args():
        a = build(spec)
        kw = dict(opts)
        if kw.get("where") == "mask":
            kw["where"] = np.asarray(a).real > 0 if a.dtype != object else True
        if kw.get("out") == "out":
            kw["out"] = np.zeros(())
        return (a.tolist() if as_list and a.size < 100 else a), kw

    def body(ctl):
        a, kw = args()
        a2, kw2 = args()
        kernel = kernel_took(be.sum, a, **kw)

        def check(got, ref):
            if kernel:
                same_type(got, ref)
                close_sums(got, ref, np.asarray(a, np.float64).ravel(), a.dtype)
            else:
                exact(got, ref)

        with thread_control(ctl):
            compare(lambda: be.sum(a, **kw), lambda: np.sum(a2, **kw2), check)
    run(state, ctl, body)


@FUZZ
@given(a=array_specs(max_dims=2), b=array_specs(max_dims=2), same=st.booleans(),
       out=st.sampled_from([None, None, None, "scalar", "wrong"]),
       state=states, ctl=controls)
def test_dot(a, b, same, out, state, ctl):
    if same:  # mostly one shape and dtype: the kernel's inputs
        b = (a[0], a[1]) + b[2:]

    def args():
        x, y = build(a), build(b)
        kw = {}
        if out == "scalar":
            kw["out"] = np.zeros(())
        elif out == "wrong":
            kw["out"] = np.zeros(3, np.float32)
        return x, y, kw

    def body(ctl):
        x, y, kw = args()
        x2, y2, kw2 = args()
        kernel = kernel_took(be.dot, x, y, **kw)

        def check(got, ref):
            if kernel:
                same_type(got, ref)
                with np.errstate(over="ignore"):
                    terms = x.astype(np.float64) * y.astype(np.float64)
                close_sums(got, ref, terms, x.dtype)
            else:
                exact(got, ref)

        with thread_control(ctl):
            compare(lambda: be.dot(x, y, **kw), lambda: np.dot(x2, y2, **kw2), check)
    run(state, ctl, body)


A_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
    st.sampled_from([True, np.float32(0.5), np.float64(-2.5), np.int64(3),
                     np.float16(1.5), 1 + 2j, None, "2", [1.0]]))


@FUZZ
@given(a=A_VALUES, x=array_specs(), y=array_specs(),
       relation=st.sampled_from(["same shape", "same shape", "same shape",
                                 "independent", "x is y", "overlap", "row"]),
       state=states, ctl=controls)
def test_axpy(a, x, y, relation, state, ctl):
    if relation != "independent":
        y = (x[0] if relation != "row" else y[0], x[1]) + y[2:]

    def args():
        xs, ys = build(x), build(y)
        if relation == "x is y":
            xs = ys
        elif relation == "overlap" and ys.ndim == 1 and ys.size > 1 \
                and ys.flags.writeable:
            xs, ys = ys[:-1], ys[1:]
        elif relation == "row" and xs.ndim >= 1:
            xs = xs.reshape(-1)[: ys.shape[-1]] if ys.ndim else xs
        return xs, ys

    def reference(xs, ys):
        ys += a * xs
        return ys

    def body(ctl):
        xs, ys = args()
        xs2, ys2 = args()

        def check(got, ref):
            assert got is ys
            exact(got, ref)

        with thread_control(ctl):
            compare(lambda: be.axpy(a, xs, ys), lambda: reference(xs2, ys2), check)
    run(state, ctl, body)


EXP_OUT = st.sampled_from([None, None, "same", "same", "tuple", "x itself",
                           "wrong shape", "float32", "float64", "int", "readonly",
                           "strided", "overlap", "list"])


@FUZZ
@given(spec=array_specs(), out=EXP_OUT,
       kw=st.fixed_dictionaries({}, optional={
           "where": st.just("mask"), "dtype": st.sampled_from([np.float32, None]),
           "casting": st.sampled_from(["unsafe", "no"])}),
       scalar=st.sampled_from([None, None, None, 1.5, np.float32(-3.0), 2, "x"]),
       state=states, ctl=controls)
def test_exp(spec, out, kw, scalar, state, ctl):
    def args():
        x = build(spec) if scalar is None else scalar
        xa = np.asarray(x)
        o = None
        if out == "same":
            o = np.zeros_like(xa)
        elif out == "tuple":
            o = (np.zeros_like(xa),)
        elif out == "x itself":
            o = x
        elif out == "wrong shape":
            o = np.zeros(xa.shape + (2,), xa.dtype)
        elif out in ("float32", "float64", "int"):
            o = np.zeros(xa.shape, {"float32": np.float32, "float64": np.float64,
                                    "int": np.int64}[out])
        elif out == "readonly":
            o = np.zeros_like(xa)
            o.flags.writeable = False
        elif out == "strided":
            o = np.zeros(xa.shape + (2,), xa.dtype)[..., 0]
        elif out == "overlap" and xa.ndim == 1 and xa.size > 1 and \
                isinstance(x, np.ndarray) and x.flags.writeable:
            o = x[1:]
            x = x[:-1]
        elif out == "list":
            o = [0.0]
        k = dict(kw)
        if k.get("where") == "mask":
            k["where"] = xa.real > 0 if xa.dtype.kind in "fiubc" else True
        return x, o, k

    def body(ctl):
        x, o, k = args()
        x2, o2, k2 = args()
        kernel = kernel_took(be.exp, x, o, **k)

        def check(got, ref):
            if isinstance(o2, np.ndarray):
                assert (got is o) == (ref is o2)
            elif isinstance(o2, tuple):
                assert (got is o[0]) == (ref is o2[0])
            mask = k2.get("where")
            if o2 is None and mask is not None:
                # without out, NumPy leaves the unselected elements unset
                mask = np.broadcast_to(mask, np.shape(ref))
                got, ref = np.asarray(got)[mask], np.asarray(ref)[mask]
            if kernel:
                close_exp(got, ref)
            else:
                exact(got, ref)

        with thread_control(ctl):
            # out by keyword: a positional tuple is refused by NumPy only
            # (see test_reliability.py::test_exp_positional_out_tuple)
            compare(lambda: be.exp(x, out=o, **k), lambda: np.exp(x2, out=o2, **k2),
                    check)
    run(state, ctl, body)


@FUZZ
@given(spec=array_specs(),
       axis=st.sampled_from([None, None, None, 0, -1, 1, 2, 3, -4, 0.0, "0"]),
       dtype=st.sampled_from([None, None, None, np.float32, np.float64, np.int32]),
       out=st.sampled_from([None, None, "right", "x itself", "wrong size", "int",
                            "2-D", "readonly", "strided"]),
       state=states, ctl=controls)
def test_cumsum(spec, axis, dtype, out, state, ctl):
    def args():
        a = build(spec)
        if out is None:
            return a, None
        try:
            shape = np.cumsum(np.zeros(a.shape), axis=axis).shape
        except Exception:
            shape = (a.size,)
        o = {"right": lambda: np.zeros(shape, dtype or a.dtype),
             "x itself": lambda: a,
             "wrong size": lambda: np.zeros(a.size + 1, a.dtype),
             "int": lambda: np.zeros(shape, np.int64),
             "2-D": lambda: np.zeros((1, a.size), a.dtype),
             "readonly": lambda: np.broadcast_to(np.zeros(1, a.dtype), shape),
             "strided": lambda: np.zeros((a.size, 2), a.dtype)[:, 0],
             }[out]()
        return a, o

    def body(ctl):
        a, o = args()
        a2, o2 = args()
        kernel = kernel_took(be.cumsum, a, axis, dtype, o)

        def check(got, ref):
            assert (got is o) == (ref is o2)
            if kernel:
                same_type(got, ref)
                close_sums(got, ref, np.asarray(a2 if o2 is not a2 else build(spec),
                                                np.float64).ravel(), a.dtype,
                           running=True)
            else:
                exact(got, ref)

        with thread_control(ctl):
            compare(lambda: be.cumsum(a, axis, dtype, o),
                    lambda: np.cumsum(a2, axis, dtype, o2), check)
    run(state, ctl, body)


BINS = st.one_of(st.integers(-2, 300), st.sampled_from(
    [10, np.int64(7), np.int32(3), True, 3.0, "auto", "sturges", [0.0, 0.5, 1.0],
     [1.0, 0.0], [], np.ones((2, 2)), None]))
RANGES = st.one_of(
    st.none(), st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)),
    st.sampled_from([(-1.0, 1.0), (-1, 1), (0, 0), (1.0, 1.0), (2.0, 1.0),
                     (np.float32(-1), np.float32(1)), (np.float64(-2), 2.0),
                     (0.0, np.inf), (np.nan, 1.0), [-1.0, 1.0], (1.0,),
                     (0.0, 1.0, 2.0), ("a", "b"), (-1e308, 1e308), (1e16, 1e16)]))


@FUZZ
@given(spec=array_specs(), bins=BINS, rng_=RANGES,
       density=st.sampled_from([None, None, False, True]),
       weights=st.booleans(), state=states, ctl=controls)
def test_histogram(spec, bins, rng_, density, weights, state, ctl):
    if weights and spec[2] == "huge":  # NumPy's own weighted sum overflows
        weights = False

    def args():
        a = build(spec)
        kw = {}
        if density is not None:
            kw["density"] = density
        if weights:
            kw["weights"] = np.ones(a.shape)
        return a, kw

    def body(ctl):
        a, kw = args()
        a2, kw2 = args()
        with thread_control(ctl):
            compare(lambda: be.histogram(a, bins, rng_, **kw),
                    lambda: np.histogram(a2, bins, rng_, **kw2), exact)
    run(state, ctl, body)


def nearest_numpy(X, C):
    """The documented semantics: argmin over |x|^2 - 2 X C^T + |c|^2."""
    X, C = np.asarray(X), np.asarray(C)
    if X.ndim != 2 or C.ndim != 2:
        raise ValueError("X and C must be 2-D")
    d = (X * X).sum(axis=1)[:, None] - 2 * (X @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


@st.composite
def nearest_specs(draw):
    n, m, d = draw(st.integers(0, 60)), draw(st.integers(0, 12)), \
        draw(st.integers(0, 9))
    shape_x, shape_c = (n, d), (m, d)
    how = draw(st.sampled_from(["match"] * 6 + ["columns", "1-D", "3-D"]))
    if how == "columns":
        shape_c = (m, d + 1)
    elif how == "1-D":
        shape_x = (n,)
    elif how == "3-D":
        shape_c = (1, m, d)
    return (draw(array_specs(shape=shape_x)), draw(array_specs(shape=shape_c)),
            draw(st.booleans()))


@FUZZ
@given(specs=nearest_specs(), as_list=st.booleans(), state=states, ctl=controls)
def test_nearest(specs, as_list, state, ctl):
    sx, sc, same_dtype = specs
    if same_dtype:
        sc = (sx[0],) + sc[1:]

    def args():
        X, C = build(sx), build(sc)
        if as_list and X.size < 200:
            X = X.tolist()
        return X, C

    def body(ctl):
        X, C = args()
        X2, C2 = args()

        def check(got, ref):
            same_type(got, ref)
            if np.array_equal(got, ref):
                return
            x, c = np.asarray(X2, np.float64), np.asarray(C2, np.float64)
            with np.errstate(all="ignore"):
                formula = (x * x).sum(1)[:, None] - 2 * (x @ c.T) \
                    + (c * c).sum(1)[None, :]
                true = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
            rows = np.arange(len(x))
            inputs = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(c))
            finite = np.all(np.isfinite(formula), axis=1) & \
                np.all(np.isfinite(true), axis=1)
            # NaN or inf in the data: NumPy's choice (the first NaN, else the
            # smallest), unless finite values are so large that squares or
            # products could overflow: then NaN and inf come from overflows,
            # and where a sum crosses the overflow threshold depends on its
            # rounding (the kernel's gemm and |c|^2, or NumPy's; and the
            # kernel does not add the row's own |x|^2): any index in range
            dt = np.asarray(X).dtype if np.asarray(X).dtype in FLOATS else np.float64
            big = np.maximum(np.where(np.isfinite(x), np.abs(x), 0).max(1, initial=0),
                             np.where(np.isfinite(c), np.abs(c), 0).max(initial=0))
            overflow = big > np.sqrt(float(np.finfo(dt).max) / (4 * x.shape[1] + 4))
            must_match = ~inputs & ~overflow
            np.testing.assert_array_equal(got[must_match], ref[must_match])
            assert np.all((got >= 0) & (got < len(c)))
            with np.errstate(over="ignore"):
                scale = (x * x).sum(1) + (c * c).sum(1).max(initial=0)
            tol = 64 * eps(dt) * (x.shape[1] + 1) * scale
            chosen, best = true[rows, got], true[rows, ref]
            assert np.all((chosen <= best + tol)[finite])

        with thread_control(ctl):
            compare(lambda: be.nearest(X, C), lambda: nearest_numpy(X2, C2), check)
    run(state, ctl, body)


# ---------------------------------------------------------------------------
# wrong argument counts and keywords; thread counts
# ---------------------------------------------------------------------------


def ref_axpy(a, x, y):
    y += a * x
    return y


PAIRS = {"sum": (be.sum, np.sum), "dot": (be.dot, np.dot),
         "axpy": (be.axpy, ref_axpy), "exp": (be.exp, np.exp),
         "cumsum": (be.cumsum, np.cumsum), "histogram": (be.histogram, np.histogram),
         "nearest": (be.nearest, nearest_numpy)}
JUNK = st.sampled_from([None, "abc", 1.5, 3, [1.0, 2.0], {"a": 1}, object(),
                        b"xy", (1, 2), np.ones(4), np.ones((2, 2)), np.ones(4)[::2],
                        np.float32(2.0), slice(1)])


@FUZZ
@given(name=st.sampled_from(sorted(PAIRS)), args=st.lists(JUNK, max_size=7),
       kwargs=st.dictionaries(st.sampled_from(["axis", "out", "bins", "foo", "x",
                                               "dtype", "where", "range",
                                               "keepdims", "initial", "density",
                                               "weights"]), JUNK,
                              max_size=2),
       state=states)
def test_junk_arguments(name, args, kwargs, state):
    ours, theirs = PAIRS[name]

    def copies():  # the arrays may be written to: one set each
        return ([a.copy() if isinstance(a, np.ndarray) else a for a in args],
                {k: v.copy() if isinstance(v, np.ndarray) else v
                 for k, v in kwargs.items()})

    if name == "exp" and len(args) > 1 and isinstance(args[1], tuple):
        return  # a positional out tuple: test_reliability.py, xfail
    def body(ctl):
        a1, k1 = copies()
        a2, k2 = copies()
        compare(lambda: ours(*a1, **k1), lambda: theirs(*a2, **k2),
                lambda got, ref: exact(got, ref) if name != "nearest" else None)
    run(state, None, body)


@FUZZ
@given(n=st.one_of(st.integers(-2**70, 2**70), st.integers(-3, 5),
                   st.sampled_from([2**31 - 1, 2**31, 2**63, 10**30, True, 2.0,
                                    None, "2", np.int64(2)])),
       exact_=st.booleans(), section=st.booleans(), state=states)
def test_thread_counts(n, exact_, section, state):
    """threads(n): n < 1 is a ValueError, a non-integer a TypeError, and any
    positive count, however large, works (clamped to the usable CPUs)."""
    x = np.linspace(-1.0, 1.0, 5000)
    ref = np.sum(x)

    def body(ctl):
        valid = isinstance(n, int) and not isinstance(n, bool) or \
            (section and n is None)
        if not valid or (n is not None and n < 1):
            with pytest.raises(TypeError if not valid else ValueError):
                with be.threads(n, exact=exact_):
                    pass
            if section:
                with pytest.raises(TypeError if not valid else ValueError):
                    with be.section(n):
                        pass
            return
        ctx = be.section(n) if section else be.threads(n, exact=exact_)
        with ctx:
            d = be.explain(be.sum, x)
            assert 1 <= d.threads <= CPUS
            close_sums(be.sum(x), ref, x, x.dtype)
            np.testing.assert_array_equal(be.histogram(x, 7, (-1.0, 1.0))[0],
                                          np.histogram(x, 7, (-1.0, 1.0))[0])
    run(state, None, body)
