"""Intersphinx inventories written at build time, for a build with no network.

Sphinx's intersphinx downloads each project's ``objects.inv``; the machines
that build these docs may have no network, and a failed download is a
warning (an error under ``-W``).  So the objects these pages and docstrings
refer to are listed here, with their pages on each project's site, and
written as inventories that ``conf.py`` hands to intersphinx as local files.
threadpoolctl has no Sphinx site: it is linked to its README instead.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# project: (base URL, {name: (domain:role, page#anchor with $ for the name)})
_NP = "reference/generated/{}.html#$"
SITES = {
    "python": ("https://docs.python.org/3/", {
        "os.sched_getaffinity": ("py:function", "library/os.html#$"),
        "os.cpu_count": ("py:function", "library/os.html#$"),
        "os.fork": ("py:function", "library/os.html#$"),
        "threading.Thread": ("py:class", "library/threading.html#$"),
        "multiprocessing": ("py:module", "library/multiprocessing.html#module-$"),
        "concurrent.futures.ThreadPoolExecutor":
            ("py:class", "library/concurrent.futures.html#$"),
        "warnings.warn": ("py:function", "library/warnings.html#$"),
        "pathlib.Path": ("py:class", "library/pathlib.html#$"),
    }),
    "numpy": ("https://numpy.org/doc/stable/", {
        **{f"numpy.{f}": ("py:function", _NP.format(f"numpy.{f}"))
           for f in ("sum", "dot", "exp", "cumsum", "histogram", "argmin",
                     "asarray", "empty", "empty_like", "result_type")},
        "numpy.ndarray": ("py:class", _NP.format("numpy.ndarray")),
        "numpy.dtype": ("py:class", _NP.format("numpy.dtype")),
    }),
    "scipy": ("https://docs.scipy.org/doc/scipy/", {
        "scipy.spatial.distance.cdist":
            ("py:function", _NP.format("scipy.spatial.distance.cdist")),
        "scipy.linalg.blas": ("py:module", "reference/linalg.blas.html#module-$"),
    }),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", {
        "joblib.Parallel": ("py:class", "generated/joblib.Parallel.html#$"),
        "joblib.parallel_config":
            ("py:class", "generated/joblib.parallel_config.html#$"),
        "joblib.cpu_count": ("py:function", "generated/joblib.cpu_count.html#$"),
        "joblib.delayed": ("py:function", "generated/joblib.delayed.html#$"),
    }),
    "cython": ("https://cython.readthedocs.io/en/latest/", {
        "cython.parallel.prange":
            ("py:function", "src/userguide/parallelism.html#$"),
        "cython.parallel.parallel":
            ("py:function", "src/userguide/parallelism.html#$"),
    }),
}
THREADPOOLCTL = "https://github.com/joblib/threadpoolctl#%s"


def write(directory: Path) -> dict[str, tuple[str, str]]:
    """Write ``<project>.inv`` for each site into ``directory``; returns the
    ``intersphinx_mapping`` that reads them."""
    directory.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (url, objects) in SITES.items():
        body = "".join(f"{name} {role} 1 {uri} -\n"
                       for name, (role, uri) in sorted(objects.items()))
        header = (f"# Sphinx inventory version 2\n# Project: {project}\n"
                  "# Version: \n# The remainder of this file is compressed "
                  "using zlib.\n").encode()
        path = directory / f"{project}.inv"
        path.write_bytes(header + zlib.compress(body.encode()))
        mapping[project] = (url, str(path))
    return mapping
