"""The dispatch core: every per-call decision and all dispatch state.

- ``engine`` (one compiled extension): the rule, the core budget, the BLAS
  cap, the feedback from the calls, the thread controls and the C API of
  ``breakeven/dispatch.pxd``;
- ``openmp``: what the OpenMP runtime says (its name, the team's size and
  start-up time);
- ``runtimes``: which OpenMP runtime breakeven's kernels run on, the others
  loaded beside it, and each registered kernel's team;
- ``decisions``: the core seen from Python (the tables it gets from the
  profiles, :class:`~breakeven.Decision`, ``decide``, ``grant``, ``stats``).

Libraries built against ``dispatch.pxd`` import this package and read the
capsule ``_C_API`` from it: it must stay here, under this name.
"""

from breakeven._core import runtimes
from breakeven._core.engine import _C_API  # noqa: F401  (dispatch.pxd's)

runtimes.configure()  # whether breakeven's own team survives fork
