"""The drop-in functions: NumPy's signatures, the calibrated kernels inside.

Each function first plans the call: if its inputs are what a kernel takes
(float32/float64 ndarrays, contiguous, no options the kernel lacks), the plan
names the kernel, the dtype, the work and the kernel's arguments; dispatch
then picks serial or parallel.  Anything else (other dtypes, axes, strided
views, subclasses, ``out`` arrays of another type, invalid input) goes to
NumPy itself, so the result, and any error, is NumPy's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from breakeven import _dispatch, _fast
from breakeven._dispatch import Decision
from breakeven._registry import KERNELS, Kernel, register

__all__ = ["axpy", "cumsum", "dot", "exp", "explain", "histogram", "kernel",
           "nearest", "sum"]

_FLOATS = {np.dtype(np.float64): "float64", np.dtype(np.float32): "float32"}
_NoValue = np._NoValue


def _Plan(kernel: Kernel, dtype: str, work: int, args: tuple,
          finish: Callable | None = None, kwargs: dict | None = None) -> tuple:
    """A call a kernel can take: (kernel, dtype, work, args, finish, kwargs),
    ``finish`` turning the kernel's result into the return value.  A plain
    tuple: this is on every call's path, and a dataclass costs a microsecond."""
    return (kernel, dtype, work, args, finish, kwargs)


def _flat(a) -> np.ndarray | None:
    """A 1-D view of a C-contiguous float32/float64 ndarray, else None."""
    if type(a) is not np.ndarray or a.dtype not in _FLOATS or a.ndim == 0 \
            or not a.flags.c_contiguous:
        return None
    return a if a.ndim == 1 else a.reshape(-1)


def _writable_out(out, shape, dtype, *inputs) -> bool:
    """``out`` can take a kernel's result: an exact ndarray of that shape and
    dtype, C-contiguous, writeable, and either one of the inputs itself or
    not overlapping them."""
    return (type(out) is np.ndarray and out.shape == shape and out.dtype == dtype
            and out.flags.c_contiguous and out.flags.writeable
            and all(out is x or not np.may_share_memory(out, x) for x in inputs))


def _execute(plan):
    kernel, dtype, work, args, finish, kwargs = plan
    result = _dispatch.run(kernel, dtype, work, args, kwargs)
    return finish(result) if finish is not None else result


def _explain_plan(plan, name: str = "") -> Decision:
    if isinstance(plan, str):
        return Decision("numpy", 1, 0, plan, name)
    kernel, dtype, work = plan[:3]
    return _dispatch.decide(kernel.name, dtype, work, kernel.uses_blas,
                            explain=True)


# ---------------------------------------------------------------------------
# sum
# ---------------------------------------------------------------------------


def _plan_sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue,
              initial=_NoValue, where=_NoValue):
    if axis is not None or dtype is not None or out is not None \
            or not (keepdims is _NoValue or keepdims is False) \
            or initial is not _NoValue \
            or where is not _NoValue:
        return "axis, dtype, out, keepdims, initial or where given"
    x = _flat(a)
    if x is None:
        return "not a contiguous float32/float64 ndarray"
    return _Plan(KERNELS["sum"], _FLOATS[x.dtype], x.size, (x,), x.dtype.type)


def _sum_slow(a, axis=None, dtype=None, out=None, keepdims=_NoValue,
              initial=_NoValue, where=_NoValue):
    """sum's path for whatever the C fast path (``_fast.sum``) passes on."""
    plan = _plan_sum(a, axis, dtype, out, keepdims, initial, where)
    if isinstance(plan, str):
        kw = {k: v for k, v in (("keepdims", keepdims), ("initial", initial),
                                ("where", where)) if v is not _NoValue}
        return np.sum(a, axis=axis, dtype=dtype, out=out, **kw)
    return _execute(plan)


sum = _fast.sum


# ---------------------------------------------------------------------------
# dot
# ---------------------------------------------------------------------------


