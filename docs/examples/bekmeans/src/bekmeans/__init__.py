"""bekmeans: Lloyd's k-means on breakeven's public Cython API.

One function, :func:`lloyd`, which gives what scikit-learn's
``KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter, tol=tol,
algorithm="lloyd")`` gives, to rounding.  Importing the package registers
its kernel with breakeven as ``"bekmeans.lloyd"`` (when breakeven is
installed; without it the loops run with a rule of their own).  Calibrate it
with ``breakeven calibrate --module bekmeans``.
"""

from numbers import Integral, Real

import numpy as np

from bekmeans._lloyd import DISPATCHED, run

__all__ = ["DISPATCHED", "lloyd", "run"]
__version__ = "0.1.0"


def _as_data(a, name, dtype=None):
    """A C-contiguous, finite, 2-D float32 or float64 copy of ``a``."""
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    arr = np.array(arr, dtype=dtype, order="C", copy=True)
    # a finite sum is proof enough (one pass, no temporary); a sum that
    # overflowed is checked value by value
    if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def lloyd(X, init, max_iter=300, tol=1e-4):
    """Lloyd's k-means from given initial centers.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        The data.  float32 stays float32; any other real type is computed
        in float64.
    init : array_like of shape (n_clusters, n_features)
        The initial centers (1 <= n_clusters <= n_samples).
    max_iter : int, default 300
        The most iterations to run.
    tol : float, default 1e-4
        Convergence when the centers' total squared shift is at most
        ``tol`` times the mean of the features' variances.  (The run also
        stops, strictly converged, when an iteration changes no label.)

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of int32, shape (n_samples,)
        The nearest center of each sample, for the centers returned.
    inertia : float
        The sum of the squared distances of the samples to their centers.
    n_iter : int
        The iterations run.

    Raises
    ------
    TypeError
        If ``X`` or ``init`` does not hold real numbers, or ``max_iter``
        is not an integer or ``tol`` not a real number.
    ValueError
        If the shapes do not match, ``X`` is empty, there are more centers
        than samples, an input holds NaN or infinity, ``max_iter < 1`` or
        ``tol < 0``.

    Notes
    -----
    The steps are those of scikit-learn's ``KMeans(init=init, n_init=1,
    algorithm="lloyd")``: the data are centered on their mean, empty
    clusters take the samples farthest from their centers, and after the
    last iteration (unless no label changed) the labels are computed once
    more for the final centers.  Each pass over the data asks breakeven for
    its threads, and gives the same result at every thread count.

    Examples
    --------
    >>> import numpy as np, bekmeans
    >>> X = np.array([[0., 0.], [0., 1.], [10., 0.], [10., 1.]])
    >>> centers, labels, inertia, n_iter = bekmeans.lloyd(X, X[[0, 2]])
    >>> centers
    array([[ 0. ,  0.5],
           [10. ,  0.5]])
    >>> labels, inertia
    (array([0, 0, 1, 1], dtype=int32), 1.0)
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral):
        raise TypeError(f"max_iter must be an integer, got {type(max_iter).__name__}")
    if isinstance(tol, bool) or not isinstance(tol, Real):
        raise TypeError(f"tol must be a real number, got {type(tol).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    X = _as_data(X, "X")
    centers = _as_data(init, "init", X.dtype)
    n, d = X.shape
    if n == 0 or d == 0:
        raise ValueError(f"X must have at least one sample and one feature, "
                         f"got shape {X.shape}")
    if centers.shape[1] != d:
        raise ValueError(f"init has {centers.shape[1]} features, X has {d}")
    if not 1 <= centers.shape[0] <= n:
        raise ValueError(f"init must have between 1 and n_samples={n} centers, "
                         f"got {centers.shape[0]}")
    # The data centered on their mean, for more accurate distances; the
    # tolerance scaled by their spread (the mean of the features' variances,
    # from the centered data: no temporary copy, as np.var would make).
    mean = X.mean(axis=0)
    X -= mean
    centers -= mean
    scaled_tol = float(np.einsum("ij,ij->", X, X) / X.size * tol) if tol != 0 else 0.0
    labels = np.full(n, -1, dtype=np.int32)
    n_iter, inertia = run(X, centers, labels, int(max_iter), scaled_tol)
    centers += mean
    return centers, labels, float(inertia), n_iter
