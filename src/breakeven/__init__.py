"""breakeven: decides, on every call, whether parallelism pays off.

Each kernel exists as a serial loop and an OpenMP ``prange`` loop.
``breakeven calibrate`` measures where the parallel one breaks even on this
host and records it in a profile (:func:`load_profile`).
"""

from breakeven._calibrate import calibrate
from breakeven._cpu import usable_cpus
from breakeven._profile import Profile, ProfileWarning, load_profile
from breakeven._registry import KERNELS, Kernel, get_kernel

__version__ = "0.1.0"

__all__ = [
    "KERNELS",
    "Kernel",
    "Profile",
    "ProfileWarning",
    "__version__",
    "calibrate",
    "get_kernel",
    "load_profile",
    "usable_cpus",
]