def _plan_dot(a, b, out=None):
    if out is not None:
        return "out given"
    x, y = _flat(a), _flat(b)
    if x is None or y is None or a.ndim != 1 or b.ndim != 1:
        return "not two contiguous 1-D float32/float64 ndarrays"
    if x.dtype != y.dtype or x.size != y.size:
        return "dtypes or lengths differ"
    return _Plan(KERNELS["dot"], _FLOATS[x.dtype], x.size, (x, y), x.dtype.type)


def dot(a, b, out=None):
    """Dot product, as :func:`numpy.dot`.

    Two contiguous 1-D arrays of the same float dtype run the calibrated
    kernel (bit-identical for every thread count); anything else is
    ``numpy.dot``.

    Parameters
    ----------
    a, b : array_like
    out : ndarray, optional
        As in :func:`numpy.dot` (sends the call to NumPy).

    Returns
    -------
    numpy scalar or ndarray
        As :func:`numpy.dot` returns.

    Raises
    ------
    ValueError
        If the shapes are not aligned (NumPy's error).

    See Also
    --------
    numpy.dot
    explain : Which kernel and how many threads a call would get.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> float(breakeven.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    11.0
    """
    plan = _plan_dot(a, b, out)
    if isinstance(plan, str):
        return np.dot(a, b, out=out) if out is not None else np.dot(a, b)
    return _execute(plan)


# ---------------------------------------------------------------------------
# axpy
# ---------------------------------------------------------------------------


def _plan_axpy(a, x, y):
    xs, ys = _flat(x), _flat(y)
    if xs is None or ys is None or x.shape != y.shape or xs.dtype != ys.dtype:
        return "not two contiguous float32/float64 ndarrays of one shape and dtype"
    if not y.flags.writeable:
        return "y is read-only"
    if x is not y and np.may_share_memory(x, y):
        return "x and y overlap"
    # A Python number is cast to the arrays' dtype, as NumPy does; a NumPy
    # scalar of another dtype would promote: leave that to NumPy.
    if isinstance(a, np.generic):
        if a.dtype != xs.dtype:
            return "a is a NumPy scalar of another dtype"
    elif not isinstance(a, numbers.Real) or isinstance(a, bool):
        return "a is not a real number"
    return _Plan(KERNELS["axpy"], _FLOATS[xs.dtype], xs.size, (float(a), xs, ys),
                 lambda _: y)


def axpy(a, x, y):
    """``y += a * x`` in place, and return ``y``.

    Bit for bit what NumPy's ``y += a * x`` computes (two roundings, no fused
    multiply-add), without its temporary array.  Inputs the kernel does not
    take are handed to NumPy as ``y += a * x``.

    Parameters
    ----------
    a : float
        Scale.
    x : ndarray
        Input.
    y : ndarray
        Updated in place.

    Returns
    -------
    ndarray
        ``y``.

    Raises
    ------
    ValueError
        If ``x`` does not broadcast to ``y`` (NumPy's error).

    See Also
    --------
    exp, explain

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> y = np.ones(3)
    >>> breakeven.axpy(2.0, np.arange(3.0), y)
    array([1., 3., 5.])
    """
    plan = _plan_axpy(a, x, y)
    if isinstance(plan, str):
        y += a * x
        return y
    return _execute(plan)


# ---------------------------------------------------------------------------
# exp
# ---------------------------------------------------------------------------


def _plan_exp(x, out=None, **kwargs):
    if kwargs:
        return f"ufunc keyword(s) {', '.join(sorted(kwargs))} given"
    if isinstance(out, tuple):
        if len(out) != 1:
            return "out is not a single array"
        out = out[0]
    xs = _flat(x)
    if xs is None:
        return "not a contiguous float32/float64 ndarray of at least one dimension"
    if out is None:
        res = np.empty_like(x)
    elif _writable_out(out, x.shape, x.dtype, x):
        res = out
    else:
        return "out is not a contiguous writeable array of x's shape and dtype"
    return _Plan(KERNELS["exp"], _FLOATS[xs.dtype], xs.size,
                 (xs, res.reshape(-1)), lambda overflow: _exp_done(overflow, res))


