"""Build one of the example libraries of the docs where the suite and the
benchmarks can import it.

``docs/examples/<name>`` (``mykernels``, ``bekmeans``) are projects of their
own that compile against the installed breakeven.  :func:`build` installs
one into a directory to put on ``sys.path``: with meson-python, as a user
would install it, when the running environment has it; else with
setuptools and cythonize (an environment that installed breakeven from a
wheel need not have meson-python).  Both ways find the cimported .pxd files
where the running Python has them (breakeven's ``dispatch.pxd``, SciPy's
``cython_blas.pxd``), as the examples' ``meson.build`` do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def have_meson() -> bool:
    """Whether meson-python and ninja can build here."""
    return _importable("mesonpy") and (shutil.which("ninja") is not None
                                       or _importable("ninja"))


def _pxd_dirs() -> list[str]:
    import scipy

    import breakeven

    return [str(Path(m.__file__).resolve().parent.parent) for m in (breakeven, scipy)]


def _setuptools(source: Path, target: Path, tmp: Path, opt: str) -> None:
    pkg = source / "src" / source.name
    modules = [(f"{source.name}.{p.stem}", str(p)) for p in sorted(pkg.glob("*.pyx"))]
    script = (
        "from setuptools import Extension, setup\n"
        "from Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize([Extension(m, [p], "
        f"extra_compile_args=['-fopenmp', {opt!r}], extra_link_args=['-fopenmp']) "
        f"for m, p in {modules!r}], quiet=True, include_path={_pxd_dirs()!r}, "
        f"build_dir={str(tmp)!r}), "
        f"script_args=['build_ext', '--build-lib', {str(target)!r}, "
        f"'--build-temp', {str(tmp)!r}])\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp,
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise RuntimeError(f"building {source.name} failed:\n{run.stdout}{run.stderr}")
    for py in pkg.glob("*.py"):
        shutil.copy(py, target / source.name / py.name)


def build(name: str, target: Path, tmp: Path, *, meson: bool | None = None) -> Path:
    """Build the example ``name`` into ``target`` (``tmp`` for the build's
    own files) and return ``target``, the directory to put on ``sys.path``.

    ``meson``: build with meson-python (default: when :func:`have_meson`).
    The setuptools build compiles with ``-O3``, as meson's release build.
    """
    source = EXAMPLES / name
    if not (source / "meson.build").exists():
        raise ValueError(f"no example library {name!r} in {EXAMPLES}")
    target.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if meson if meson is not None else have_meson():
        cmd = [sys.executable, "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", "--no-build-isolation", "--no-deps",
               "--upgrade", "--target", str(target), str(source)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            raise RuntimeError(f"building {name} failed:\n{run.stdout}{run.stderr}")
    else:
        _setuptools(source, target, tmp, "-O3")
    return target


def sources(name: str) -> list[Path]:
    """The files the build of ``name`` reads (to tell a stale build)."""
    source = EXAMPLES / name
    return [source / "meson.build", *sorted((source / "src" / name).iterdir())]
