"""The public API around the dispatch core: explain, register, kernel.

The drop-in functions themselves are their kernel families' (C, in
``breakeven._kernels``); the decision is the core's
(:mod:`breakeven._core.engine`).  Here: :func:`explain`, which plans a
call as the call itself does and asks the core for its
decision as a dry run; :func:`register`, which gives a kernel of any
library a slot; and :func:`kernel`, the decorator that makes a dispatched
callable from a serial/parallel pair.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from breakeven._core import decisions, engine
from breakeven._core.decisions import Decision
from breakeven._kernels import kernelcall, registry
from breakeven._kernels.registry import Kernel

__all__ = ["Plan", "explain", "kernel", "plan", "register"]


class Plan(NamedTuple):
    """How a dispatched function runs a call: ``kernel`` on ``dtype`` with
    ``work``; ``serial`` says why it runs serially whatever dispatch
    decides ("" if it does not)."""

    kernel: Kernel
    dtype: str
    work: int
    serial: str = ""


def plan(func, *args, **kwargs) -> Plan | str:
    """How ``func`` would run these arguments: a :class:`Plan`, or, when
    NumPy computes the call, why (a string).  Nothing is computed.

    Raises
    ------
    TypeError
        If ``func`` is not a dispatched function.
    """
    k = registry.by_call(func)
    if k is not None and k.plan is not None and func is k.dropin:
        reason, slot, typenum, work = k.plan(*args, **kwargs)
        if slot < 0:
            return reason
        return Plan(registry.by_slot(slot), _dtype(typenum).name, work, reason)
    if k is None:
        raise TypeError(f"{getattr(func, '__name__', func)!r} is not a breakeven "
                        "function nor a kernel registered with breakeven.register "
                        "or breakeven.kernel")
    if kwargs:
        raise TypeError("a dispatched kernel takes positional arguments only")
    typenum, work = kernelcall.measure(k.work, args)
    dt = _dtype(typenum)
    if engine.dtype_index(dt) < 0:
        return Plan(k, dt.name, work, f"{dt.name}: a dtype dispatch keeps no "
                    "tables for")
    return Plan(k, dt.name, work)


@functools.cache
def _dtype(typenum: int) -> np.dtype:
    """The dtype of a NumPy type number."""
    for ch in np.typecodes["All"]:
        dt = np.dtype(ch)
        if dt.num == typenum:
            return dt
    raise ValueError(f"no NumPy dtype has type number {typenum}")


def explain(func, *args, **kwargs) -> Decision:
    """What a dispatched function would do with these arguments, and why.

    Parameters
    ----------
    func : callable
        A breakeven function (``breakeven.sum``, ...), a kernel of yours made
        with :func:`kernel` or registered with :func:`register`, or
        :func:`breakeven.map`.
    *args, **kwargs
        The call's arguments (nothing is computed).

    Returns
    -------
    Decision
        ``variant`` ("serial", "parallel" or "numpy"), ``threads``, ``work``
        and a ``reason`` in words.  The decision is the one the call itself
        would get now: the same eligibility check and the same rule, as a
        dry run.

    Raises
    ------
    TypeError
        If ``func`` is not a breakeven function.

    See Also
    --------
    threads, section
    decide : The decision for a kernel and an amount of work.
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
    p = plan(func, *args, **kwargs)
    if isinstance(p, str):
        return Decision("numpy", 1, 0, p, getattr(func, "__name__", ""))
    if p.serial:
        return Decision("serial", 1, p.work, p.serial, p.kernel.name)
    return decisions.decision(p.kernel.slot, engine.dtype_index(p.dtype), p.work)


