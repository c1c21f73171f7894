"""breakeven: decides, on every call, whether parallelism pays off.

Each kernel exists as a serial loop and an OpenMP ``prange`` loop; the
kernel modules hold both.  See the README for the design.
"""

from breakeven._cpu import usable_cpus
from breakeven._registry import KERNELS, Kernel, get_kernel

__version__ = "0.1.0"

__all__ = ["KERNELS", "Kernel", "get_kernel", "usable_cpus", "__version__"]
