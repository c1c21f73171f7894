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
imports ``mykernels``: the example project in ``docs/examples/mykernels`` is
built once per session (with meson-python when it is installed, else with
setuptools) and put on ``sys.path``.
"""

from __future__ import annotations

import doctest
import inspect
import shutil
import subprocess
import sys
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
EXAMPLE = HERE / "examples" / "mykernels"

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
    if getattr(request.node, "path", None) == HERE / "kernels.rst":
        monkeypatch.syspath_prepend(str(request.getfixturevalue("mykernels_build")))
    registered = dict(registry.KERNELS)
    testing.reset()
    yield
    registry.KERNELS.clear()
    registry.KERNELS.update(registered)
    testing.reset()


@pytest.fixture(scope="session")
def mykernels_build(tmp_path_factory):
    """The example project of the kernels page, built and importable from
    the directory returned."""
    target = tmp_path_factory.mktemp("mykernels")
    try:
        import mesonpy  # noqa: F401

        have_meson = shutil.which("ninja") is not None or _importable("ninja")
    except ImportError:
        have_meson = False
    if have_meson:
        # As a user would install it; the build tools of this environment.
        cmd = [sys.executable, "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", "--no-build-isolation", "--no-deps",
               "--target", str(target), str(EXAMPLE)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    else:
        import breakeven

        build = tmp_path_factory.mktemp("mykernels-build")
        # cythonize runs in this Python, which finds breakeven/dispatch.pxd on
        # sys.path anyway; the include path says so (as meson.build does).
        include = str(Path(breakeven.__file__).resolve().parent.parent)
        script = (
            "from setuptools import Extension, setup\n"
            "from Cython.Build import cythonize\n"
            "setup(ext_modules=cythonize([Extension('mykernels._logistic', "
            f"[{str(EXAMPLE / 'src/mykernels/_logistic.pyx')!r}], "
            "extra_compile_args=['-fopenmp', '-O2'], "
            "extra_link_args=['-fopenmp'])], quiet=True, "
            f"include_path=[{include!r}], build_dir={str(build)!r}), "
            f"script_args=['build_ext', '--build-lib', {str(target)!r}, "
            f"'--build-temp', {str(build)!r}])\n")
        run = subprocess.run([sys.executable, "-c", script], cwd=build,
                             capture_output=True, text=True, timeout=600)
        shutil.copy(EXAMPLE / "src/mykernels/__init__.py",
                    target / "mykernels" / "__init__.py")
    assert run.returncode == 0, run.stdout + run.stderr
    return target


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
