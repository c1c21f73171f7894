"""Sphinx configuration of the breakeven documentation.

Built by ``make docs`` (``sphinx -W``: a warning is an error).  The API pages
are generated from the docstrings of the installed package, so build after
``make install``; the benchmark tables are read from
``benchmarks/results/*.md`` and the command-line reference from the parser of
``breakeven._cli``, so neither can drift from what they describe.
"""

import sys
from pathlib import Path

import breakeven

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "breakeven"
author = "the breakeven developers"
copyright = "2026, the breakeven developers"
version = release = breakeven.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.extlinks",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "breakeven_docs",
]

# -- links to NumPy, SciPy, joblib, Python and Cython -------------------------
# from inventories written here (no network needed: see _ext/inventories.py)
import inventories  # noqa: E402

intersphinx_mapping = inventories.write(HERE.parent / "build" / "docs" / "inventories")
intersphinx_disabled_reftypes = ["std:doc"]
extlinks = {"threadpoolctl": (inventories.THREADPOOLCTL, "threadpoolctl %s")}

exclude_patterns = ["README.md", "examples/**", "_ext/**"]
templates_path = []
root_doc = "index"
default_role = "py:obj"
highlight_language = "python3"
pygments_style = "sphinx"

# -- autodoc / numpydoc ------------------------------------------------------
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Every public function and class: a summary, its parameters documented and
# in order, Returns, See Also and Examples sections.  A missing one fails the
# build.
numpydoc_validation_checks = {
    "GL08",  # no docstring
    "SS01",  # no summary
    "PR01", "PR02", "PR03",  # parameters missing, unknown, out of order
    "RT01",  # no Returns section
    "SA01",  # no See Also section
    "EX01",  # no Examples section
}
numpydoc_validation_exclude = set()

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"breakeven {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
