"""Figures in the documentation come from the committed records; settings
come from the code.

Three parts, used by the Sphinx extension (roles ``:record:`` and
``:setting:``) and by the number check of the test suite
(``tests/test_docs_numbers.py``):

- :func:`record_value` reads one cell of a record: a pipe table of a
  Markdown file in ``benchmarks/results/`` (``PATH|ROW|COLUMN``), or a match
  in a plain-text record such as a host's ``calibrate-output.txt``
  (``PATH~REGEX``, the first group);
- :func:`setting_value` formats a constant of the package
  (``breakeven._calibrate.MARGIN|%``);
- :func:`unmarked_figures` finds what looks like a measured figure (a number
  with a unit of time, a ratio, a percentage, a bandwidth, or a number of
  four or more digits) typed into prose rather than taken from a record, in
  reStructuredText or Markdown; :func:`record_blocks` and
  :func:`check_record_block` let a Markdown file (the README, which Sphinx
  does not build) quote a record verbatim between ``<!-- record: PATH -->``
  and ``<!-- /record -->``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_UNIT = r"(?:ns|us|µs|ms|s|x|×|%|GB/s|MB|GB|GiB)"
_NUM = r"\d[\d,]*(?:\.\d+)?"
FIGURE = re.compile(
    rf"(?<![\w.^/~-]){_NUM}(?:\s*(?:-|to)\s*{_NUM})?\s?{_UNIT}(?![\w/])"
    rf"|(?<![\w.^/~-])\d{{4,}}(?![\w.^])")
_ROLE = re.compile(r":(?:record|setting|ref|doc|func|class|mod|meth|attr|data):`[^`]*`")
_LITERAL = re.compile(r"``[^`]*``")
_MD_CODE = re.compile(r"`[^`]*`")
_MD_COMMENT = re.compile(r"<!--.*?-->")


def _cells(line: str) -> list[str]:
    line = line.strip().strip("|")
    return [c.strip().strip("`").strip() for c in line.split("|")]


def record_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The pipe tables of a Markdown record: ``(header, rows)`` each."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.match(
                r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            header, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out.append((header, rows))
        else:
            i += 1
    return out


def record_value(ref: str, root: Path = ROOT) -> str:
    """One figure of a committed record.

    ``PATH|ROW`` or ``PATH|ROW|COLUMN``: in the Markdown record at ``PATH``
    (relative to the repository), the first table row whose first cell is
    ``ROW``; its cell under the header ``COLUMN`` (default: the second
    column).  ``PATH~REGEX``: the first group of the first match of
    ``REGEX`` in the record's text.  Raises ``KeyError`` naming what is
    missing, so that a page quoting a figure no record holds fails to build.
    """
    if "~" in ref and ("|" not in ref or ref.index("~") < ref.index("|")):
        path, pattern = ref.split("~", 1)
        text = _read(root, path)
        m = re.search(pattern, text, re.M)
        if not m:
            raise KeyError(f"{path}: nothing matches {pattern!r}")
        return m.group(1) if m.groups() else m.group(0)
    parts = ref.split("|")
    if len(parts) not in (2, 3):
        raise KeyError("a record reference is PATH|ROW[|COLUMN] or PATH~REGEX: "
                       f"{ref!r}")
    path, row = parts[0], parts[1]
    for header, rows in record_tables(_read(root, path)):
        col = 1
        if len(parts) == 3:
            if parts[2] not in header:
                continue
            col = header.index(parts[2])
        for r in rows:
            if r and r[0] == row and col < len(r):
                return r[col]
    raise KeyError(f"{path}: no table row {row!r}"
                   + (f" with a column {parts[2]!r}" if len(parts) == 3 else ""))


def _read(root: Path, path: str) -> str:
    p = root / path
    if not p.is_file():
        raise KeyError(f"no record {path}")
    return p.read_text(encoding="utf-8")


def setting_value(ref: str) -> str:
    """A constant of the package, formatted: ``module.NAME|FORMAT``,
    ``module.Class.field|FORMAT`` or ``module.Class.method().field|FORMAT``
    (a name ending in ``()`` is called).  FORMAT: ``%`` (a share, as a
    percentage), ``ms``, ``us`` or ``s`` (seconds, in that unit), ``x``
    (a factor), or nothing (as it is)."""
    target, _, fmt = ref.partition("|")
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name.removesuffix("()"))
                if name.endswith("()"):
                    obj = obj()
        except AttributeError as e:
            raise KeyError(f"no setting {target!r}: {e}") from None
        break
    else:
        raise KeyError(f"no setting {target!r}")
    if fmt == "%":
        return f"{100 * obj:g}%"
    if fmt in ("ms", "us", "s"):
        scale = {"ms": 1e3, "us": 1e6, "s": 1.0}[fmt]
        return f"{obj * scale:g} {fmt}"
    if fmt == "x":
        return f"{obj:g}x"
    return f"{obj:g}" if isinstance(obj, float) else str(obj)


def unmarked_figures(text: str, markdown: bool = False) -> list[tuple[int, str]]:
    """``(line number, figure)`` of each figure typed by hand: anywhere but
    in the roles that take it from a record or the code, inline literals,
    doctests (whose output is checked by running them), directive lines and
    options, and a Markdown file's record blocks (:func:`check_record_block`
    holds those to their records).  Literal and code blocks are read: a
    command's output copied into one is a figure typed by hand."""
    found = []
    lines = text.splitlines()
    in_doctest = False
    in_record = False
    for n, line in enumerate(lines, 1):
        if markdown:
            if "<!-- record:" in line:
                in_record = True
                continue
            if "<!-- /record -->" in line:
                in_record = False
                continue
            if in_record:
                continue
            if line.strip().startswith("$ "):
                line = line.split("#", 1)[1] if "#" in line else ""  # its comment
            prose = _MD_CODE.sub("", _MD_COMMENT.sub("", line))
        else:
            stripped = line.strip()
            if stripped.startswith(">>>"):
                in_doctest = True
            if in_doctest:
                in_doctest = bool(stripped)
                continue
            if stripped.startswith(".. ") or re.match(r"^\s*:\w[\w-]*:", line) \
                    or stripped.startswith("$ "):
                continue  # a directive, a directive's option, a command
            prose = _LITERAL.sub("", _ROLE.sub("", line))
        found += [(n, m.group(0)) for m in FIGURE.finditer(prose)]
    return found


def record_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line number, PATH, lines)`` of each ``<!-- record: PATH -->``
    block of a Markdown file."""
    out, cur = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.search(r"<!-- record: (\S+) -->", line)
        if m:
            cur = (n, m.group(1), [])
            continue
        if "<!-- /record -->" in line and cur is not None:
            out.append(cur)
            cur = None
            continue
        if cur is not None:
            cur[2].append(line)
    return out


def check_record_block(path: str, lines: list[str], root: Path = ROOT) -> list[str]:
    """The lines of a record block that its record does not hold, in the
    same order (code fences, blank lines, ``$ command`` lines and ``...``
    elisions aside)."""
    record = [ln.rstrip() for ln in _read(root, path).splitlines()]
    missing, at = [], 0
    for line in lines:
        s = line.rstrip()
        if not s.strip() or s.startswith("```") or s.startswith("$ ") \
                or s.strip() == "...":
            continue
        try:
            at = record.index(s, at) + 1
        except ValueError:
            missing.append(s)
    return missing
