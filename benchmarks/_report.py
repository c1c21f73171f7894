"""The report writer the benchmark scripts share (not a benchmark itself).

A record is a list of markdown lines; how its figures, tables and targets
are written lives here, once, so that every record reads alike and a change
of format is made in one place rather than in each script.

- :func:`fmt_time`, :func:`fmt_ratio`: a time per call; a batch-wise ratio
  as ``median [min-max]``;
- :func:`table`, :func:`header`, :func:`row`: markdown tables (``header``
  and ``row`` for the scripts that print rows as they are measured);
- :func:`verdict`, :func:`targets_table`: a target met or not;
- :func:`emit`: print a record and write it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def fmt_ratio(r: Sequence[float]) -> str:
    """``median [min-max]`` of a ratio's (median, min, max)."""
    return f"{r[0]:.2f} [{r[1]:.2f}-{r[2]:.2f}]"


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.2f} us"
    return f"{t * 1e3:.3f} ms"


def row(cells: Iterable[object]) -> str:
    """One line of a table; an empty cell stays one space wide."""
    return "|" + "|".join(f" {c} " if c != "" else " " for c in map(str, cells)) \
        + "|"


def header(columns: Sequence[str], align: str) -> list[str]:
    """A table's column names and its rule: ``align`` has a letter per
    column, ``l`` for text (left) and ``r`` for figures (right)."""
    if len(align) != len(columns) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} does not fit columns {columns!r}")
    return [row(columns), "|" + "".join("---:|" if a == "r" else "---|"
                                        for a in align)]


def table(columns: Sequence[str], align: str,
          rows: Iterable[Sequence[object]]) -> list[str]:
    """A whole table (no blank line after it)."""
    return header(columns, align) + [row(r) for r in rows]


def verdict(met: bool) -> str:
    """How a record says whether a target is met."""
    return "met" if met else "NOT met"


def targets_table(figures: Mapping[str, float], targets: Mapping[str, float]
                  ) -> list[str]:
    """The summary of a benchmark: each target's figure, and whether it is
    met (at most the target)."""
    rows = [(name, f"{figures[name]:.3g}", f"<= {target:g}",
             verdict(figures[name] <= target)) for name, target in targets.items()]
    return ["## Summary\n", *table(("figure", "measured", "target", ""), "lrrl",
                                   rows), ""]


def emit(lines: list[str], path: str | Path | None, echo: bool = True) -> None:
    """Print a report (unless ``echo`` is false) and, if a path is given,
    write it there."""
    text = "\n".join(lines) + "\n"
    if echo:
        print(text)
    if path:
        Path(path).write_text(text)
