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

import os
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


def compiler_env(compiler: str | None = None) -> dict[str, str]:
    """The environment for a setuptools build with ``compiler`` (``"gcc"``
    or ``"clang"``; default: the one breakeven was built with,
    ``breakeven._build.C_COMPILER``), hence its OpenMP runtime: a module
    whose parallel regions call breakeven should share the runtime, or its
    loops run on a thread pool of their own (the tests build one that does
    not, on purpose)."""
    from breakeven import _build

    env = dict(os.environ)
    compiler = compiler or _build.C_COMPILER
    if compiler not in ("gcc", "clang"):
        raise ValueError(f"compiler must be 'gcc' or 'clang', got {compiler!r}")
    if compiler == "clang" or env.get("CC", "gcc").split()[0] != "gcc":
        # (setuptools' default is Python's own compiler: gcc, here)
        env["CC"] = compiler
        env["LDSHARED"] = f"{compiler} -shared"
    return env


def compile_extensions(modules: list[tuple[str, str]], build_lib: Path, tmp: Path,
                       flags: tuple[str, ...] = ("-O3", "-fno-wrapv"),
                       compiler: str | None = None) -> None:
    """Compile ``(module, pyx path)`` pairs with setuptools, cythonize and
    OpenMP into ``build_lib`` (``tmp`` for the build's own files), with
    ``flags`` after Python's own.  The default builds as meson's release
    build does: Python's flags include ``-fwrapv``, under which the loops
    of ``bekmeans`` ran measurably slower.  Raises RuntimeError with the
    compiler's output if the build fails.  ``compiler``: see
    :func:`compiler_env`."""
    script = (
        "from setuptools import Extension, setup\n"
        "from Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize([Extension(m, [p], "
        f"extra_compile_args=['-fopenmp', *{list(flags)!r}], "
        "extra_link_args=['-fopenmp']) "
        f"for m, p in {modules!r}], quiet=True, include_path={_pxd_dirs()!r}, "
        f"build_dir={str(tmp)!r}), "
        f"script_args=['build_ext', '--build-lib', {str(build_lib)!r}, "
        f"'--build-temp', {str(tmp)!r}])\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp,
                         env=compiler_env(compiler),
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise RuntimeError(f"building {', '.join(m for m, _ in modules)} failed:\n"
                           f"{run.stdout}{run.stderr}")


def _setuptools(source: Path, target: Path, tmp: Path) -> None:
    pkg = source / "src" / source.name
    compile_extensions([(f"{source.name}.{p.stem}", str(p))
                        for p in sorted(pkg.glob("*.pyx"))], target, tmp)
    for py in pkg.glob("*.py"):
        shutil.copy(py, target / source.name / py.name)


def build(name: str, target: Path, tmp: Path, *, meson: bool | None = None) -> Path:
    """Build the example ``name`` into ``target`` (``tmp`` for the build's
    own files) and return ``target``, the directory to put on ``sys.path``.

    ``meson``: build with meson-python (default: when :func:`have_meson`).
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
        _setuptools(source, target, tmp)
    return target


def sources(name: str) -> list[Path]:
    """The files the build of ``name`` reads (to tell a stale build)."""
    source = EXAMPLES / name
    return [source / "meson.build", *sorted((source / "src" / name).iterdir())]
