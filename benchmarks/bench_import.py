"""What ``import breakeven`` costs after NumPy, in fresh interpreters.

Each run starts a new interpreter that imports NumPy and then breakeven,
with ``-X importtime``; the figure is breakeven's cumulative import time
(what ``import breakeven`` adds once NumPy is loaded), the median over the
runs.  The record also lists the modules breakeven's import brought in that
cost the most (``-X importtime``'s self times, medians), and which of the
heavy modules a plain import and a first small call load.

    python benchmarks/bench_import.py [--runs N] [--output FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _common import stamp
from _report import emit, table, targets_table

TARGETS = {"import breakeven after numpy, ms": 50.0}
HEAVY = ("scipy", "joblib", "threadpoolctl", "platformdirs", "matplotlib")
CODE = "import numpy; import breakeven"
PROBE = ("import sys, numpy, breakeven; a = sorted(m for m in {heavy!r} if m in "
         "sys.modules); breakeven.sum(numpy.ones(16)); b = sorted(m for m in "
         "{heavy!r} if m in sys.modules); print(a, b)")


def importtime(code: str) -> dict[str, tuple[int, int]]:
    """{module: (self us, cumulative us)} of one fresh interpreter."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        try:
            own, cumulative = int(parts[0]), int(parts[1])
        except ValueError:  # the header line
            continue
        out[parts[2].strip()] = (own, cumulative)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--output")
    args = ap.parse_args(argv)
    runs = [importtime(CODE) for _ in range(args.runs)]
    total = statistics.median(r["breakeven"][1] for r in runs) / 1e3
    ours = {m for r in runs for m in r if m.startswith("breakeven")}
    # the modules breakeven's import brings in: those not in `import numpy`
    numpy_only = importtime("import numpy")
    brought = {m for r in runs for m in r} - set(numpy_only)
    costly = sorted(((statistics.median(r.get(m, (0, 0))[0] for r in runs) / 1e3, m)
                     for m in brought), reverse=True)[:12]
    probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)],
                           capture_output=True, text=True, check=True).stdout.strip()
    out = ["# What `import breakeven` costs", ""] + stamp() + [
        f"- {args.runs} fresh interpreters, each `python -X importtime -c "
        f"\"{CODE}\"`; the figure is breakeven's cumulative import time, the "
        "median over them", ""]
    out.append(f"`import breakeven` after NumPy: **{total:.1f} ms** (median; "
               f"runs {min(r['breakeven'][1] for r in runs) / 1e3:.1f}-"
               f"{max(r['breakeven'][1] for r in runs) / 1e3:.1f} ms); "
               f"{len(ours)} modules of breakeven, {len(brought)} in all.\n")
    out.append("The modules it brings in that cost the most (self time, median):\n")
    out += table(("module", "ms"), "lr", [(m, f"{ms:.2f}") for ms, m in costly])
    out.append("")
    out.append(f"Heavy modules ({', '.join(HEAVY)}) loaded after `import breakeven`,"
               f" then after `breakeven.sum` of 16 elements: {probe}.\n")
    out += targets_table({"import breakeven after numpy, ms": total}, TARGETS)
    emit(out, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
