"""Directives and roles that keep the documentation tied to what it
describes.

``:record:`PATH|ROW|COLUMN``` and ``:setting:`module.NAME|FORMAT``` put a
figure of a committed record, or a constant of the code, into the text
(``figures.py``; a reference to nothing fails the build).

``.. results-markdown:: PATH`` includes one of the Markdown files that
``make bench`` writes into ``benchmarks/results/`` (headings, bullet lists,
pipe tables, paragraphs), converted to reStructuredText, so the Benchmarks
page always shows the committed figures and nothing else.

``.. breakeven-cli::`` prints the ``--help`` of every ``breakeven``
subcommand, taken from the command's own argument parser.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import figures
from docutils import nodes, utils
from docutils.parsers.rst import Directive, directives

_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _inline(text: str) -> str:
    """Markdown inline text as reStructuredText: code spans become literals,
    and characters that mean markup in reST (but not in these files) are
    escaped."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            if not part.strip():
                out.append(part)
                continue
            # a literal next to a word needs an escaped separator in reST
            before = "\\ " if out and re.search(r"\w$", out[-1]) else ""
            out.append(f"{before}``{part}``")
            continue
        sep = "\\ " if out and out[-1].endswith("``") and re.match(r"\w", part) \
            else ""
        part = sep + part.replace("\\", "\\\\").replace("_", "\\_").replace("|", "\\|")
        # [text](url) links
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                      lambda m: f"`{m.group(1)} <{m.group(2).replace(chr(92), '')}>`__",
                      part)
        # ``**bold**`` and ``*emphasis*`` mean the same in both languages.
        out.append(part)
    return "".join(out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def markdown_to_rst(text: str, levels: str = "-~^") -> list[str]:
    """The subset of Markdown the benchmark scripts write, as reST lines."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _HEADING.match(line)
        if m:
            depth = min(len(m.group(1)), len(levels)) - 1
            title = _inline(m.group(2))
            out += ["", title, levels[depth] * max(len(title), 3), ""]
            i += 1
            continue
        if line.startswith("```"):
            out += ["", ".. code-block:: text", ""]
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append("   " + lines[i])
                i += 1
            out.append("")
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) \
                and _TABLE_RULE.match(lines[i + 1]):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            out += ["", ".. list-table::", "   :header-rows: 1",
                    "   :class: results-table", ""]
            for row in [header, *rows]:
                row = (row + [""] * len(header))[:len(header)]
                for j, cell in enumerate(row):
                    lead = "   * - " if j == 0 else "     - "
                    out.append((lead + _inline(cell)).rstrip())
            out.append("")
            continue
        out.append(_inline(line) if line.strip() else "")
        i += 1
    return out


class ResultsMarkdown(Directive):
    """Include a Markdown results file, converted to reST."""

    required_arguments = 1
    has_content = False
    option_spec = {"levels": directives.unchanged,
                   "section": directives.unchanged}

    def run(self):
        env = self.state.document.settings.env
        rel, pattern = env.relfn2path(self.arguments[0])
        paths = sorted(glob.glob(pattern), key=_results_order)
        if not paths:
            raise self.error(f"no file matches {self.arguments[0]}")
        here = Path(env.doc2path(env.docname)).parent
        lines: list[str] = []
        section = self.options.get("section")
        for path in paths:
            env.note_dependency(path)
            text = Path(path).read_text(encoding="utf-8")
            if section:  # one section's body, without its heading or plots
                body = _section(text, section)
                if body is None:
                    raise self.error(f"{path}: no section {section!r}")
                lines += markdown_to_rst(body, self.options.get("levels", "-~^"))
                lines += ["", f"*Source:* ``{os.path.relpath(path, here.parent)}``"
                          f", {section}", ""]
                continue
            lines += markdown_to_rst(text, self.options.get("levels", "-~^"))
            # plots the scripts saved beside the table: <stem>.png, <stem>-*.png
            stem = Path(path).with_suffix("")
            for png in sorted({*glob.glob(f"{stem}.png"), *glob.glob(f"{stem}-*.png")}):
                rel_png = os.path.relpath(png, here)
                lines += ["", f".. image:: {rel_png}", f"   :alt: {Path(png).name}",
                          "   :width: 100%", ""]
            lines += ["", f"*Source:* ``{os.path.relpath(path, here.parent)}``", ""]
        self.state_machine.insert_input(lines, pattern)
        return []


def _section(text: str, start: str) -> str | None:
    """The body of the first section whose heading starts with ``start``,
    up to the next heading of its level or above."""
    lines, out, level = text.splitlines(), None, 0
    for line in lines:
        m = _HEADING.match(line)
        if out is None:
            if m and m.group(2).startswith(start):
                out, level = [], len(m.group(1))
            continue
        if m and len(m.group(1)) <= level:
            break
        out.append(line)
    return None if out is None else "\n".join(out)


# The results in the order a reader needs them; others after, by name.
_ORDER = ("kernels", "calibration", "dispatch")


def _results_order(path: str):
    stem = Path(path).stem
    return (_ORDER.index(stem) if stem in _ORDER else len(_ORDER), stem)


class BreakevenCLI(Directive):
    """The ``--help`` of every ``breakeven`` subcommand, one section each."""

    has_content = False
    option_spec = {"level": directives.unchanged}

    def run(self):
        import argparse

        from breakeven._cli import build_parser

        level = self.options.get("level", "-")
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal width
        try:
            parser = build_parser()
            lines = [".. code-block:: text", ""]
            lines += ["   " + s for s in parser.format_help().splitlines()]
            sub = next(a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction))
            helps = {c.dest: c.help for c in sub._choices_actions}
            for name, p in sub.choices.items():
                title = f"breakeven {name}"
                lines += ["", f".. _cli-{name}:", "", title, level * len(title), "",
                          (helps.get(name) or "").capitalize() + ".", "",
                          ".. code-block:: text", ""]
                lines += ["   " + s for s in p.format_help().splitlines()]
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old
        self.state_machine.insert_input(lines, "breakeven._cli")
        return []


def _figure_role(lookup):
    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        text = utils.unescape(text, restore_backslashes=True)  # a regex's \d
        env = getattr(inliner.document.settings, "env", None)
        path = re.split(r"[|~]", text, maxsplit=1)[0]
        if env is not None and "/" in path:  # a record: rebuild when it changes
            env.note_dependency(str(figures.ROOT / path))
        try:
            value = lookup(text)
        except (KeyError, ValueError, TypeError) as e:
            msg = inliner.reporter.error(f"{name} {text!r}: {e}", line=lineno)
            return [inliner.problematic(rawtext, rawtext, msg)], [msg]
        return [nodes.Text(value)], []
    return role


def setup(app):
    app.add_role("record", _figure_role(figures.record_value))
    app.add_role("setting", _figure_role(figures.setting_value))
    app.add_directive("results-markdown", ResultsMarkdown)
    app.add_directive("breakeven-cli", BreakevenCLI)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
