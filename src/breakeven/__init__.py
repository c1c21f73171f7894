"""breakeven: decides, on every call, whether parallelism pays off.

Drop-in functions (:func:`sum`, :func:`dot`, :func:`axpy`, :func:`exp`,
:func:`cumsum`, :func:`histogram`, :func:`nearest`: the built-in kernels of
:data:`KERNELS`) run a serial or an OpenMP
kernel, with as many threads as pay on this host, according to a profile that
``breakeven calibrate`` measures (:func:`load_profile`); :func:`explain` says
why.  :func:`threads` and :func:`section` control the cores; the user's
processes on the same CPUs share them (:func:`host_budget`).  Kernels of
other libraries dispatch through the same core: :func:`register` gives one a
slot for the Cython API (``from breakeven cimport dispatch``),
:func:`kernel` dispatches a serial/parallel pair, and :func:`decide` and
:func:`grant` serve parallel code of any kind; :func:`stats` counts what
the calls did.  :func:`map` runs a dispatched function over a batch of
items, inner or outer parallel.
"""

from breakeven._calibrate import calibrate  # noqa: E402
from breakeven._core.decisions import Decision, decide, grant  # noqa: E402
from breakeven._core.engine import section, threads  # noqa: E402
from breakeven._core.host import (  # noqa: E402
    HostBudget,
    HostProcess,
    host_budget,
    use_host_budget,
)
from breakeven._core.stats import KernelStats, Stats, stats  # noqa: E402
from breakeven._core.tables import save_learned, use_profile  # noqa: E402
from breakeven._cpu import usable_cpus  # noqa: E402
from breakeven._info import show_versions  # noqa: E402
from breakeven._interop.map import map  # noqa: E402
from breakeven._kernels.api import explain, kernel, register  # noqa: E402
from breakeven._kernels.elementwise import axpy, exp  # noqa: E402
from breakeven._kernels.histogram import histogram  # noqa: E402
from breakeven._kernels.nearest import nearest  # noqa: E402
from breakeven._kernels.reductions import dot, sum  # noqa: E402
from breakeven._kernels.registry import KERNELS, Kernel, get_kernel  # noqa: E402
from breakeven._kernels.scan import cumsum  # noqa: E402
from breakeven._profile import Profile, ProfileWarning, load_profile  # noqa: E402
from breakeven._version import __version__  # noqa: E402

__all__ = [
    "KERNELS",
    "Decision",
    "HostBudget",
    "HostProcess",
    "Kernel",
    "KernelStats",
    "Profile",
    "ProfileWarning",
    "Stats",
    "__version__",
    "axpy",
    "calibrate",
    "cumsum",
    "decide",
    "dot",
    "exp",
    "explain",
    "get_kernel",
    "grant",
    "histogram",
    "host_budget",
    "kernel",
    "load_profile",
    "map",
    "nearest",
    "register",
    "save_learned",
    "section",
    "show_versions",
    "stats",
    "sum",
    "threads",
    "usable_cpus",
    "use_host_budget",
    "use_profile",
]

# threadpoolctl's threadpool_info() lists breakeven, threadpool_limits() caps
# it (registered now if threadpoolctl is imported, else when it is).
from breakeven._interop import threadpool

threadpool.install()
