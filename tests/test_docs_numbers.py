"""No measured figure typed into the docs or the README by hand.

A figure about speed, thresholds or wake-up costs comes from a committed
record through the docs build (``:record:`PATH|ROW|COLUMN```), a setting
from the code (``:setting:`module.NAME|FORMAT```), a quote of a record that
a test holds to it (the README's ``<!-- record: PATH -->`` blocks), or it is
an order of magnitude in words.  The checker lives in ``docs/_ext/figures.py``
with the roles it honours.
"""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import figures  # noqa: E402

PAGES = sorted((ROOT / "docs").glob("*.rst"))
MARKDOWN = [ROOT / "README.md", ROOT / "calibration" / "README.md"]


@pytest.mark.parametrize("path", PAGES + MARKDOWN, ids=lambda p: p.name if
                         p.parent.name == "docs" else str(p.relative_to(ROOT)))
def test_no_figure_typed_by_hand(path):
    found = figures.unmarked_figures(path.read_text(encoding="utf-8"),
                                     markdown=path.suffix == ".md")
    assert not found, "\n".join(f"{path.name}:{n}: {f!r} is typed by hand: take "
                                "it from a record or the code, or say it in words"
                                for n, f in found)


def _references(role):
    pattern = re.compile(rf":{role}:`([^`]*)`")
    for page in PAGES:
        for ref in pattern.findall(page.read_text(encoding="utf-8")):
            yield page.name, ref


def test_every_record_and_setting_quoted_exists():
    refs = list(_references("record"))
    settings = list(_references("setting"))
    assert len(refs) > 10 and len(settings) > 10  # the pages do quote them
    for page, ref in refs:
        assert figures.record_value(ref), (page, ref)
    for page, ref in settings:
        assert figures.setting_value(ref), (page, ref)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_records_match_their_files(path):
    for line, record, lines in figures.record_blocks(path.read_text(encoding="utf-8")):
        missing = figures.check_record_block(record, lines)
        assert not missing, f"{path.name}:{line}: not in {record}: {missing}"


# --- the check has teeth -----------------------------------------------------

def test_a_planted_stale_figure_is_found():
    page = (ROOT / "docs" / "dispatch.rst").read_text(encoding="utf-8")
    planted = page.replace("Hot and cold\n------------\n",
                           "Hot and cold\n------------\n\nWaking the team "
                           "costs 6-8 ms after 30 ms idle.\n", 1)
    assert planted != page
    found = [f for _, f in figures.unmarked_figures(planted)]
    assert found == ["6-8 ms", "30 ms"]
    # in a literal block too (a command's output copied by hand), and in
    # the README's prose and code blocks
    assert figures.unmarked_figures("::\n\n   sum  float64  32492 (2 thr)\n")
    assert figures.unmarked_figures("```\nwake-up 7741.0 us\n```\n", markdown=True)
    # what is not a figure typed by hand
    assert not figures.unmarked_figures(
        ":record:`benchmarks/results/dispatch.md|x` and ``1.5 ms`` and 2^24 "
        "and 2 CPUs\n\n>>> be.sum(np.ones(10**6))\n1000000.0\n")


def test_a_quote_that_drifted_from_its_record_is_found(tmp_path):
    (tmp_path / "rec.txt").write_text("a  1\nb  32492 (2 thr)\nc  3\n")
    good = ["```", "$ cmd", "a  1", "...", "b  32492 (2 thr)", "```"]
    assert figures.check_record_block("rec.txt", good, root=tmp_path) == []
    stale = ["b  46341 (2 thr)"]
    assert figures.check_record_block("rec.txt", stale, root=tmp_path) == stale
    # out of order is not a quote either
    assert figures.check_record_block("rec.txt", ["c  3", "a  1"], root=tmp_path)


def test_a_reference_to_nothing_fails(tmp_path):
    (tmp_path / "r.md").write_text("| figure | measured |\n|---|---:|\n| a | 1.5 |\n")
    assert figures.record_value("r.md|a", root=tmp_path) == "1.5"
    assert figures.record_value("r.md|a|measured", root=tmp_path) == "1.5"
    for ref in ("r.md|b", "r.md|a|other", "missing.md|a", "r.md~nothing (\\d+)"):
        with pytest.raises(KeyError):
            figures.record_value(ref, root=tmp_path)
    assert figures.setting_value("breakeven._calibrate.MARGIN|%") == "5%"
    with pytest.raises(KeyError):
        figures.setting_value("breakeven._calibrate.NO_SUCH|%")
