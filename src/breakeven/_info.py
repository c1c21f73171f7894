"""What a bug report needs: ``breakeven info`` and :func:`show_versions`."""

from __future__ import annotations

import os
import sys

from breakeven._version import __version__

__all__ = ["info", "show_versions"]

# The packages breakeven runs with (dependencies, then optional ones).
PACKAGES = ("numpy", "scipy", "threadpoolctl", "joblib", "platformdirs",
            "dask", "distributed", "matplotlib", "Cython")
# The environment variables that change what dispatch does.
ENVIRONMENT = ("BREAKEVEN_PROFILE", "BREAKEVEN_SAVE_LEARNED", "BREAKEVEN_HOST_BUDGET",
               "BREAKEVEN_HOST_BUDGET_DIR", "OMP_NUM_THREADS",
               "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES",
               "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY", "KMP_INIT_AT_FORK",
               "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpus() -> str:
    from breakeven._cpu import cgroup_cpu_limit, usable_cpus

    parts = [f"os.cpu_count {os.cpu_count()}"]
    if hasattr(os, "sched_getaffinity"):
        parts.append(f"affinity {len(os.sched_getaffinity(0))}")
    quota = cgroup_cpu_limit()
    parts.append(f"cgroup quota {quota:g}" if quota is not None
                 else "no cgroup quota")
    return f"{usable_cpus()} usable ({', '.join(parts)})"


def info() -> dict[str, dict[str, str]]:
    """What a bug report needs, by section: the package and Python, the
    host and its usable CPUs, the OpenMP runtime and its settings, the BLAS
    libraries and their threads, the profile in use and its freshness, the
    environment variables that matter and the packages' versions.

    Returns
    -------
    dict
        ``{section: {field: text}}``, in the order :func:`show_versions`
        prints them.
    """
    import platform

    from breakeven._core import tables
    from breakeven._profile import default_profile_path, host_fingerprint

    fp = host_fingerprint()  # with the BLAS libraries (imports threadpoolctl)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    out: dict[str, dict[str, str]] = {}
    out["breakeven"] = {
        "version": __version__,
        "location": os.path.dirname(os.path.abspath(__file__)),
        "python": f"{platform.python_version()} "
                  f"({platform.python_implementation()}, {sys.executable})",
        "platform": platform.platform(),
    }
    from breakeven._core import host

    host.join()  # as a call would: says whether the host's budget can be used
    shared = host.host_budget()
    out["host"] = {
        "cpu": fp.cpu,
        "CPUs": _cpus(),
        "fingerprint": fp.key,
        "core budget": (f"the host's, {shared.reason}: {shared.path}" if shared.joined
                        else f"this process's own: the host's is off, {shared.reason}"),
    }
    out["openmp"] = _openmp_section(fp, pools)
    out["blas"] = {
        f"{p['internal_api']} {p.get('version')}":
            f"{p['num_threads']} threads ({p.get('architecture')}, "
            f"{p.get('threading_layer')}), {p['filepath']}"
        for p in pools if p.get("user_api") == "blas"} or {"none": "loaded"}
    path = default_profile_path()
    out["profile"] = {
        "file": f"{path} ({'exists' if path.exists() else 'does not exist'})",
        "in use": tables.profile_words(),
    }
    out["environment"] = {v: os.environ[v] for v in ENVIRONMENT
                          if v in os.environ} or {"(none set)": ""}
    out["packages"] = {p: _version(p) for p in PACKAGES}
    return out


def _openmp_section(fp, pools: list[dict]) -> dict[str, str]:
    """info()'s "openmp" section: the runtime built for and the one the
    kernels run on, its settings, every runtime loaded and the teams."""
    from breakeven._build import C_COMPILER, C_COMPILER_VERSION
    from breakeven._core import engine, runtimes
    from breakeven._core.openmp import OPENMP_RUNTIME

    compiler = f"{C_COMPILER} {C_COMPILER_VERSION}"
    running = runtimes.running()
    if OPENMP_RUNTIME == "none":
        runtime = "none: built without OpenMP, every kernel runs serially"
    elif running.name != OPENMP_RUNTIME:
        runtime = (f"{running.name} (preloaded in place of {OPENMP_RUNTIME}, "
                   f"which the build links; built with OpenMP, by {compiler})")
    else:
        runtime = f"{OPENMP_RUNTIME} (built with OpenMP, by {compiler})"
    limit = next((p["num_threads"] for p in pools
                  if p.get("user_api") == "breakeven"), None)
    out = {
        "runtime": runtime,
        "max threads": f"omp_get_max_threads() {engine.max_threads()}",
        "wait policy": fp.wait_policy,
        "spin": fp.spin,
        "breakeven limit": ("none" if limit is None or limit >= engine.usable()
                            else str(limit)) + " (threadpoolctl)",
    }
    threads = {os.path.realpath(p["filepath"]): p["num_threads"]
               for p in pools if p.get("user_api") == "openmp"}
    loaded = runtimes.loaded(pools)
    own_pools, shadowed = runtimes.others(loaded)
    for r in loaded:
        role = ("breakeven's kernels run on it" if r.path == running.path
                else "a thread pool of its own: its modules' loops run there, "
                     "beside breakeven's team" if r in own_pools
                else f"unused: calls go to the preloaded {running.name}"
                if r in shadowed else "")
        key, i = f"loaded {r.name}", 2
        while key in out:  # two of a family (a vendored libgomp)
            key, i = f"loaded {r.name} ({i})", i + 1
        out[key] = f"{r.path}: {threads.get(r.path, '?')} threads; {role}".rstrip("; ")
    teams = runtimes.teams()
    if len(teams) > 1:
        out["teams"] = "; ".join(
            f"{i}: {r.name} ({', '.join(_kernels_of_team(i)) or 'no kernel'})"
            for i, r in enumerate(teams))
    return out


def _kernels_of_team(team: int) -> list[str]:
    from breakeven._core import engine
    from breakeven._kernels.registry import KERNELS

    return [k.name for k in KERNELS.values() if engine.kernel_team(k.slot) == team]


def format_info(sections: dict[str, dict[str, str]]) -> str:
    """``info()`` as the text ``breakeven info`` prints."""
    width = max(len(k) for fields in sections.values() for k in fields)
    lines = []
    for name, fields in sections.items():
        lines.append(f"{name}:")
        lines += [f"  {k:<{width}}  {v}".rstrip() for k, v in fields.items()]
    return "\n".join(lines)


def show_versions() -> None:
    """Print what a bug report about breakeven needs.

    The host and its usable CPUs, the OpenMP runtime and its wait and spin
    settings, the BLAS libraries and their threads, the profile in use and
    whether it is stale, the environment variables that change dispatch,
    and the versions of Python and of the packages breakeven uses.  The same
    as ``breakeven info`` at the command line.

    See Also
    --------
    threadpoolctl.threadpool_info : The thread pools (breakeven's among them).

    Examples
    --------
    >>> import breakeven
    >>> breakeven.show_versions()  # doctest: +ELLIPSIS
    breakeven:
      version ...
    """
    print(format_info(info()))
