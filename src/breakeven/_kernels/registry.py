"""The kernel registry: every kernel dispatch knows, by name and slot.

A :class:`Kernel` says how calibration calls it (``call``: the dispatched
function, timed at forced thread counts), how big a call is (``work``, the
measure thresholds are expressed in), how to make inputs of a given work
(``sample``), and, where it has them, its serial and parallel variants and
what NumPy computes the same thing with.  Registering a kernel gives it a
slot in the dispatch core (:mod:`breakeven._core.engine`); the seven built-ins are
simply the first registered.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from breakeven._core import engine
from breakeven._kernels import dropins, elementwise, reductions, scan
from breakeven._kernels import histogram as histogram_kernels
from breakeven._profile import EMBEDDED_DEFAULT, KERNEL_NAME

__all__ = ["Kernel", "KERNELS", "get_kernel", "register"]

DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


@dataclass(frozen=True)
class Kernel:
    """A kernel dispatch knows, and what is needed to time and check it.

    :func:`breakeven.register` and :func:`breakeven.kernel` make and
    register one for a kernel of yours; :func:`breakeven.get_kernel` returns
    a registered one.  The parameters are also its attributes.

    Parameters
    ----------
    name : str
        The kernel's name: ``"sum"`` for a built-in, name-spaced for others
        (``"mylib.relu"``).
    serial : callable or None
        ``serial(*args)``: the serial variant, if the kernel has one of its
        own.
    parallel : callable or None
        ``parallel(*args, n_threads)``: the parallel variant, if any.
    reference : callable or None
        ``reference(*args)``: NumPy computing the same result.
    work : callable
        ``work(*args) -> int``: the size of a call (elements; ``n*m*d`` for
        pairwise kernels).
    sample : callable
        ``sample(work, dtype, rng) -> tuple``: arguments of about that work.
    uses_blas : bool
        Whether the kernel calls BLAS (dispatch holds BLAS at one thread
        while it runs in parallel).
    dtypes : tuple of numpy.dtype
        The dtypes the kernel takes (and calibration measures).
    call : callable or None
        ``call(*args)``: the dispatched function, as users call it with the
        arguments ``sample`` makes; calibration times it under
        :func:`breakeven.threads` ``(n, exact=True)``.
    slot : int
        Its number in the dispatch core (``-1`` until registered); the
        ``kernel`` argument of ``begin()`` in the Cython API.
    defaults : path-like or None
        A profile file the kernel's library ships, with the kernel's tables
        on the library's reference hosts: used on a host that has not
        calibrated the kernel, from the entry of a similar host.

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
    call: Callable | None = None
    slot: int = -1
    defaults: os.PathLike | object | None = None


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


class _Later:
    """A kernel variant of a module imported at its first call (nearest's:
    its module loads SciPy, for SciPy's BLAS)."""

    def __init__(self, module: str, name: str):
        self.module, self.name, self.function = module, name, None

    def __call__(self, *args):
        if self.function is None:
            self.function = getattr(importlib.import_module(self.module), self.name)
        return self.function(*args)

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name}>"


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
# Called with each Kernel registered (dispatch gives it its tables).
_listeners: list[Callable[[Kernel], None]] = []


def register(kernel: Kernel) -> Kernel:
    """Add a kernel to the registry, replacing one of the same name (which
    keeps its slot), and return it with its slot."""
    if not isinstance(kernel, Kernel):
        raise TypeError(f"expected a Kernel, got {type(kernel).__name__}")
    if not isinstance(kernel.name, str) or not KERNEL_NAME.match(kernel.name):
        raise ValueError(f"a kernel name is letters, digits, '_', '.' and '-', "
                         f"not starting with a digit: got {kernel.name!r}")
    slot = engine.add_slot(kernel.name, bool(kernel.uses_blas))
    kernel = dataclasses.replace(kernel, slot=slot)
    KERNELS[kernel.name] = kernel
    for listener in _listeners:
        listener(kernel)
    return kernel


def by_slot(slot: int) -> Kernel | None:
    """The registered kernel in this slot."""
    return KERNELS.get(engine.slot_name(slot))


def by_call(func) -> Kernel | None:
    """The registered kernel whose dispatched function is ``func``."""
    k = getattr(func, "kernel", None)
    if isinstance(k, Kernel) and k.call is func:
        return k
    return next((k for k in KERNELS.values() if k.call is func), None)


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


_BUILTINS = tuple(dataclasses.replace(k, defaults=EMBEDDED_DEFAULT) for k in (
    Kernel("sum", reductions.sum_serial, reductions.sum_parallel, np.sum,
           _len_work, _sample_sum, call=lambda x: dropins.sum(x)),
    Kernel("dot", reductions.dot_serial, reductions.dot_parallel, np.dot,
           _len_work, _sample_dot, call=lambda x, y: dropins.dot(x, y)),
    Kernel("axpy", elementwise.axpy_serial, elementwise.axpy_parallel,
           _axpy_reference, lambda a, x, y: int(np.shape(x)[0]), _sample_axpy,
           call=lambda a, x, y: dropins.axpy(a, x, y)),
    Kernel("exp", elementwise.exp_serial, elementwise.exp_parallel,
           _exp_reference, _len_work, _sample_exp,
           call=lambda x, out: dropins.exp(x, out)),
    Kernel("cumsum", scan.cumsum_serial, scan.cumsum_parallel,
           _cumsum_reference, _len_work, _sample_cumsum,
           call=lambda x, out: dropins.cumsum(x, out=out)),
    Kernel("histogram", histogram_kernels.histogram_serial,
           histogram_kernels.histogram_parallel,
           _histogram_reference, _len_work, _sample_histogram,
           call=lambda x, bins, lo, hi: dropins.histogram(x, bins, (lo, hi))),
    Kernel("nearest", _Later("breakeven._kernels.nearest", "nearest_serial"),
           _Later("breakeven._kernels.nearest", "nearest_parallel"),
           _nearest_reference, _nearest_work, _sample_nearest, uses_blas=True,
           call=lambda X, C: dropins.nearest(X, C)),
))
for _k in _BUILTINS:
    register(_k)
del _k
# The built-ins as registered at import (a user kernel may take a name over).
BUILTINS: dict[str, Kernel] = dict(KERNELS)
