"""Floating-point errors of the kernels, reported as NumPy reports its own."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

__all__ = ["fp_error"]

_KEYS = {"overflow": "over", "underflow": "under", "invalid": "invalid",
         "divide by zero": "divide"}
_FLAGS = {"divide": 1, "over": 2, "under": 4, "invalid": 8}


def fp_error(kind: str, name: str) -> None:
    """A floating-point error of a kernel, handled as NumPy handles it in its
    own functions: by ``np.errstate`` / ``np.seterr`` (``kind`` "overflow",
    "underflow", "invalid" or "divide by zero")."""
    key = _KEYS[kind]
    mode = np.geterr()[key]
    if mode == "ignore":
        return
    msg = f"{kind} encountered in {name}"
    if mode == "warn":
        # point the warning at the caller's line, outside this package
        here, frame, level = os.path.dirname(__file__), sys._getframe(1), 2
        while frame is not None and frame.f_code.co_filename.startswith(here):
            frame, level = frame.f_back, level + 1
        warnings.warn(msg, RuntimeWarning, stacklevel=level)
    elif mode == "raise":
        raise FloatingPointError(msg)
    elif mode == "call":
        np.geterrcall()(kind, _FLAGS[key])
    elif mode == "print":
        print(f"Warning: {msg}")
    elif mode == "log":
        np.geterrcall().write(f"Warning: {msg}\n")
