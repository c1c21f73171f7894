"""The test suite on every supported Python this machine has, each with the
oldest NumPy the package claims (or the oldest with wheels for that Python)
and the newest.

For each cell: a fresh virtual environment under build/matrix/, the package
built and installed into it by pip (as ``make test`` does), NumPy pinned,
and the suite run.  The floors come from pyproject.toml (``requires-python``,
the ``numpy>=`` dependency), the Pythons from PATH and pyenv.

    python tools/matrix.py [--output tools/matrix.md] [--python 3.12 ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "matrix"
NEWEST_MINOR = 13  # the newest Python the suite is run on
# NumPy releases after the floor, in order: the oldest that has wheels for a
# Python is the first of these at or above the floor that pip can install.
NUMPY_SERIES = ["1.25", "1.26", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5"]


def floors() -> tuple[tuple[int, int], str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py = re.match(r">=\s*(\d+)\.(\d+)", meta["requires-python"])
    numpy = next(re.match(r"numpy\s*>=\s*([\d.]+)", d).group(1)
                 for d in meta["dependencies"] if d.startswith("numpy"))
    return (int(py.group(1)), int(py.group(2))), numpy


def find_python(minor: int) -> str | None:
    """python3.<minor> on PATH if it runs (a pyenv shim of a version not
    selected does not), else pyenv's newest 3.<minor>."""
    found = shutil.which(f"python3.{minor}")
    if found and subprocess.run([found, "-c", "pass"], capture_output=True,
                                check=False).returncode == 0:
        return found
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"3.{minor}.*/bin/python3.{minor}"),
                        key=lambda p: [int(x) for x in p.parts[-3].split(".")
                                       if x.isdigit()])
    return str(candidates[-1]) if candidates else None


def run(cmd, log, **kw) -> subprocess.CompletedProcess:
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                          **kw)


def pip(py: Path, *args) -> list[str]:
    return [str(py), "-m", "pip", "--disable-pip-version-check", *args]


def numpy_version(py: Path) -> str:
    code = "import numpy; print(numpy.__version__)"
    return subprocess.run([str(py), "-c", code], capture_output=True,
                          text=True).stdout.strip()


def cell(python: str, minor: int, which: str, floor: str, log) -> dict:
    """Build, install and test one (Python, NumPy) cell."""
    env_dir = WORK / f"py3.{minor}-numpy-{which}"
    shutil.rmtree(env_dir, ignore_errors=True)
    t0 = time.monotonic()
    out = {"python": f"3.{minor}", "which": which, "numpy": "", "result": ""}
    if run([python, "-m", "venv", str(env_dir)], log).returncode:
        out["result"] = "venv failed"
        return out
    py = env_dir / "bin" / "python"
    run(pip(py, "install", "--quiet", "--upgrade", "pip"), log)
    if which == "oldest":
        series = [s for s in NUMPY_SERIES
                  if [int(x) for x in s.split(".")]
                  >= [int(x) for x in floor.split(".")[:2]]]
        for s in series:  # the oldest with a wheel for this Python
            if run(pip(py, "install", "--quiet", "--only-binary", "numpy",
                       f"numpy=={s}.*"), log).returncode == 0:
                break
        else:
            out["result"] = "no NumPy wheel at or above the floor"
            return out
    pins = [f"numpy=={numpy_version(py)}"] if which == "oldest" else []
    # Build and install as make test does; NumPy stays at the pinned version
    # (scipy and the others resolve to versions that accept it).
    r = run(pip(py, "install", "--only-binary", "numpy,scipy", ".[test]", *pins),
            log, cwd=ROOT)
    if r.returncode:
        out["result"] = "install failed"
        return out
    out["numpy"] = numpy_version(py)
    r = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                       cwd=ROOT, capture_output=True, text=True)
    log.write(r.stdout[-5000:] + r.stderr[-2000:])
    summary = next((line.strip("= ") for line in reversed(r.stdout.splitlines())
                    if re.search(r"\d+ (passed|failed)", line)), "no summary")
    out["result"] = ("passed: " if r.returncode == 0 else "FAILED: ") + summary
    out["ok"] = r.returncode == 0
    out["minutes"] = (time.monotonic() - t0) / 60
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=ROOT / "tools" / "matrix.md")
    ap.add_argument("--python", action="append",
                    help="only these versions (3.12, ...); default: all found")
    args = ap.parse_args(argv)
    (low_major, low_minor), numpy_floor = floors()
    assert low_major == 3
    WORK.mkdir(parents=True, exist_ok=True)
    rows, missing = [], []
    with open(WORK / "log.txt", "w") as log:
        for minor in range(low_minor, NEWEST_MINOR + 1):
            if args.python and f"3.{minor}" not in args.python:
                continue
            python = find_python(minor)
            if python is None:
                missing.append(f"3.{minor}")
                continue
            for which in ("oldest", "newest"):
                print(f"Python 3.{minor}, {which} NumPy ...", flush=True)
                row = cell(python, minor, which, numpy_floor, log)
                print(f"  numpy {row['numpy'] or '-'}: {row['result']}", flush=True)
                rows.append(row)
    lines = [
        "# Version matrix",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- floors (pyproject.toml): Python >= {low_major}.{low_minor}, "
        f"NumPy >= {numpy_floor}",
        f"- command: `make test-matrix` (`python tools/matrix.py`); log: "
        f"{(WORK / 'log.txt').relative_to(ROOT)}",
        "",
        "| Python | NumPy | | result | minutes |",
        "|---|---|---|---|---:|",
    ]
    for r in rows:
        minutes = f"{r['minutes']:.1f}" if "minutes" in r else ""
        lines.append(f"| {r['python']} | {r['numpy'] or '-'} | {r['which']} | "
                     f"{r['result']} | {minutes} |")
    if missing:
        lines += ["", f"Not on this machine: Python {', '.join(missing)}."]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if rows and all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
