"""What the suite's two folders share: a host core budget of their own,
and the example libraries of the docs.

``docs/examples/<name>`` (``mykernels``, ``bekmeans``) are projects of their
own that compile against the installed breakeven.  The ``example`` fixture
builds one, once per session, with ``docs/examples/build_example.py`` (which
the benchmarks use too), and returns the directory to put on ``sys.path``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The suite's processes (tests, doctests, and the subprocesses they start)
# share a host core budget of their own, not the user's.
os.environ["BREAKEVEN_HOST_BUDGET_DIR"] = tempfile.mkdtemp(prefix="breakeven-budget-")
atexit.register(shutil.rmtree, os.environ["BREAKEVEN_HOST_BUDGET_DIR"], True)

sys.path.insert(0, str(Path(__file__).resolve().parent / "docs" / "examples"))
import build_example  # noqa: E402


@pytest.fixture(scope="session")
def example(tmp_path_factory):
    """``example(name)``: the directory where the example library ``name``
    is built and importable (built at the first request)."""
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            built[name] = build_example.build(
                name, tmp_path_factory.mktemp(name),
                tmp_path_factory.mktemp(f"{name}-build"))
        return built[name]

    return build