def _exp_done(overflow, res):
    if overflow:  # as NumPy does, by np.errstate / np.seterr
        _fp_error("overflow", "exp")
    return res


def exp(x, out=None, **kwargs):
    """Exponential, element-wise, as :func:`numpy.exp`.

    A contiguous float32/float64 array runs the calibrated, vectorised kernel:
    within 4 ulp of ``numpy.exp`` over the whole range, with NaN, inf,
    overflow and subnormal results as NumPy gives them, and an overflow
    reported as NumPy reports it (a ``RuntimeWarning``, or as
    ``np.errstate`` says).  Anything else, including any other ufunc
    keyword, is ``numpy.exp``.

    Parameters
    ----------
    x : array_like
    out : ndarray, optional
        Where to write the result (may be ``x`` itself).
    **kwargs
        Other :class:`numpy.ufunc` keywords (send the call to NumPy).

    Returns
    -------
    ndarray or numpy scalar
        As :func:`numpy.exp` returns (``out`` if given).

    Raises
    ------
    TypeError
        For input NumPy's ``exp`` does not take (NumPy's error).

    See Also
    --------
    numpy.exp
    explain : Which kernel and how many threads a call would get.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> breakeven.exp(np.array([0.0, 1.0]))
    array([1.        , 2.71828183])
    """
    plan = _plan_exp(x, out, **kwargs)
    if isinstance(plan, str):
        return np.exp(x, out=out, **kwargs) if out is not None \
            else np.exp(x, **kwargs)
    return _execute(plan)


# ---------------------------------------------------------------------------
# cumsum
# ---------------------------------------------------------------------------


def _plan_cumsum(a, axis=None, dtype=None, out=None):
    xs = _flat(a)
    if xs is None:
        return "not a contiguous float32/float64 ndarray"
    if dtype is not None:
        return "dtype given"
    # exactly an int: NumPy refuses 0.0 and False, and an array's == is no test
    if not (axis is None or (a.ndim == 1 and type(axis) is int
                             and axis in (0, -1))):
        return "an axis of a multi-dimensional array"
    if out is None:
        res = np.empty(xs.size, dtype=xs.dtype)
    elif _writable_out(out, (xs.size,), xs.dtype, a):
        res = out
    else:
        return "out is not a contiguous writeable 1-D array of the right size"
    return _Plan(KERNELS["cumsum"], _FLOATS[xs.dtype], xs.size, (xs, res),
                 lambda _: res)


def cumsum(a, axis=None, dtype=None, out=None):
    """Cumulative sum, as :func:`numpy.cumsum`.

    A contiguous float32/float64 array (flattened, or 1-D along its axis)
    runs the calibrated blocked scan: the same result for every thread
    count, and more accurate than NumPy's running sum (within a pairwise
    error bound of the exact sums).  Anything else is ``numpy.cumsum``.

    Parameters
    ----------
    a : array_like
    axis, dtype, out
        As in :func:`numpy.cumsum`.

    Returns
    -------
    ndarray
        The running sums (``out`` if given).

    Raises
    ------
    numpy.exceptions.AxisError
        For an axis the array does not have (NumPy's error).

    See Also
    --------
    numpy.cumsum
    sum : The total, with the same summation order within blocks.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> breakeven.cumsum(np.array([1.0, 2.0, 3.0]))
    array([1., 3., 6.])
    """
    plan = _plan_cumsum(a, axis, dtype, out)
    if isinstance(plan, str):
        return np.cumsum(a, axis=axis, dtype=dtype, out=out)
    return _execute(plan)


# ---------------------------------------------------------------------------
# histogram
# ---------------------------------------------------------------------------


def _plain_number(v) -> bool:
    # exactly int or float: np.float64 subclasses float but is a strong type
    return type(v) in (int, float)


