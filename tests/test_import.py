"""What a plain ``import breakeven`` costs: which heavy modules it loads.

A library takes breakeven as a dependency only if importing it is light.
SciPy is needed only by ``nearest`` (its BLAS), joblib only by ``map`` and
threadpoolctl only when a BLAS library must be capped or described; none of
them may be loaded by the import or by a small call of a drop-in.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ("scipy", "joblib", "threadpoolctl", "dask")


def _loaded_after(code):
    top = "{m.split('.')[0] for m in sys.modules}"
    script = (
        "import sys, json\n"
        f"{code}\n"
        f"print(json.dumps(sorted({top} & {set(HEAVY)!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_module():
    assert _loaded_after("import breakeven") == []


def test_small_sum_loads_no_heavy_module():
    code = (
        "import numpy as np, breakeven\n"
        "assert breakeven.sum(np.ones(16)) == 16.0\n"
        "assert breakeven.cumsum(np.ones(16))[-1] == 16.0\n"
    )
    assert _loaded_after(code) == []


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        ("breakeven.nearest(np.ones((4, 2)), np.ones((3, 2)))", "scipy"),
        ("breakeven.map(breakeven.sum, [np.ones(8)] * 3)", "joblib"),
    ],
)
def test_feature_loads_its_dependency_on_first_use(code, needed):
    # The lazy path must really load the dependency and work: a feature that
    # silently skipped its import would pass the two tests above.
    loaded = _loaded_after(f"import numpy as np, breakeven\n{code}")
    assert needed in loaded


def test_imports_and_dispatches_without_posix_only_modules():
    # As on Windows: no fcntl, no affinity call.  The import, a call and the
    # profile lock (a save) must not need them.
    code = (
        "import sys, os\n"
        "for m in ('fcntl', 'termios', 'resource', 'pwd', 'grp'):\n"
        "    sys.modules[m] = None\n"
        "del os.sched_getaffinity\n"
        "os.process_cpu_count = os.cpu_count  # as where there is no affinity\n"
        "import numpy as np, breakeven\n"
        "assert breakeven.usable_cpus() >= 1\n"
        "assert breakeven.sum(np.ones(16)) == 16.0\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.split() == ["ok"], out.stderr
