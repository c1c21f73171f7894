"""The Numba side of the side-by-side benchmark (``bench_peers.py``): one
serial ``@njit`` loop and one ``@njit(parallel=True)`` loop per built-in,
written the straightforward way a user would write them.

Compiled on first call (``peers_impls.Libraries.compile_numba`` times that
apart, outside every figure); their arguments are the registry's sample
arguments through the adapters in ``peers_impls.PEERS``.
"""

from __future__ import annotations

import math

import numpy as np


def numba_kernels(nb):
    """Straightforward Numba loops: (serial @njit, parallel @njit with
    prange) per kernel.  No fastmath: like breakeven's kernels, these keep
    IEEE semantics, so a serial sum or dot is one dependent add chain."""
    njit, prange = nb.njit, nb.prange

    @njit
    def sum_s(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i]
        return s

    @njit(parallel=True)
    def sum_p(x):
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i]
        return s

    @njit
    def dot_s(x, y):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * y[i]
        return s

    @njit(parallel=True)
    def dot_p(x, y):
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i] * y[i]
        return s

    @njit
    def axpy_s(a, x, y):
        for i in range(x.shape[0]):
            y[i] += a * x[i]
        return y

    @njit(parallel=True)
    def axpy_p(a, x, y):
        for i in prange(x.shape[0]):
            y[i] += a * x[i]
        return y

    @njit
    def exp_s(x, out):
        for i in range(x.shape[0]):
            out[i] = math.exp(x[i])
        return out

    @njit(parallel=True)
    def exp_p(x, out):
        for i in prange(x.shape[0]):
            out[i] = math.exp(x[i])
        return out

    @njit
    def cumsum_s(x, out):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i]
            out[i] = s
        return out

    @njit(parallel=True)
    def cumsum_p(x, out):
        # two passes over blocks: scan each block, then add the carries
        n = x.shape[0]
        nb_ = nb.get_num_threads()
        chunk = (n + nb_ - 1) // nb_
        totals = np.zeros(nb_)
        for b in prange(nb_):
            s = 0.0
            for i in range(b * chunk, min(n, (b + 1) * chunk)):
                s += x[i]
                out[i] = s
            totals[b] = s
        carry = np.zeros(nb_)
        for b in range(1, nb_):
            carry[b] = carry[b - 1] + totals[b - 1]
        for b in prange(1, nb_):
            c = carry[b]
            for i in range(b * chunk, min(n, (b + 1) * chunk)):
                out[i] += c
        return out

    @njit
    def hist_s(x, bins, lo, hi):
        counts = np.zeros(bins, np.int64)
        scale = bins / (hi - lo)
        for i in range(x.shape[0]):
            v = x[i]
            if v >= lo and v <= hi:
                b = int((v - lo) * scale)
                if b >= bins:
                    b = bins - 1
                counts[b] += 1
        return counts

    @njit(parallel=True)
    def hist_p(x, bins, lo, hi):
        # per-thread private counts, merged at the end
        n = x.shape[0]
        nt = nb.get_num_threads()
        chunk = (n + nt - 1) // nt
        counts = np.zeros((nt, bins), np.int64)
        scale = bins / (hi - lo)
        for t in prange(nt):
            for i in range(t * chunk, min(n, (t + 1) * chunk)):
                v = x[i]
                if v >= lo and v <= hi:
                    b = int((v - lo) * scale)
                    if b >= bins:
                        b = bins - 1
                    counts[t, b] += 1
        return counts.sum(axis=0)

    @njit
    def near_row(X, C, i):
        best = np.inf
        arg = 0
        for j in range(C.shape[0]):
            s = 0.0
            for k in range(X.shape[1]):
                t = X[i, k] - C[j, k]
                s += t * t
            if s < best:
                best = s
                arg = j
        return arg

    @njit
    def near_s(X, C):
        out = np.empty(X.shape[0], np.intp)
        for i in range(X.shape[0]):
            out[i] = near_row(X, C, i)
        return out

    @njit(parallel=True)
    def near_p(X, C):
        out = np.empty(X.shape[0], np.intp)
        for i in prange(X.shape[0]):
            out[i] = near_row(X, C, i)
        return out

    return {"sum": (sum_s, sum_p), "dot": (dot_s, dot_p), "axpy": (axpy_s, axpy_p),
            "exp": (exp_s, exp_p), "cumsum": (cumsum_s, cumsum_p),
            "histogram": (hist_s, hist_p), "nearest": (near_s, near_p)}