def register(name: str, call: Callable | None = None, *, work: Callable,
             sample: Callable, dtypes=("float64", "float32"),
             uses_blas: bool = False, serial: Callable | None = None,
             parallel: Callable | None = None,
             reference: Callable | None = None, defaults=None) -> Kernel:
    """Register a kernel of your own, so that dispatch decides its threads.

    For a kernel that asks dispatch itself: a Cython function that brackets
    its ``prange`` loop with ``begin()``/``end()`` of the Cython API
    (``from breakeven cimport dispatch``), passing the returned kernel's
    ``slot``; or parallel code of any kind that runs inside
    :func:`breakeven.grant`.  One function body is enough: calibration
    times ``call`` at each thread count it forces with
    ``threads(n, exact=True)``, which ``begin()`` obeys.

    Parameters
    ----------
    name : str
        Name-spaced (``"mylib.relu"``): the profile's entry for the kernel
        is looked up by it.  Registering a name again updates its record
        and keeps its slot.
    call : callable, optional
        The kernel as users call it, with the arguments ``sample`` makes;
        needed to calibrate it.
    work : callable or int
        ``work(*args) -> int``: the size of a call, in the unit thresholds
        count (elements, or inner iterations of a loop nest); or ``i``, an
        int: the size of argument ``i`` (an array's ``size``), taken in C.
    sample : callable
        ``sample(work, dtype, rng) -> tuple``: arguments of about that work.
    dtypes : tuple of dtype-like
        The dtypes to calibrate.
    uses_blas : bool
        Whether the kernel calls BLAS: dispatch then holds BLAS at one
        thread while it runs in parallel.
    serial, parallel, reference : callable, optional
        The kernel's variants and a NumPy reference, if it has them (for
        tests and benchmarks).
    defaults : path-like or importlib.resources.abc.Traversable, optional
        A profile file your library ships (``breakeven calibrate --module
        mylib --output ...`` on your reference hosts): where this host has
        not calibrated the kernel, dispatch uses the file's entry for a
        similar host (the same CPU model and CPU count, else the same CPU
        count), else its own estimate, refined from the calls.

    Returns
    -------
    Kernel
        The record registered; its ``slot`` is the ``kernel`` argument of
        ``begin()`` in the Cython API.

    Raises
    ------
    TypeError
        If ``work`` or ``sample`` is not callable, or ``dtypes`` names
        something that is not a dtype.
    ValueError
        If ``name`` is not a valid kernel name.

    See Also
    --------
    kernel : Register a serial/parallel pair and get a dispatched function.
    grant : Run parallel code of your own with the threads granted.
    calibrate : Measure the kernel's thresholds.

    Examples
    --------
    >>> import numpy as np, breakeven
    >>> def scale(x, out):  # parallel code of its own, inside a grant
    ...     with breakeven.grant("doc.scale", x.size, x.dtype) as g:
    ...         np.multiply(x, 2.0, out=out)  # would use g.threads threads
    ...     return out
    >>> k = breakeven.register("doc.scale", scale, work=lambda x, out: x.size,
    ...                        sample=lambda w, dt, rng: (np.ones(w, dt),
    ...                                                   np.empty(w, dt)))
    >>> k.slot >= 7
    True
    >>> breakeven.explain(scale, np.ones(10), np.empty(10)).kernel
    'doc.scale'
    """
    if not callable(sample):
        raise TypeError(f"sample must be callable, got {type(sample).__name__}")
    work = kernelcall.work_function(work)  # a callable, or an argument's index
    try:
        dts = tuple(np.dtype(d) for d in dtypes)
    except TypeError as exc:
        raise TypeError(f"dtypes must name NumPy dtypes: {exc}") from None
    return registry.register(Kernel(name, serial, parallel, reference, work, sample,
                                     bool(uses_blas), dts, call, defaults=defaults))


def kernel(*, parallel, work, sample, name=None, uses_blas=False, reference=None,
           dtypes=("float64", "float32"), defaults=None):
    """Register a serial/parallel pair of your own and dispatch it.

    Decorates the serial variant; the returned function dispatches like the
    built-ins: the profile's threshold (after ``breakeven calibrate --module
    your.module``), the core budget, contention feedback, ``threads()`` and
    ``section()``, and BLAS capped if ``uses_blas``.

    Parameters
    ----------
    parallel : callable
        ``parallel(*args, n_threads)``.
    work : callable or int
        ``work(*args) -> int``: the size of a call; or ``i``, an int: the
        size of argument ``i``, taken in C (no Python call: the cheapest,
        for kernels whose work is an array's number of elements).
    sample : callable
        ``sample(work, dtype, rng) -> tuple``: arguments of about that work,
        for calibration.
    name : str, optional
        Registry name (default: the serial variant's module and name,
        ``"mylib.relu"``).
    uses_blas : bool
        Whether the kernel calls BLAS.
    reference : callable, optional
        A NumPy implementation, for tests and benchmarks.
    dtypes : tuple of str
        Dtypes to calibrate.
    defaults : path-like, optional
        Your library's default profile file (see :func:`register`).

    Returns
    -------
    callable
        Dispatching function with the serial variant's signature
        (positional arguments); its :class:`~breakeven.Kernel` is its
        ``kernel`` attribute.  The profile entry is looked up by the dtype
        of the first array argument.  Written in C: a call goes from the
        caller to the variant with no Python frame in between.

    Raises
    ------
    TypeError
        If ``dtypes`` names something that is not a dtype.

    See Also
    --------
    Kernel : The record registered.
    register : Register a kernel that asks dispatch itself (one body).
    calibrate : Measure the kernel's thresholds.
    explain : The decision for a call of the returned function.

    Notes
    -----
    A kernel registered after the profile was loaded gets its entry from
    it at registration.  The "Writing your own kernels" guide builds a
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
    ...                       np.empty(work, dtype)),
    ...                   name="doc.twice")
    ... def twice(x, out):
    ...     np.multiply(x, 2.0, out=out)
    >>> out = np.empty(3)
    >>> twice(np.arange(3.0), out)
    >>> out
    array([0., 2., 4.])
    >>> breakeven.explain(twice, np.arange(3.0), out).kernel
    'doc.twice'
    """
    def wrap(serial):
        kname = name or f"{serial.__module__}.{serial.__name__}"
        k = register(kname, None, work=work, sample=sample, dtypes=dtypes,
                     uses_blas=uses_blas, serial=serial, parallel=parallel,
                     reference=reference or serial, defaults=defaults)
        dispatched = kernelcall.make(serial, parallel, k.work, k.slot)
        dispatched.__name__ = serial.__name__
        dispatched.__qualname__ = getattr(serial, "__qualname__", serial.__name__)
        dispatched.__module__ = serial.__module__
        dispatched.__doc__ = serial.__doc__
        dispatched.__wrapped__ = serial
        dispatched.kernel = registry.register(dataclasses.replace(k, call=dispatched))
        return dispatched
    return wrap
