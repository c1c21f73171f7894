"""mykernels: a kernel of one's own, dispatched by breakeven."""

import numpy as np

import breakeven
from mykernels._logistic import logistic_parallel, logistic_serial


def _sample(work, dtype, rng):
    """Arguments of about ``work`` elements, for calibration."""
    x = rng.uniform(-10.0, 10.0, int(work)).astype(dtype)
    return x, np.empty_like(x)


@breakeven.kernel(
    parallel=logistic_parallel,                  # (x, out, n_threads)
    work=lambda x, out: x.shape[0],              # what thresholds count
    sample=_sample,
    reference=lambda x, out: np.divide(1.0, 1.0 + np.exp(-x), out=out),
)
def logistic_into(x, out):
    """out[i] = 1 / (1 + exp(-x[i])); the serial variant."""
    logistic_serial(x, out)


def logistic(x):
    """The logistic function of a float32/float64 array, element-wise."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty_like(x)
    logistic_into(x.reshape(-1), out.reshape(-1))
    return out
