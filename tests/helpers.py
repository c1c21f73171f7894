"""Helpers shared by the test modules."""

import contextlib

import numpy as np

import breakeven as be
from breakeven._profile import Profile, host_fingerprint


def ulp_distance(a, b):
    """Distance in units in the last place, for finite values of one dtype."""
    ints = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32}[a.dtype]
    ia = a.view(ints).astype(np.int64)
    ib = b.view(ints).astype(np.int64)
    # map the sign-magnitude bit patterns onto a monotone integer line
    ia = np.where(ia < 0, np.iinfo(ints).min - ia, ia)
    ib = np.where(ib < 0, np.iinfo(ints).min - ib, ib)
    return np.abs(ia - ib)


def thread_control(c):
    """The context a drawn control stands for: None, ("threads", n),
    ("exact", n) or ("section", n)."""
    if c is None:
        return contextlib.nullcontext()
    kind, n = c
    if kind == "threads":
        return be.threads(n)
    if kind == "exact":
        return be.threads(n, exact=True)
    return be.section(n)


def build_extension(directory, name: str, source: str, compiler=None) -> None:
    """Compile ``source`` (Cython, OpenMP on) into the extension module
    ``name`` in ``directory``, as a user's own build would: cythonize finds
    breakeven's installed .pxd files on sys.path; the compiler is the one
    breakeven was built with, or ``compiler`` (the examples' builder,
    docs/examples/build_example.py)."""
    from pathlib import Path

    import build_example

    pyx = Path(directory, f"{name}.pyx")
    pyx.write_text(source)
    build_example.compile_extensions([(name, str(pyx))], Path(directory),
                                     Path(directory), flags=("-O2",),
                                     compiler=compiler)


def ladder(n: int) -> tuple:
    """Steps 1 -> 2 -> 4 -> ... -> n threads, a decade of work apart."""
    steps, t, work = [(0, 1)], 2, 1000
    while t < n:
        steps.append((work, t))
        t, work = 2 * t, work * 10
    if n > 1:
        steps.append((work, n))
    return tuple(steps)


def ladder_profile(n: int, times=None, sleep_us=None) -> Profile:
    p = Profile(host_fingerprint(), {}, "now", sleep_us, "ladder profile")
    for k in be.KERNELS:
        for d in ("float64", "float32"):
            p.set_table(k, d, ladder(n), ladder(n), times)
    return p


def truncated(text: str) -> str:
    """A file cut short in the middle of a value: after the opening bracket
    of an array at or past its middle.  A cut at a fixed length may land
    on a section boundary and leave valid TOML (as NumPy's version strings
    moved the sections of a profile); an open array never parses."""
    cut = text.find("= [", len(text) // 2)
    if cut < 0:
        cut = text.index("= [")
    return text[:cut + 3]

