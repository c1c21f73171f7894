"""The OpenMP runtimes of this process: the one breakeven's kernels run on,
the others loaded beside it, each registered kernel's team, and what each
runtime's settings and fork behaviour are.

Three runtimes matter (threadpoolctl's names):

- ``libgomp``, GNU's (gcc).  Idle threads spin for ``GOMP_SPINCOUNT``
  iterations, then sleep; its thread pool does not survive ``fork``: a
  child of a parent that ran a parallel region hangs at its own first one.
- ``libomp``, LLVM's (clang; macOS wheels).  Idle threads spin for
  ``KMP_BLOCKTIME`` (200 ms by default), ``KMP_LIBRARY`` sets the mode; a
  forked child starts a new pool.
- ``libiomp``, Intel's (libiomp5; conda, ``pip install intel-openmp``),
  from the same sources as LLVM's: the same settings and fork behaviour.
  It provides libgomp's entry points too, so preloaded (``LD_PRELOAD``) it
  runs a gcc build's loops in place of libgomp.

Where a loop runs is where the symbol lookup of its module leads: to a
preloaded runtime (or one loaded with ``RTLD_GLOBAL``) if there is one,
else to the runtime the module links.  A library that vendors its own
runtime (scikit-learn's wheels ship a renamed libgomp) then has a thread
pool of its own beside breakeven's: a second *team*, whose threads wake
and sleep apart.  The dispatch core keeps each team's state apart
(``Team`` in state.pxi); this module gives each registered kernel its team.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from dataclasses import dataclass

from breakeven._core.engine import (
    FORK_RULE_NEVER,
    FORK_RULE_UNLESS_KMP,
    MAX_TEAM_COUNT,
    env_is_false,
    set_team_fork,
    team_survives_fork,
)
from breakeven._core.openmp import OPENMP_RUNTIME, runtime_file

# A runtime's family from its file name (threadpoolctl's prefixes); the
# first that matches wins ("libiomp5" before "libomp").
FAMILIES = (("libiomp", "libiomp"), ("libgomp", "libgomp"), ("libomp", "libomp"),
            ("vcomp", "vcomp"))
# The environment variables that set how long a runtime's idle threads spin
# before they sleep: they change what waking the team costs (part of a
# host's fingerprint).  OMP_WAIT_POLICY, the standard one, is its own field.
SPIN_VARIABLES = {"libgomp": ("GOMP_SPINCOUNT",),
                  "libomp": ("KMP_BLOCKTIME", "KMP_LIBRARY"),
                  "libiomp": ("KMP_BLOCKTIME", "KMP_LIBRARY")}
# Whether a forked child of a parent that ran the runtime's regions can run
# regions of its own: LLVM's and Intel's start a new pool in the child from
# a fork handler they register when they start, unless KMP_INIT_AT_FORK is
# false then (scikit-learn sets it so, when imported); libgomp never does.
# The core applies the rule (engine.team_survives_fork).
FORK_RULES = {"libomp": FORK_RULE_UNLESS_KMP, "libiomp": FORK_RULE_UNLESS_KMP}


def family(path: str) -> str:
    """The runtime family of a library file (``"unknown"`` if none)."""
    name = os.path.basename(path).lower()
    return next((f for prefix, f in FAMILIES if name.startswith(prefix)), "unknown")


@dataclass(frozen=True)
class Runtime:
    """An OpenMP runtime library loaded in this process.

    Attributes
    ----------
    name : str
        Its family: ``"libgomp"``, ``"libomp"``, ``"libiomp"``, ``"vcomp"``
        (``"none"`` for a build without OpenMP).
    path : str
        Its file (``""`` if not known).
    """

    name: str
    path: str

    @property
    def fork_rule(self) -> int:
        return FORK_RULES.get(self.name, FORK_RULE_NEVER)

    @property
    def fork_safe(self) -> bool:
        """Whether a child forked now could run its parallel regions (if
        it started after KMP_INIT_AT_FORK was last changed)."""
        return (self.fork_rule == FORK_RULE_UNLESS_KMP
                and not env_is_false("KMP_INIT_AT_FORK"))

    def spin(self, environ=None) -> str:
        """Its spin settings in force (``"default"`` if none is set)."""
        env = os.environ if environ is None else environ
        set_ = [f"{v}={env[v]}" for v in SPIN_VARIABLES.get(self.name, ()) if v in env]
        return ";".join(set_) or "default"

    def __str__(self) -> str:
        return f"{self.name} ({self.path})" if self.path else self.name


def _real(path: str) -> str:
    with contextlib.suppress(OSError):
        return os.path.realpath(path)
    return path


_running: Runtime | None = None


def running() -> Runtime:
    """The runtime breakeven's own kernels run on: the one the build linked
    (:data:`~breakeven._core.openmp.OPENMP_RUNTIME`), or one preloaded in its
    place."""
    global _running
    if _running is None:
        path = runtime_file()
        _running = (Runtime(family(path), _real(path)) if path
                    else Runtime(OPENMP_RUNTIME, ""))
    return _running


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _file_of(function) -> str | None:
    """The library file a ctypes function pointer lies in (dladdr)."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (AttributeError, OSError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    address = ctypes.cast(function, ctypes.c_void_p).value
    if not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return _real(os.fsdecode(info.dli_fname))


