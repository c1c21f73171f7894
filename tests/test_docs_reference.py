"""The reference pages cover what the code does: every key the profile
writer writes, every environment variable ``breakeven info`` reports, and
every page is reachable from the index."""

import re
import tomllib
from pathlib import Path

import breakeven as be
from breakeven import _info
from breakeven._profile import Profile, dumps, host_fingerprint

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _keys(table, skip=()):
    """Every key of a TOML table and its subtables, but the names of hosts,
    kernels and dtypes (data, not keys)."""
    out = set()
    for k, v in table.items():
        if k not in skip:
            out.add(k)
        if isinstance(v, dict):
            if k == "hosts":
                for host in v.values():
                    out |= _keys(host)
            elif k == "kernels":
                for per in v.values():
                    for states in per.values():
                        out |= _keys(states)
            else:
                out |= _keys(v)
    return out


def test_every_key_written_is_documented():
    p = Profile(host_fingerprint(), {}, "2026-01-01T00:00:00+00:00", 300.0, "t")
    p.wake = ((300.0, 2, 1e-4),)
    p.team_hot = {2: 1e-6}
    p.batch = {"start_s": 0.01, "task_s": 1e-6}
    p.set_table("sum", "float64", ((0, 1), (1000, 2)), ((0, 1),),
                ((1000, 1, 2e-6), (1000, 2, 1e-6)), [(3e-4, ((0, 1),))], "full")
    keys = _keys(tomllib.loads(dumps([p])))
    assert {"format", "calibrated_at", "wake", "hot", "cold_idle", "method",
            "times", "spin", "start_s"} <= keys  # the writer wrote them all
    page = (DOCS / "profile-format.rst").read_text()
    missing = sorted(k for k in keys if f"``{k}``" not in page  # a key
                     and not re.search(rf"[\[.]{k}[\].]", page))  # a table
    assert not missing, f"profile-format.rst does not document {missing}"


def test_every_environment_variable_reported_is_documented():
    page = (DOCS / "environment.rst").read_text()
    missing = [v for v in _info.ENVIRONMENT if f"``{v}``" not in page]
    assert not missing, f"environment.rst does not mention {missing}"


def test_every_page_is_in_the_index():
    index = (DOCS / "index.rst").read_text()
    listed = set(re.findall(r"^   ([\w-]+)$", index, re.M))
    pages = {p.stem for p in DOCS.glob("*.rst")} - {"index"}
    assert pages <= listed, pages - listed
    for caption in ("Tutorial", "How-to guides", "Reference", "Explanation"):
        assert f":caption: {caption}" in index
    assert be.__version__ in (DOCS / "changelog.rst").read_text()
