"""The kernel registry: one record per operation, with both its variants.

A :class:`Kernel` says how to call the serial and the parallel variant, what
NumPy computes the same thing with, how big a call is (``work``, the measure
thresholds are expressed in), and how to make inputs of a given work for
timing (``sample``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from breakeven import _elementwise, _histogram, _nearest, _reductions, _scan

__all__ = ["Kernel", "KERNELS", "get_kernel", "register"]

DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@dataclass(frozen=True)
class Kernel:
    """A serial/parallel pair and what is needed to time and check it.

    :func:`breakeven.kernel` makes and registers one for a kernel of yours;
    :func:`breakeven.get_kernel` returns a registered one.  The parameters
    are also its attributes.

    Parameters
    ----------
    name : str
        The operation's name (``"sum"``).
    serial : callable
        ``serial(*args)``.
    parallel : callable
        ``parallel(*args, n_threads)``.
    reference : callable
        ``reference(*args)``: NumPy computing the same result.
    work : callable
        ``work(*args) -> int``: the size of a call (elements; ``n*m*d`` for
        pairwise kernels).
    sample : callable
        ``sample(work, dtype, rng) -> tuple``: arguments of about that work.
    uses_blas : bool
        Whether the kernel calls BLAS (its parallel variant needs BLAS capped
        to one thread).
    dtypes : tuple of numpy.dtype
        The dtypes the kernel takes.

    See Also
    --------
    kernel : Register a kernel of yours and dispatch it.
    get_kernel : A registered kernel by name.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> k = breakeven.get_kernel("dot")
    >>> x = np.arange(4.0)
    >>> float(k.serial(x, x)), float(k.parallel(x, x, 2)), k.work(x, x)
    (14.0, 14.0, 4)
    >>> k.uses_blas, breakeven.get_kernel("nearest").uses_blas
    (False, True)
    """

    name: str
    serial: Callable
    parallel: Callable
    reference: Callable
    work: Callable[..., int]
    sample: Callable[..., tuple]
    uses_blas: bool = False
    dtypes: tuple = DTYPES


def _vec(work, dtype, rng, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=max(1, int(work))).astype(dtype)


def _len_work(x, *rest):
    return int(np.shape(x)[0])


def _sample_sum(work, dtype, rng):
    return (_vec(work, dtype, rng),)


def _sample_dot(work, dtype, rng):
    return (_vec(work, dtype, rng), _vec(work, dtype, rng))


def _sample_axpy(work, dtype, rng):
    return (0.5, _vec(work, dtype, rng), _vec(work, dtype, rng))


def _sample_exp(work, dtype, rng):
    x = _vec(work, dtype, rng, -10.0, 10.0)
    return (x, np.empty_like(x))


def _sample_cumsum(work, dtype, rng):
    x = _vec(work, dtype, rng)
    return (x, np.empty_like(x))


def _sample_histogram(work, dtype, rng):
    return (_vec(work, dtype, rng), 64, -1.0, 1.0)


# nearest: samples have this many centres and features; work = n * m * d.
NEAREST_M = 32
NEAREST_D = 16


def _sample_nearest(work, dtype, rng):
    n = max(1, int(work) // (NEAREST_M * NEAREST_D))
    X = rng.standard_normal((n, NEAREST_D)).astype(dtype)
    C = rng.standard_normal((NEAREST_M, NEAREST_D)).astype(dtype)
    return (X, C)


def _nearest_work(X, C):
    return int(X.shape[0]) * int(C.shape[0]) * int(X.shape[1])


def _nearest_reference(X, C):
    """The NumPy formulation: argmin(|x|^2 - 2 X C^T + |c|^2)."""
    d = (X * X).sum(axis=1)[:, None] - 2 * (X @ C.T) + (C * C).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


def _axpy_reference(a, x, y):
    y += a * x


def _exp_reference(x, out):
    np.exp(x, out=out)


def _cumsum_reference(x, out):
    np.cumsum(x, out=out)


def _histogram_reference(x, bins, lo, hi):
    return np.histogram(x, bins, (lo, hi))


KERNELS: dict[str, Kernel] = {}


def register(kernel: Kernel) -> Kernel:
    """Add a kernel to the registry (replacing one of the same name)."""
    if not isinstance(kernel, Kernel):
        raise TypeError(f"expected a Kernel, got {type(kernel).__name__}")
    KERNELS[kernel.name] = kernel
    return kernel


def get_kernel(name: str) -> Kernel:
    """The registered kernel called ``name``.

    Parameters
    ----------
    name : str
        A built-in kernel (``"sum"``, ``"dot"``, ``"axpy"``, ``"exp"``,
        ``"cumsum"``, ``"histogram"``, ``"nearest"``) or one registered with
        :func:`breakeven.kernel`.

    Returns
    -------
    Kernel
        Its serial and parallel variants, work and sample functions.

    Raises
    ------
    KeyError
        If no kernel has that name; the message lists the known ones.

    See Also
    --------
    KERNELS : The registry itself.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> k = breakeven.get_kernel("sum")
    >>> x = np.random.default_rng(0).standard_normal(100_000)
    >>> bool(k.serial(x) == k.parallel(x, 2))     # the same bits
    True
    """
    try:
        return KERNELS[name]
    except KeyError:
        known = ", ".join(sorted(KERNELS))
        raise KeyError(f"no kernel named {name!r}; known kernels: {known}") from None


for _k in (
    Kernel("sum", _reductions.sum_serial, _reductions.sum_parallel, np.sum,
           _len_work, _sample_sum),
    Kernel("dot", _reductions.dot_serial, _reductions.dot_parallel, np.dot,
           _len_work, _sample_dot),
    Kernel("axpy", _elementwise.axpy_serial, _elementwise.axpy_parallel,
           _axpy_reference, lambda a, x, y: int(np.shape(x)[0]), _sample_axpy),
    Kernel("exp", _elementwise.exp_serial, _elementwise.exp_parallel,
           _exp_reference, _len_work, _sample_exp),
    Kernel("cumsum", _scan.cumsum_serial, _scan.cumsum_parallel,
           _cumsum_reference, _len_work, _sample_cumsum),
    Kernel("histogram", _histogram.histogram_serial, _histogram.histogram_parallel,
           _histogram_reference, _len_work, _sample_histogram),
    Kernel("nearest", _nearest.nearest_serial, _nearest.nearest_parallel,
           _nearest_reference, _nearest_work, _sample_nearest, uses_blas=True),
):
    register(_k)
del _k
# The built-ins as registered at import (a user kernel may take a name over).
BUILTINS: dict[str, Kernel] = dict(KERNELS)
