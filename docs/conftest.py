"""Doctests of the documentation, run by ``make test``.

pytest collects ``docs/*.rst`` with ``--doctest-glob`` (see
``[tool.pytest.ini_options]`` in pyproject.toml), and, through the hook
below, the Examples sections of every public docstring of the *installed*
package: the objects in ``breakeven.__all__`` and their methods.  That is
``--doctest-modules`` for the installed package, including the drop-in
functions, which are compiled (``breakeven._fast``) and so invisible to
``--doctest-modules``, and without importing the uncompiled ``src/`` tree.

Every doctest runs with ``BREAKEVEN_PROFILE`` pointing at a fresh temporary
file, so none reads or writes the user's real profile, and with dispatch's
per-process state reset before and after.  The page on kernels of your own
imports ``mykernels`` and the k-means case study ``bekmeans``: the example
projects in ``docs/examples`` are built once per session (the ``example``
fixture of the top-level conftest.py) and put on ``sys.path``.
"""

from __future__ import annotations

import doctest
import inspect
from pathlib import Path

import pytest
from _pytest.doctest import (
    DoctestItem,
    DoctestTextfile,
    _get_checker,
    _get_continue_on_failure,
    _get_runner,
    get_optionflags,
)

HERE = Path(__file__).resolve().parent
# The pages that import an example library (built by the ``example``
# fixture of the top-level conftest.py).
PAGE_EXAMPLES = {HERE / "kernels.rst": "mykernels",
                 HERE / "kmeans.rst": "bekmeans"}

collect_ignore = ["conf.py", "_ext", "examples"]


# ---------------------------------------------------------------------------
# the docstrings of the installed package
# ---------------------------------------------------------------------------


def _public_objects():
    import breakeven

    for name in breakeven.__all__:
        obj = getattr(breakeven, name)
        if callable(obj):  # functions, compiled functions and classes
            yield f"breakeven.{name}", obj


class PublicDocstrings(DoctestTextfile):
    """The Examples sections of ``breakeven``'s public docstrings."""

    def collect(self):
        optionflags = get_optionflags(self.config)
        runner = _get_runner(verbose=False, optionflags=optionflags,
                             checker=_get_checker(),
                             continue_on_failure=_get_continue_on_failure(self.config))
        finder = doctest.DocTestFinder()
        seen = set()
        for name, obj in _public_objects():
            module = inspect.getmodule(obj)
            for test in finder.find(obj, name, module=module, globs={}):
                if test.examples and test.name not in seen:
                    seen.add(test.name)
                    yield DoctestItem.from_parent(self, name=test.name,
                                                  runner=runner, dtest=test)


def pytest_collect_file(file_path, parent):
    # The API reference page stands for the docstrings it shows.
    if file_path == HERE / "api.rst":
        return PublicDocstrings.from_parent(parent, path=file_path)
    return None


# ---------------------------------------------------------------------------
# the environment of every doctest
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _doctest_environment(request, tmp_path, monkeypatch):
    from breakeven import testing
    from breakeven._kernels import registry

    monkeypatch.setenv("BREAKEVEN_PROFILE", str(tmp_path / "profile.toml"))
    monkeypatch.chdir(tmp_path)
    page = getattr(request.node, "path", None)
    if page in PAGE_EXAMPLES:  # the example library the page imports
        monkeypatch.syspath_prepend(str(request.getfixturevalue("example")(
            PAGE_EXAMPLES[page])))
    registered = dict(registry.KERNELS)
    testing.reset()
    yield
    registry.KERNELS.clear()
    registry.KERNELS.update(registered)
    testing.reset()
