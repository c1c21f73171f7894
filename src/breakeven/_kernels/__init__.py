"""The kernels: the registry of every kernel dispatch knows, breakeven's own
kernel families (each module: its loops, its drop-in functions, their
argument checks and reasons, and the kernels' declarations), the SIMD loops
and ``@breakeven.kernel``'s callable.

Importing this package registers the built-in families, in the order of the
one list meson.build holds (``families.py``, generated): that order gives
the built-ins their slots in the dispatch core.
"""

import importlib

from breakeven._kernels.families import FAMILIES

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
del _family
