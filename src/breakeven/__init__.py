"""breakeven: decides, on every call, whether parallelism pays off.

Drop-in functions (:func:`sum`, :func:`dot`, :func:`axpy`, :func:`exp`,
:func:`cumsum`, :func:`histogram`, :func:`nearest`) run a serial or an OpenMP
kernel, with as many threads as pay on this host, according to a profile that
``breakeven calibrate`` measures (:func:`load_profile`); :func:`explain` says
why.  :func:`threads` and :func:`section` control the cores, and
:func:`kernel` dispatches kernels of your own the same way; :func:`map`
runs one of them over a batch of items, inner or outer parallel.
"""

__version__ = "0.1.0"

from breakeven._api import (  # noqa: E402
    axpy,
    cumsum,
    dot,
    exp,
    explain,
    histogram,
    kernel,
    nearest,
    sum,
)
from breakeven._calibrate import calibrate  # noqa: E402
from breakeven._cpu import usable_cpus  # noqa: E402
from breakeven._dispatch import Decision, section, threads  # noqa: E402
from breakeven._map import map  # noqa: E402
from breakeven._profile import Profile, ProfileWarning, load_profile  # noqa: E402
from breakeven._registry import KERNELS, Kernel, get_kernel  # noqa: E402

__all__ = [
    "KERNELS",
    "Decision",
    "Kernel",
    "Profile",
    "ProfileWarning",
    "__version__",
    "axpy",
    "calibrate",
    "cumsum",
    "dot",
    "exp",
    "explain",
    "get_kernel",
    "histogram",
    "kernel",
    "load_profile",
    "map",
    "nearest",
    "section",
    "sum",
    "threads",
    "usable_cpus",
]