def _provider(handle) -> str | None:
    """The file providing ``omp_get_max_threads`` in a handle's scope."""
    try:
        return _file_of(handle.omp_get_max_threads)
    except (AttributeError, OSError, ValueError):
        return None


def global_runtime() -> str | None:
    """The file of a runtime in the process's global scope (preloaded, or
    loaded with ``RTLD_GLOBAL``): every module's OpenMP calls bind to it.
    None if there is none (the usual case: Python loads extension modules
    with ``RTLD_LOCAL``)."""
    if sys.platform == "win32":
        return None
    return _provider(ctypes.CDLL(None))


def module_runtime(file: str) -> str | None:
    """The file of the runtime a loaded extension module's OpenMP calls run
    on: the global one if any, else the one it links (None: it links
    none, or this cannot be told on this platform)."""
    if sys.platform == "win32":
        return None
    found = global_runtime()
    if found is not None:
        return found
    try:
        handle = ctypes.CDLL(file, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return None
    return _provider(handle)


# The teams: index i is the runtime file of team i (0: breakeven's own).
_teams: list[str] = []
_teams_lock = threading.Lock()


def teams() -> list[Runtime]:
    """The teams kernels have been given, in team order (0: breakeven's)."""
    with _teams_lock:
        if not _teams:
            return [running()]
        return [running()] + [Runtime(family(p), p) for p in _teams[1:]]


def _module_file(function) -> str | None:
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if not file or not file.endswith((".so", ".pyd", ".dylib")):
        return None
    return file


def team_for(*functions) -> int:
    """The team of a kernel whose code is ``functions`` (its call and
    variants): that of the first one in an extension module of another
    package whose OpenMP runtime is known; 0 (breakeven's) otherwise."""
    for function in functions:
        module = getattr(function, "__module__", None) or ""
        if not module or module == "breakeven" or module.startswith("breakeven."):
            continue
        file = _module_file(function)
        path = module_runtime(file) if file else None
        if path is None:
            continue
        return _team_index(path)
    return 0


def _team_index(path: str) -> int:
    own = running().path
    if not own or path == own:
        return 0
    with _teams_lock:
        if not _teams:
            _teams.append(own)
        if path not in _teams:
            if len(_teams) >= MAX_TEAM_COUNT:
                return len(_teams) - 1  # shares the last team's state
            _teams.append(path)
            set_team_fork(len(_teams) - 1, Runtime(family(path), path).fork_rule)
        return _teams.index(path)


def loaded(pools: list[dict] | None = None) -> list[Runtime]:
    """Every OpenMP runtime library loaded in this process, breakeven's
    first: from threadpoolctl's ``threadpool_info()`` (``pools``, if the
    caller has it already)."""
    if pools is None:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
    found = [Runtime(family(p["filepath"]), _real(p["filepath"]))
             for p in pools if p.get("user_api") == "openmp"]
    own = running()
    return sorted({r.path: r for r in found}.values(), key=lambda r: r.path != own.path)


def others(found: list[Runtime] | None = None
           ) -> tuple[list[Runtime], list[Runtime]]:
    """The runtimes loaded beside breakeven's: ``(pools, shadowed)``.
    ``pools`` have thread pools of their own (their modules' loops run
    there); ``shadowed`` are loaded but a global runtime takes their calls
    (an Intel runtime preloaded in place of libgomp leaves libgomp loaded,
    unused)."""
    own = running()
    rest = [r for r in (loaded() if found is None else found) if r.path != own.path]
    if global_runtime() is not None:
        return [], rest
    return rest, []


def survives_fork(team: int = 0) -> bool:
    """Whether a child forked now could run the team's regions (the core's
    rule step 1, as the fork handler will apply it): the team's runtime
    starts a new pool in a child, and KMP_INIT_AT_FORK was not false when
    the team started, nor is now."""
    return team_survives_fork(team)


_pools_seen: tuple[int, list[Runtime]] = (-1, [])


def other_pools() -> list[Runtime]:
    """:func:`others`' pools, looked up again only when modules were
    imported since (a runtime comes with an extension module): cheap
    enough for every ``explain``."""
    global _pools_seen
    n = len(sys.modules)
    if _pools_seen[0] != n:
        try:
            pools = others()[0]
        except Exception:  # threadpoolctl missing or failing: say nothing
            pools = []
        _pools_seen = (n, pools)
    return _pools_seen[1]


def configure() -> None:
    """Tell the core whether breakeven's own team survives fork."""
    set_team_fork(0, running().fork_rule)
