"""Figures as breakeven prints them: one way to write a duration."""

from __future__ import annotations

__all__ = ["duration"]


def duration(seconds: float, *, digits: int = 3) -> str:
    """``seconds`` in the unit that reads best (s, ms or us), to ``digits``
    significant digits: ``duration(2.5e-5) == "25 us"``."""
    s = abs(seconds)
    if s >= 1:
        return f"{seconds:.{digits}g} s"
    if s >= 1e-3:
        return f"{seconds * 1e3:.{digits}g} ms"
    return f"{seconds * 1e6:.{digits}g} us"
