"""The thread setters of the loaded BLAS libraries, for the dispatch core.

While a kernel that calls BLAS runs in parallel (and while a section is
open) the core holds every BLAS library at one thread.  It does so on every
such call, without the GIL, so it needs each library's own C functions: a
threadpoolctl limit costs tens of microseconds a call and takes the GIL.
The libraries are found through threadpoolctl's public
:func:`~threadpoolctl.threadpool_info` (their paths and kinds), and their
functions through the dynamic linker (``ctypes.CDLL`` of the already loaded
library), the way any C program finds them.
"""

from __future__ import annotations

import ctypes
import os
import warnings

__all__ = ["blas_libraries", "thread_setters"]

# (get, set) function names of each BLAS kind, before the prefixes and
# suffixes that builds add (SciPy's and NumPy's wheels: "scipy_" and "64_").
# Each takes and returns a C int.  (BLIS is left out: its setter takes a
# 64-bit dim_t.)
_NAMES = {
    "openblas": ("openblas_get_num_threads", "openblas_set_num_threads"),
    "mkl": ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    "flexiblas": ("flexiblas_get_num_threads", "flexiblas_set_num_threads"),
}
_PREFIXES = ("", "scipy_")
_SUFFIXES = ("", "64_", "_64")


def _symbol(lib, name: str):
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            fn = getattr(lib, prefix + name + suffix, None)
            if fn is not None:
                return fn
    return None


def blas_libraries() -> list[dict]:
    """threadpoolctl's records of the BLAS libraries loaded, SciPy's
    included: the one scan both the fingerprint and the BLAS cap read."""
    # Here, not at the top: threadpoolctl scans the loaded libraries, and
    # SciPy's BLAS (which the nearest kernel calls) must be loaded to be
    # seen; a process that only dispatches pays for neither.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_info

    return [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]


def thread_setters() -> list[tuple[int, int]]:
    """``(get_num_threads, set_num_threads)`` C addresses of each loaded BLAS
    library that runs threads of its own.

    An OpenBLAS built on OpenMP is left out: inside a kernel's parallel
    region its own region is nested, hence serial already.
    """
    out = []
    for info in blas_libraries():
        kind = info.get("internal_api")
        if kind == "openblas" and info.get("threading_layer") == "openmp":
            continue
        names = _NAMES.get(kind)
        try:
            lib = ctypes.CDLL(info["filepath"], mode=os.RTLD_NOLOAD)
        except OSError:
            lib = None
        get = _symbol(lib, names[0]) if lib is not None and names else None
        put = _symbol(lib, names[1]) if lib is not None and names else None
        if get is None or put is None:
            warnings.warn(f"breakeven: cannot find the thread functions of "
                          f"{info.get('filepath')} ({kind}): BLAS is not held "
                          "at one thread during parallel kernels", RuntimeWarning,
                          stacklevel=2)
            continue
        out.append((ctypes.cast(get, ctypes.c_void_p).value,
                    ctypes.cast(put, ctypes.c_void_p).value))
    return out
