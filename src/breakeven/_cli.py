"""The ``breakeven`` command line: calibrate, show, plot, check."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from breakeven._calibrate import (
    Settings,
    calibrate,
    load_record,
    measure_point,
    points_from_record,
    save_record,
    thread_candidates,
)
from breakeven._core import decisions, tables
from breakeven._core.engine import DTYPES
from breakeven._core.openmp import NO_OPENMP, OPENMP, usable_cpus
from breakeven._kernels.registry import KERNELS
from breakeven._profile import default_profile_path, host_fingerprint, load_profile
from breakeven._text import duration
from breakeven._version import __version__

__all__ = ["main"]


class CLIError(Exception):
    """An error to print as one line, without a traceback."""


def _kernel_names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise CLIError(f"unknown kernel(s) {', '.join(unknown)}; "
                       f"known: {', '.join(KERNELS)}")
    return names


def _import_modules(modules: list[str] | None) -> list[str]:
    """Import the modules; the kernels they registered (those registered by
    the import, and those whose call is defined in them), in order."""
    before = set(KERNELS)
    for mod in modules or []:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # any import failure is the user's to see
            raise CLIError(f"cannot import module {mod!r}: "
                           f"{type(exc).__name__}: {exc}") from None

    def theirs(k) -> bool:
        where = getattr(k.call, "__module__", None) or ""
        return any(where == m or where.startswith(m + ".") for m in modules or [])

    return [n for n, k in KERNELS.items() if n not in before or theirs(k)]


def _describe(steps) -> str:
    par = [(w, t) for w, t in steps if t > 1]
    if not par:
        return "never"
    text = f"{par[0][0]} ({par[0][1]} thr)"
    if len(par) > 1:
        text += ", " + ", ".join(f"{w} ({t})" for w, t in par[1:])
    return text


def _describe_cold(tables) -> str:
    """The lone-call tables, one per idle time (what dispatch uses)."""
    if len(tables) == 1:
        return _describe(tables[0][1])
    return "; ".join(f"{_idle(gap)}: {_describe(steps)}" for gap, steps in tables)


def _idle(seconds: float) -> str:
    return ">=" + duration(seconds, digits=6)


def format_table(profile, *, composed: bool = False) -> str:
    """The thresholds, one line per kernel and dtype: the profile's own, or,
    ``composed``, what dispatch uses with it (for each registered kernel its
    entry in the profile, else its library's default, else the estimate from
    its calls), with the source of each."""
    head = ["kernel", "dtype", "hot: parallel from work",
            "cold (lone call, by idle time): parallel from work"]
    if composed:
        head.insert(2, "from")
    rows = [tuple(head)]
    names = sorted(set(profile.tables) | (set(KERNELS) if composed else set()))
    for kname in names:
        # a kernel of a library this process has not imported: its entry is
        # kept, and used by the processes that import it
        shown = kname if kname in KERNELS else f"{kname} (not loaded)"
        dtypes = set(profile.tables.get(kname, {}))
        if composed and kname in KERNELS:
            dtypes |= {dt.name for dt in KERNELS[kname].dtypes}
        for dname in sorted(dtypes, reverse=True):
            src = (tables.origin(KERNELS[kname], dname, profile)
                   if composed and kname in KERNELS else None)
            held = src.profile if src is not None else profile
            if held is None:
                row = [shown, dname, "estimated from its calls", ""]
            else:
                row = [shown, dname, _describe(held.steps(kname, dname, "hot")),
                       _describe_cold(held.cold_tables(kname, dname))]
            if composed:
                row.insert(2, src.kind if src is not None else "profile")
            rows.append(tuple(row))
    n = len(head)
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _age(when: str) -> str:
    try:
        t = datetime.datetime.fromisoformat(when)
    except ValueError:
        return "unknown age"
    days = (datetime.datetime.now(datetime.UTC) - t).total_seconds() / 86400
    return f"{days:.0f} days old" if days >= 1 else f"{days * 24:.1f} hours old"


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> int:
    registered = _import_modules(args.module)
    names = _kernel_names(args.kernels)
    if names is None and args.module:
        # --module alone: the kernels those modules register, and only them
        if not registered:
            raise CLIError(f"module(s) {', '.join(args.module)} registered no "
                           "kernel; name them with --kernels")
        names = registered
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise CLIError(f"--dtypes takes {', '.join(DTYPES)}; got {args.dtypes!r}")
    if args.budget is not None and not args.budget > 0:
        raise CLIError("--budget must be a positive number of seconds")
    if not OPENMP:  # the arguments checked first: a typo is still an error
        print(f"{NO_OPENMP}, so there is nothing to calibrate; no profile "
              "written")
        return 0
    target = Path(args.output) if args.output else default_profile_path()
    profile = calibrate(names, budget=args.budget, quick=args.quick,
                        progress=not args.no_progress, dtypes=dtypes)
    try:
        path = profile.save(target, replace=args.replace)
        save_record(profile, path)
    except OSError as exc:
        raise CLIError(f"cannot write the profile to {target}: "
                       f"{exc.strerror or exc}") from None
    print(format_table(profile))
    print()
    sleep = (f"{profile.sleep_after_us / 1e3:g} ms" if profile.sleep_after_us
             else "not measured")
    print(f"OpenMP team goes to sleep after ~{sleep} idle; wake-up penalty "
          + ", ".join(f"{t} threads {s * 1e6:.1f} us"
                      for t, s in sorted(profile.team_penalty.items())))
    if profile.batch:
        print(_batch_line(profile.batch))
    if profile.busy_retries:
        thrice = (f"; measured a third time: {', '.join(profile.looked_thrice)}"
                  if profile.looked_thrice else "")
        print(f"{profile.busy_retries} size(s) measured again: another process "
              f"was on the cores{thrice}")
    if profile.kept:
        print("kept the full calibration of "
              + ", ".join(f"{k} {d}" for k, d in profile.kept)
              + " in the file (a --quick run replaces one only with --replace)")
    print(f"calibrated in {profile.elapsed:.1f} s; profile written to {path} "
          f"(host {profile.fingerprint.key})")
    return 0


def _batch_line(batch: dict) -> str:
    start, task = batch.get("start_s", 0.0), batch.get("task_s", 0.0)
    return (f"joblib threading backend (breakeven.map): {start * 1e3:.1f} ms a "
            f"run, {task * 1e6:.1f} us a task")


def cmd_show(args: argparse.Namespace) -> int:
    _import_modules(args.module)
    path = Path(args.profile) if args.profile else default_profile_path()
    profile = load_profile(path)
    here = host_fingerprint()
    matches = profile.source == str(path)
    if args.json:
        print(json.dumps({
            "source": profile.source,
            "path": str(path),
            "matches_this_host": matches,
            "host": profile.fingerprint.key,
            "fingerprint": profile.fingerprint.as_dict(),
            "calibrated_at": profile.calibrated_at,
            "sleep_after_us": profile.sleep_after_us,
            "batch": profile.batch,
            "kernels": {k: {d: {s: [list(x) for x in st] if isinstance(st, tuple)
                                else st for s, st in v.items()}
                            for d, v in per.items()}
                        for k, per in profile.tables.items()},
            "not_loaded": sorted(k for k in profile.tables if k not in KERNELS),
            "openmp": OPENMP,
        }, indent=2))
        return 0
    print(f"profile:    {profile.source}")
    print(f"host:       {profile.fingerprint.key} ({profile.fingerprint.cpu}, "
          f"{profile.fingerprint.usable_cpus} CPUs, {profile.fingerprint.blas})")
    if matches:
        print("this host:  yes, calibrated here")
    else:
        print(f"this host:  no calibration for this host ({here.key}) in {path}; "
              "using the embedded default (run `breakeven calibrate`)")
    stale = _stale_line(profile)
    if stale:
        print(stale)
    if not OPENMP:
        print(f"openmp:     none: {NO_OPENMP}; the tables below are not used")
    print(f"calibrated: {profile.calibrated_at or 'unknown'} "
          f"({_age(profile.calibrated_at)})")
    if profile.batch:
        print(_batch_line(profile.batch))
    print()
    # what dispatch uses: for each kernel, this host's entry, else its
    # library's default for a similar host, else its estimate
    print(format_table(profile, composed=True))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    try:  # an optional dependency, for this command only
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("plotting needs matplotlib: pip install 'breakeven[plot]'") \
            from None
    path = Path(args.profile) if args.profile else default_profile_path()
    profile = load_profile(path)
    rec = load_record(path, profile.fingerprint.key)
    if rec is None:
        raise CLIError(f"no recorded calibration sweeps for this host beside {path}; "
                       "run `breakeven calibrate` first")
    sweeps = points_from_record(rec)
    keys = sorted(sweeps, key=lambda kd: (kd[0], kd[1] != "float64"))
    cols = 4
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows),
                             squeeze=False)
    for ax, (k, d) in zip(axes.flat, keys, strict=False):
        pts = sweeps[(k, d)]
        works = [p.work for p in pts]
        for t in sorted({t for p in pts for t in p.times}):
            ys = [p.times.get(t, float("nan")) * 1e6 for p in pts]
            ax.loglog(works, ys, marker="o", ms=3,
                      label="serial" if t == 1 else f"{t} threads")
        for state, style in (("hot", "-"), ("cold", ":")):
            thr = profile.threshold(k, d, state)
            if thr:
                ax.axvline(thr, color="k", ls=style, lw=1,
                           label=f"{state} break-even {thr}")
        ax.set_title(f"{k} ({d})", fontsize=10)
        ax.set_xlabel("work")
        ax.set_ylabel("time per call (us)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"breakeven calibration of {profile.fingerprint.cpu}, "
                 f"{profile.fingerprint.usable_cpus} CPUs "
                 f"({profile.calibrated_at})", fontsize=11)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=110)
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"plot written to {args.output}")
    return 0


def _stale_line(profile) -> str:
    """What changed since the calibration, and the one thing to do; "" if
    nothing did."""
    if not profile.stale:
        return ""
    return (f"stale:      calibrated with other libraries "
            f"({'; '.join(profile.stale)}); still used: run `breakeven "
            "calibrate` to measure with these")


# `breakeven check` measures this many times above and below each threshold.
CHECK_FACTOR = 2


def cmd_check(args: argparse.Namespace) -> int:
    from breakeven._core import host

    _import_modules(args.module)
    path = Path(args.profile) if args.profile else default_profile_path()
    profile = load_profile(path)
    stale = _stale_line(profile)
    if stale:
        print(stale)
    names = _kernel_names(args.kernels) or sorted(profile.tables)
    settings = Settings(repeats=7, min_batch_time=0.003)
    cands = thread_candidates(usable_cpus())
    most = max(cands)
    drifted = []
    print(f"checking {profile.source} (host {profile.fingerprint.key})")
    for name in names:
        if name not in KERNELS or name not in profile.tables:
            continue
        for dname in sorted(profile.tables[name], reverse=True):
            if most == 1:
                continue
            thr = profile.threshold(name, dname)
            k = KERNELS[name]
            probes = ([("above", CHECK_FACTOR * thr),
                       ("below", max(1, thr // CHECK_FACTOR))] if thr
                      else [("largest", settings.max_work)])
            verdicts = []
            for where, work in probes:
                with host.suspended():  # as calibration measures
                    p = measure_point(k, np.dtype(dname), work,
                                      [1, most], settings)
                speedup = p.times[1] / p.times[most]
                wins = speedup > 1 + settings.margin
                bad = (where == "above" and not wins) or (where != "above" and wins)
                verdicts.append(f"{where} {p.work}: parallel x{speedup:.2f}"
                                + (" (drifted)" if bad else ""))
                if bad:
                    drifted.append(f"{name}/{dname}")
            print(f"  {name:<10} {dname:<8} threshold "
                  f"{thr if thr else 'never'}: " + "; ".join(verdicts))
    drifted = sorted(set(drifted))
    if drifted:
        print(f"threshold drifted by more than 2x: {', '.join(drifted)}; "
              "run `breakeven calibrate`")
        return 1
    print("all thresholds hold within 2x")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    _import_modules(args.module)
    if args.kernel not in KERNELS:
        raise CLIError(f"unknown kernel {args.kernel!r}; known: {', '.join(KERNELS)}")
    if args.work < 0:
        raise CLIError("work must be >= 0")
    if args.profile:
        tables.use_profile(load_profile(args.profile))
    profile = tables.profile()
    # as a call in a loop finds the team (awake), or as a lone call after
    # the longest idle time the profile measured
    idle = 0.0
    if args.cold:
        gaps = [g for g, _, _ in profile.wake] or [profile.sleep_after_us or 0]
        idle = 2 * max(gaps) / 1e6 or 1.0
    print(decisions.decide(args.kernel, args.work, args.dtype, idle=idle))
    return 0


# ---------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from breakeven._info import format_info, info

    sections = info()
    print(json.dumps(sections, indent=2) if args.json else format_info(sections))
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from breakeven._core import host

    host.join()
    b = host.host_budget(sweep=True)  # the dead processes' cores back first
    if args.json:
        print(json.dumps(asdict(b), indent=2))
    else:
        print(b)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breakeven",
        description="Calibrated serial/parallel dispatch for NumPy kernels.")
    parser.add_argument("--version", action="version",
                        version=f"breakeven {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print what a bug report needs: host, "
                                    "OpenMP, BLAS, profile, versions")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("budget", help="the host's core budget: the processes "
                                      "sharing the cores, what each holds")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("calibrate", help="measure this host and write its profile")
    p.add_argument("--quick", action="store_true",
                   help="coarser and shorter (at most 10 s)")
    p.add_argument("--budget", type=float, help="seconds for the whole run")
    p.add_argument("--kernels", help="comma-separated kernel names (default: all)")
    p.add_argument("--dtypes", default="float64,float32",
                   help="comma-separated dtypes (default: float64,float32)")
    p.add_argument("--module", action="append", metavar="PKG.MOD",
                   help="import a module first, so the kernels it registers "
                        "are calibrated too (repeatable)")
    p.add_argument("--output", metavar="PATH",
                   help="profile file (default: $BREAKEVEN_PROFILE or the user "
                        "config directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--replace", action="store_true",
                   help="let a --quick run replace the entries of a full one")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("show", help="print the profile dispatch would use")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--module", action="append", metavar="PKG.MOD",
                   help="import a module first, so the kernels it registers "
                        "count as loaded (repeatable)")
    p.add_argument("--profile", metavar="PATH", help="profile file to read")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plot", help="plot the recorded calibration sweeps")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    p.add_argument("--profile", metavar="PATH", help="profile file to read")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("check", help="re-measure around each threshold; exit 1 "
                                     "if one drifted by more than 2x")
    p.add_argument("--kernels", help="comma-separated kernel names (default: all)")
    p.add_argument("--module", action="append", metavar="PKG.MOD")
    p.add_argument("--profile", metavar="PATH", help="profile file to read")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explain", help="what dispatch would do with a call of "
                                       "this work, and why")
    p.add_argument("kernel")
    p.add_argument("work", type=int)
    p.add_argument("--dtype", choices=list(DTYPES), default="float64")
    p.add_argument("--cold", action="store_true",
                   help="as a lone call (default: as a call in a loop)")
    p.add_argument("--module", action="append", metavar="PKG.MOD")
    p.add_argument("--profile", metavar="PATH", help="profile file to read")
    p.set_defaults(func=cmd_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"breakeven: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("breakeven: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`breakeven show | head`)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - until exit
        return 0
