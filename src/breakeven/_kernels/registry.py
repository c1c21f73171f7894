"""The kernel registry: every kernel dispatch knows, by name and slot.

A :class:`Kernel` says how calibration calls it (``call``: the dispatched
function, timed at forced thread counts), how big a call is (``work``, the
measure thresholds are expressed in), how to make inputs of a given work
(``sample``), and, where it has them, its serial and parallel variants and
what NumPy computes the same thing with.  Registering a kernel gives it a
slot in the dispatch core (:mod:`breakeven._core.engine`).  breakeven's own
kernels are declared by their family modules (``breakeven._kernels``,
listed once in meson.build), each kernel once, and are simply the first
registered; this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from breakeven._core import engine, runtimes
from breakeven._profile import EMBEDDED_DEFAULT, KERNEL_NAME

__all__ = ["Kernel", "KERNELS", "get_kernel", "register"]

# The dtypes a kernel takes unless it says otherwise (and calibration measures).
FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


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
    dropin : callable or None
        The function users call (a built-in's drop-in), if not ``call``.
    plan : callable or None
        ``plan(*args, **kwargs) -> (reason, slot, type number, work)``: how
        the drop-in would run these arguments, by the same check it runs
        (``slot`` -1: NumPy computes the call, for ``reason``).
    model : KernelModel or None
        The kernel as the simulated many-core host sees it.

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
    dtypes: tuple = FLOAT_DTYPES
    call: Callable | None = None
    slot: int = -1
    defaults: os.PathLike | object | None = None
    dropin: Callable | None = None
    plan: Callable | None = None
    model: KernelModel | None = None


def uniform_array(work, dtype, rng, lo=-1.0, hi=1.0) -> np.ndarray:
    """A sample's array: ``work`` uniform values in [lo, hi) of ``dtype``."""
    return rng.uniform(lo, hi, size=max(1, int(work))).astype(dtype)


def first_length(x, *rest) -> int:
    """A kernel's work as the length of its first argument."""
    return int(np.shape(x)[0])


@dataclass(frozen=True)
class KernelModel:
    """What a kernel's call costs, per element of work on one core: how the
    simulated many-core host (:class:`breakeven.testing.SimulatedHost`)
    sees the kernel.

    Parameters
    ----------
    kind : {"memory", "compute", "blas"}
        The class it stands for in reports.
    ns : float
        Compute nanoseconds per element (float64; float32 takes ``f32`` of it).
    bytes : float
        Bytes moved per element (float64; float32 half).
    call_us : float
        The fixed cost of any call (argument checks, allocations).
    per_thread_us : float
        Serial cost per thread of a parallel call (merging private results).
    parallel_us : float
        Fixed extra cost of a parallel call (BLAS capped and restored).
    passes : float
        How many times the parallel variant goes over the data (a two-pass
        scan: 2).
    f32 : float
        float32's share of float64's compute time.
    """

    kind: str
    ns: float
    bytes: float
    call_us: float = 0.4
    per_thread_us: float = 0.0
    parallel_us: float = 0.0
    passes: float = 1.0
    f32: float = 0.6

    def per_element(self, dtype) -> tuple[float, float]:
        """``(ns, bytes)`` per element for ``dtype``."""
        if np.dtype(dtype).itemsize <= 4:
            return self.ns * self.f32, self.bytes / 2
        return self.ns, self.bytes


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
    # the OpenMP team its loops run on: another runtime's, if its module
    # links one of its own
    engine.set_kernel_team(slot, runtimes.team_for(kernel.call, kernel.parallel,
                                            kernel.serial))
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
    if isinstance(k, Kernel) and func in (k.call, k.dropin):
        return k
    return next((k for k in KERNELS.values() if func in (k.call, k.dropin)), None)


def get_kernel(name: str) -> Kernel:
    """The registered kernel called ``name``.

    Parameters
    ----------
    name : str
        A built-in kernel (the keys of :data:`breakeven.KERNELS` at import)
        or one registered with :func:`breakeven.kernel`.

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


# The built-ins, in the order their families registered them (the families
# are breakeven._kernels' modules, listed once, in meson.build).
BUILTINS: dict[str, Kernel] = {}


def register_builtin(kernel: Kernel) -> Kernel:
    """Register one of breakeven's own kernels (its family module declares
    it): with the embedded default profile as its defaults."""
    kernel = register(dataclasses.replace(kernel, defaults=EMBEDDED_DEFAULT))
    BUILTINS[kernel.name] = kernel
    return kernel
