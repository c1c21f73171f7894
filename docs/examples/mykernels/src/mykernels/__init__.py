"""mykernels: a kernel of one's own, whose threads breakeven decides.

Importing it registers the kernel with breakeven as "mykernels.logistic"
(when breakeven is installed; without it the kernel runs with a rule of its
own).  Calibrate it with ``breakeven calibrate --module mykernels``.
"""

import numpy as np

from mykernels._logistic import DISPATCHED, logistic_into

__all__ = ["DISPATCHED", "logistic", "logistic_into"]


def logistic(x):
    """The logistic function of an array, element-wise, in a new array.

    float32 stays float32; anything else is computed in float64.
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty_like(x)
    logistic_into(x.reshape(-1), out.reshape(-1))
    return out