def _plan_histogram(a, bins=10, range=None, density=None, weights=None):
    xs = _flat(a)
    if xs is None:
        return "not a contiguous float32/float64 ndarray"
    if weights is not None or density:
        return "weights or density given"
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        return "bins is not a positive integer"
    if bins > 1 << 40:
        return "more bins than the kernel counts"
    in_dtype = False
    if range is None:
        if xs.size == 0:
            lo, hi = 0.0, 1.0
        else:
            # NumPy takes them as scalars of the data's dtype, and computes
            # the edges (and the widening of an empty range) in that dtype.
            lo_s, hi_s = xs.min(), xs.max()
            if not (np.isfinite(lo_s) and np.isfinite(hi_s)):
                return "the data's range is not finite"
            if lo_s == hi_s:
                lo_s, hi_s = lo_s - 0.5, hi_s + 0.5
            lo, hi, in_dtype = float(lo_s), float(hi_s), True
    else:
        try:
            lo, hi = range
        except (TypeError, ValueError):
            return "range is not a pair"
        # Python numbers are cast to the data's dtype as NumPy does; NumPy
        # scalars could promote float32 data: leave those to NumPy.
        if not (_plain_number(lo) and _plain_number(hi)) and xs.dtype != np.float64:
            return "range holds NumPy scalars"
        try:
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            return "range is not numeric"
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return "range is not finite or not increasing"
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    if not lo < hi:  # the widening was lost to rounding: NumPy's error
        return "the range is too narrow for the dtype"
    return _Plan(KERNELS["histogram"], _FLOATS[xs.dtype], xs.size,
                 (xs, int(bins), lo, hi), None, {"edges_in_dtype": in_dtype})


def histogram(a, bins=10, range=None, density=None, weights=None):
    """Histogram with equal-width bins, as :func:`numpy.histogram`.

    A float32/float64 array with an integer number of bins (no weights, no
    density) runs the calibrated kernel, with NumPy's edges and bin rule
    exactly: the counts and edges are NumPy's.  Anything else is
    ``numpy.histogram``.

    Parameters
    ----------
    a : array_like
    bins : int or sequence or str
    range : (float, float), optional
    density : bool, optional
    weights : array_like, optional
        As in :func:`numpy.histogram`.

    Returns
    -------
    counts : ndarray
        The number of values in each bin.
    edges : ndarray
        The ``bins + 1`` bin edges.

    Raises
    ------
    ValueError
        For a range that is not finite or not increasing, or data whose range
        is not finite (NumPy's errors).

    See Also
    --------
    numpy.histogram

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> counts, edges = breakeven.histogram(np.array([0.1, 0.4, 0.5, 0.9]), 2,
    ...                                     (0.0, 1.0))
    >>> counts
    array([2, 2])
    >>> edges
    array([0. , 0.5, 1. ])
    """
    plan = _plan_histogram(a, bins, range, density, weights)
    if isinstance(plan, str):
        return np.histogram(a, bins=bins, range=range, density=density,
                            weights=weights)
    return _execute(plan)


# ---------------------------------------------------------------------------
# nearest
# ---------------------------------------------------------------------------


def _plan_nearest(X, C):
    if not all(type(m) is np.ndarray and m.ndim == 2 and m.dtype in _FLOATS
               and m.flags.c_contiguous for m in (X, C)):
        return "not two C-contiguous 2-D float32/float64 ndarrays"
    if X.dtype != C.dtype:
        return "dtypes differ"
    if X.shape[1] != C.shape[1] or C.shape[0] == 0:
        return "shapes do not match"
    return _Plan(KERNELS["nearest"], _FLOATS[X.dtype],
                 X.shape[0] * C.shape[0] * X.shape[1], (X, C))


