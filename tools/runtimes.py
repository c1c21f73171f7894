"""A quick calibration on each OpenMP runtime, side by side: the hot
thresholds and the team's wake-up costs the runtimes give on this host.

Each runtime is a build (or a preload) made by ``make test-runtimes``:

- ``libgomp``: gcc, GNU's runtime (``.venv``, ``make install``);
- ``libomp``: clang, LLVM's runtime (``.venv-libomp``);
- ``libiomp``: the gcc build with Intel's runtime (``pip install
  intel-openmp``) preloaded in place of libgomp (``.venv-intel``).

The runs are interleaved, round after round (the host's noise falls on
each alike), each ``breakeven calibrate --quick --dtypes float64`` into a
profile of its own; a cell is the median over the rounds.  The table goes
to the record ``calibration/runtimes.md``.

    python tools/runtimes.py [--rounds 3] [--output calibration/runtimes.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spin_variables() -> tuple[str, ...]:
    """The settings that change how long idle threads spin, every runtime's
    (breakeven's own list of them)."""
    from breakeven._core.runtimes import SPIN_VARIABLES

    names = {v for per_runtime in SPIN_VARIABLES.values() for v in per_runtime}
    return ("OMP_WAIT_POLICY", *sorted(names))


def builds() -> list[tuple[str, str, dict[str, str]]]:
    """``(runtime, python, extra environment)`` of each build present."""
    out = []
    gomp = ROOT / ".venv" / "bin" / "python"
    if gomp.exists():
        out.append(("libgomp", str(gomp), {}))
    llvm = ROOT / ".venv-libomp" / "bin" / "python"
    if llvm.exists():
        out.append(("libomp", str(llvm), {}))
    intel = ROOT / ".venv-intel"
    iomp = intel / "lib" / "libiomp5.so"
    if iomp.exists():
        out.append(("libiomp", str(intel / "bin" / "python"),
                    {"LD_PRELOAD": str(iomp)}))
    return out


def calibrate(python: str, extra: dict[str, str], output: Path) -> dict:
    """One quick calibration; the host's entry of the profile it wrote."""
    env = {**os.environ, **extra, "BREAKEVEN_HOST_BUDGET": "0"}
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(v, None)
    run = subprocess.run([python, "-m", "breakeven", "calibrate", "--quick",
                          "--dtypes", "float64", "--no-progress",
                          "--output", str(output)],
                         capture_output=True, text=True, env=env, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"{python}: calibrate failed:\n{run.stdout}{run.stderr}")
    info = subprocess.run([python, "-m", "breakeven", "info"], capture_output=True,
                          text=True, env=env, timeout=300).stdout
    host = next(iter(tomllib.loads(output.read_text())["hosts"].values()))
    host["info"] = next((ln.split(None, 1)[1].strip() for ln in info.splitlines()
                         if ln.strip().startswith("runtime")), "?")
    return host


def first_parallel(steps) -> float:
    return next((w for w, t in steps if t > 1), float("inf"))


def cells(host: dict) -> dict[str, float]:
    """The figures of one run: seconds and works."""
    out = {"sleeps after (ms)": host.get("sleep_after_us", 0.0) / 1e3,
           "hot region (us)": min((s for _, s in host.get("team_hot", [])),
                                  default=float("nan")) * 1e6}
    for idle_us, _threads, cost in host.get("wake", []):
        out[f"wake-up after {idle_us / 1e3:g} ms (us)"] = cost * 1e6
    for name, dtypes in sorted(host["kernels"].items()):
        table = dtypes.get("float64")
        if table:
            out[f"{name} hot from"] = first_parallel(table["hot"])
    return out


def fmt(v: float, key: str) -> str:
    if v != v:
        return "n/a"
    if v == float("inf"):
        return "never"
    if key.endswith("from"):
        return f"{v:,.0f}"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output", type=Path, default=ROOT / "calibration" / "runtimes.md")
    args = ap.parse_args(argv)
    found = builds()
    if not found:
        print("no build found: run make test-runtimes", file=sys.stderr)
        return 1
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in found}
    described: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, python, extra in found:
                print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
                host = calibrate(python, extra, Path(tmp) / f"{name}-{r}.toml")
                described[name] = host["info"]
                runs[name].append(cells(host))
    keys = [k for k in runs[found[0][0]][0]]
    for name in runs:
        keys += [k for k in runs[name][0] if k not in keys]
    medians = {name: {k: statistics.median(run.get(k, float("nan")) for run in rs)
                      for k in keys} for name, rs in runs.items()}
    lines = [
        "# Each OpenMP runtime on this host",
        "",
        f"Written by `make test-runtimes` (`tools/runtimes.py`) on "
        f"{datetime.date.today().isoformat()}: `breakeven calibrate --quick "
        f"--dtypes float64` on each runtime's build, interleaved, "
        f"{args.rounds} rounds; each cell is the median over the rounds.",
        "Hot thresholds are the work (elements) from which a call in a loop "
        "runs in parallel; wake-up costs are what a parallel call pays, on "
        "top of a hot one, after the team has been idle that long.",
        "",
        "| runtime | " + " | ".join(name for name in runs) + " |",
        "|---|" + "---:|" * len(runs),
        "| build | " + " | ".join(described[n] for n in runs) + " |",
    ]
    for k in keys:
        row = " | ".join(fmt(medians[n][k], k) for n in runs)
        lines.append(f"| {k} | {row} |")
    names = spin_variables()
    spin = [f"{v}={os.environ[v]}" for v in names if v in os.environ]
    lines += ["", "Spin settings in force: " + (", ".join(spin) if spin else
              "the runtimes' defaults (none of " + ", ".join(names) + " set)") + "."]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