def _nearest_numpy(X, C):
    X, C = np.asarray(X), np.asarray(C)
    if X.ndim != 2 or C.ndim != 2:
        raise ValueError(f"X and C must be 2-D, got {X.ndim}-D and {C.ndim}-D")
    if X.shape[1] != C.shape[1]:
        raise ValueError("X and C must have the same number of columns, got "
                         f"{X.shape[1]} and {C.shape[1]}")
    if C.shape[0] == 0:
        raise ValueError("C must have at least one row")
    d = (X * X).sum(axis=1)[:, None] - 2 * (X @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


def nearest(X, C):
    """For each row of ``X``, the index of the nearest row of ``C``.

    Nearest by squared Euclidean distance, ties to the lowest index: the
    result of ``argmin(|x|^2 - 2 X C^T + |c|^2, axis=1)`` without the
    ``n x m`` temporary.  C-contiguous 2-D float arrays of one dtype run the
    calibrated kernel (BLAS ``gemm`` on row chunks, BLAS capped to one thread
    while the kernel runs in parallel); anything else is that NumPy formula.

    Parameters
    ----------
    X : array_like, shape (n, d)
    C : array_like, shape (m, d), m >= 1

    Returns
    -------
    ndarray of intp, shape (n,)

    Raises
    ------
    ValueError
        If X or C is not 2-D, their columns differ, or C has no row.

    See Also
    --------
    section : Holds BLAS at one thread once for a loop of calls.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> X = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> C = np.array([[4.0, 4.0], [1.0, 0.0]])
    >>> breakeven.nearest(X, C)
    array([1, 0])
    """
    plan = _plan_nearest(X, C)
    if isinstance(plan, str):
        return _nearest_numpy(X, C)
    return _execute(plan)


# ---------------------------------------------------------------------------
# explain and user kernels
# ---------------------------------------------------------------------------

# The C fast path (breakeven._fast) takes the calls it can run serially at
# once; it hands everything else to the Python functions above, whose
# docstrings it wears.
def _fp_error(kind: str, name: str) -> None:
    """A floating-point error of a kernel, handled as NumPy handles it in its
    own functions: by ``np.errstate`` / ``np.seterr`` (``kind`` "overflow",
    "underflow", "invalid" or "divide by zero")."""
    key = {"overflow": "over", "underflow": "under", "invalid": "invalid",
           "divide by zero": "divide"}[kind]
    mode = np.geterr()[key]
    if mode == "ignore":
        return
    msg = f"{kind} encountered in {name}"
    if mode == "warn":
        import os
        import sys
        import warnings

        # point the warning at the caller's line, outside this package
        here, frame, level = os.path.dirname(__file__), sys._getframe(1), 2
        while frame is not None and frame.f_code.co_filename.startswith(here):
            frame, level = frame.f_back, level + 1
        warnings.warn(msg, RuntimeWarning, stacklevel=level)
    elif mode == "raise":
        raise FloatingPointError(msg)
    elif mode == "call":
        flags = {"divide": 1, "over": 2, "under": 4, "invalid": 8}
        np.geterrcall()(kind, flags[key])
    elif mode == "print":
        print(f"Warning: {msg}")
    elif mode == "log":
        np.geterrcall().write(f"Warning: {msg}\n")


_fast.set_slow_paths(fp_error=_fp_error)
_fast.set_slow_paths(sum=_sum_slow, dot=dot, axpy=axpy, exp=exp, cumsum=cumsum,
                     histogram=histogram, nearest=nearest)
for _f in (dot, axpy, exp, cumsum, histogram, nearest):
    getattr(_fast, _f.__name__).__doc__ = _f.__doc__
_PLANNERS = {_fast.sum: _plan_sum, _fast.dot: _plan_dot, _fast.axpy: _plan_axpy,
             _fast.exp: _plan_exp, _fast.cumsum: _plan_cumsum,
             _fast.histogram: _plan_histogram, _fast.nearest: _plan_nearest}
dot, axpy, exp, cumsum = _fast.dot, _fast.axpy, _fast.exp, _fast.cumsum
histogram, nearest = _fast.histogram, _fast.nearest
del _f


def explain(func, *args, **kwargs) -> Decision:
    """What a dispatched function would do with these arguments, and why.

    Parameters
    ----------
    func : callable
        A breakeven function (``breakeven.sum``, ...) or a kernel of yours
        registered with :func:`kernel`.
    *args, **kwargs
        The call's arguments (nothing is computed).

    Returns
    -------
    Decision
        ``variant`` ("serial", "parallel" or "numpy"), ``threads``, ``work``
        and a ``reason`` in words.

    Raises
    ------
    TypeError
        If ``func`` is not a breakeven function.

    See Also
    --------
    threads, section
    Decision : The fields of the answer.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> breakeven.explain(breakeven.sum, [1, 2, 3]).variant
    'numpy'
    >>> with breakeven.threads(1):
    ...     print(breakeven.explain(breakeven.sum, np.ones(10**6)).variant)
    serial
    """
    explain_map = getattr(func, "_breakeven_explain", None)
    if explain_map is not None:  # breakeven.map
        return explain_map(*args, **kwargs)
    planner = _PLANNERS.get(func) or getattr(func, "_breakeven_planner", None)
    if planner is None:
        raise TypeError(f"{getattr(func, '__name__', func)!r} is not a breakeven "
                        "function")
    return _explain_plan(planner(*args, **kwargs), getattr(func, "__name__", ""))


def kernel(*, parallel, work, sample, name=None, uses_blas=False, reference=None,
           dtypes=("float64", "float32")):
    """Register a serial/parallel pair of your own and dispatch it.

    Decorates the serial variant; the returned function dispatches like the
    built-ins: the profile's threshold (after ``breakeven calibrate --module
    your.module``), the core budget, contention feedback, ``threads()`` and
    ``section()``, and BLAS capped if ``uses_blas``.

    Parameters
    ----------
    parallel : callable
        ``parallel(*args, n_threads)``.
    work : callable
        ``work(*args) -> int``: the size of a call.
    sample : callable
        ``sample(work, dtype, rng) -> tuple``: arguments of about that work,
        for calibration.
    name : str, optional
        Registry name (default: the function's name).
    uses_blas : bool
        Whether the kernel calls BLAS.
    reference : callable, optional
        A NumPy implementation, for tests and benchmarks.
    dtypes : tuple of str
        Dtypes to calibrate.

    Returns
    -------
    callable
        Dispatching function with the serial variant's signature; its
        :class:`~breakeven.Kernel` is its ``kernel`` attribute.  The profile
        entry is looked up by the dtype of the first array argument.

    Raises
    ------
    TypeError
        If ``dtypes`` names something that is not a dtype.

    See Also
    --------
    Kernel : The record registered.
    calibrate : Measure the kernel's thresholds.
    explain : The decision for a call of the returned function.

    Notes
    -----
    Register kernels before the first dispatched call of the process: the
    profile is loaded then, and a profile holding a kernel that is not
    registered is not used.  The "Writing your own kernels" guide builds a
    Cython kernel from source to calibrated dispatch.

    Examples
    --------
    Any two callables with these signatures will do; in practice both are
    compiled loops that release the GIL, the second a ``prange`` loop.

    >>> import numpy as np, breakeven
    >>> def twice_parallel(x, out, n_threads):
    ...     np.multiply(x, 2.0, out=out)
    >>> @breakeven.kernel(parallel=twice_parallel,
    ...                   work=lambda x, out: x.size,
    ...                   sample=lambda work, dtype, rng: (
    ...                       rng.random(work).astype(dtype),
    ...                       np.empty(work, dtype)))
    ... def twice(x, out):
    ...     np.multiply(x, 2.0, out=out)
    >>> out = np.empty(3)
    >>> twice(np.arange(3.0), out)
    >>> out
    array([0., 2., 4.])
    >>> breakeven.explain(twice, np.arange(3.0), out).kernel
    'twice'
    """
    def wrap(serial):
        k = Kernel(name or serial.__name__, serial, parallel, reference or serial,
                   work, sample, uses_blas, tuple(np.dtype(d) for d in dtypes))
        register(k)

        def plan(*args):
            dt = next((_FLOATS.get(a.dtype, "float64") for a in args
                       if isinstance(a, np.ndarray)), "float64")
            return _Plan(k, dt, int(work(*args)), args)

        def dispatched(*args):
            return _execute(plan(*args))

        dispatched.__name__ = serial.__name__
        dispatched.__qualname__ = getattr(serial, "__qualname__", serial.__name__)
        dispatched.__doc__ = serial.__doc__
        dispatched.__wrapped__ = serial
        dispatched.kernel = k
        dispatched._breakeven_planner = plan
        return dispatched
    return wrap
