"""The profile file's format: its version and the older ones it reads,
what a host's entry may hold, the validation of every piece read (parsing
a file's text), and the TOML text written (the format is small and fixed;
no writer dependency needed)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from breakeven._core.engine import DTYPES
from breakeven._profile.fingerprint import Fingerprint, key_of
from breakeven._profile.steps import Steps

FORMAT_VERSION = 2
# The versions this one reads: 1 is converted (Fingerprint: key of the host's
# fields only; spin settings and NumPy's version added).
READABLE_FORMATS = (1, 2)
# A kernel's name: a built-in's short name, or name-spaced ("mylib.relu").
KERNEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# The built-ins' defaults: their tables on breakeven's reference hosts.  A
# plain path: the package holds compiled extensions, so it is always
# installed as files (importlib.resources would cost milliseconds of import).
EMBEDDED_DEFAULT = Path(__file__).parent.parent / "data" / "default_profile.toml"
# What a kernel's entry for one dtype may hold (see Profile.set_table).
ENTRY_KEYS = frozenset({"hot", "cold", "cold_idle", "times", "method"})
# How an entry's tables were made (Profile.set_table).
METHODS = ("full", "quick", "learned")
# A host's [fingerprint] table: each field and its type.
FINGERPRINT_FIELDS = {"cpu": str, "usable_cpus": int, "openmp": str,
                      "wait_policy": str, "blas": str, "breakeven": str,
                      "spin": str, "numpy": str}
# Format 1 keyed a host by every field it had then.
FORMAT_1_KEY_FIELDS = ("cpu", "usable_cpus", "openmp", "wait_policy", "blas",
                       "breakeven")


class ProfileError(ValueError):
    """A profile file that cannot be used, and why."""


class ProfileWarning(UserWarning):
    """A profile file was ignored; dispatch uses the embedded default.

    Issued once per file and reason, by :func:`breakeven.load_profile` and so
    at a process's first dispatched call; the message names the file and
    says why (not TOML, ill-typed, another format version, no entry for this
    host).  A kernel this process has not registered is not a reason: its
    entry is kept for the processes that do.

    See Also
    --------
    load_profile

    Examples
    --------
    Turn it into an error where a calibrated profile is required:

    >>> import warnings, breakeven
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", breakeven.ProfileWarning)
    ...     profile = breakeven.load_profile()
    """


def validate_steps(steps, where: str) -> Steps:
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ProfileError(f"{where}: expected a non-empty list of [work_min, threads]")
    out = []
    for i, step in enumerate(steps):
        if (not isinstance(step, (list, tuple)) or len(step) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           for v in step)):
            raise ProfileError(f"{where}[{i}]: expected [work_min, threads] integers, "
                               f"got {step!r}")
        work_min, threads = step
        if work_min < 0:
            raise ProfileError(f"{where}[{i}]: negative work_min {work_min}")
        if threads < 1:
            raise ProfileError(f"{where}[{i}]: threads {threads} < 1")
        if out and work_min <= out[-1][0]:
            raise ProfileError(f"{where}: work_min not increasing at step {i} "
                               f"({out[-1][0]} then {work_min})")
        out.append((work_min, threads))
    if out[0][0] != 0:
        raise ProfileError(f"{where}: the first step must start at work 0, "
                           f"got {out[0][0]}")
    return tuple(out)


def validate_cold_idle(rows, where: str) -> tuple:
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ProfileError(f"{where}: expected a non-empty list of "
                           "[idle_us, steps]")
    out = []
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2
                or isinstance(row[0], bool) or not isinstance(row[0], (int, float))
                or not row[0] >= 0):
            raise ProfileError(f"{where}[{i}]: expected [idle_us, steps] with "
                               f"idle_us >= 0, got {row!r}")
        if out and row[0] <= out[-1][0]:
            raise ProfileError(f"{where}: idle_us not increasing at {i}")
        out.append((float(row[0]), validate_steps(row[1], f"{where}[{i}]")))
    return tuple(out)


def validate_times(times, where: str) -> tuple:
    if not isinstance(times, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [work, threads, seconds]")
    out = []
    for i, row in enumerate(times):
        if (not isinstance(row, (list, tuple)) or len(row) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool)
                           for v in row[:2])
                or not isinstance(row[2], (int, float)) or isinstance(row[2], bool)):
            raise ProfileError(f"{where}[{i}]: expected [work, threads, seconds], "
                               f"got {row!r}")
        if row[0] < 1 or row[1] < 1 or not row[2] > 0:
            raise ProfileError(f"{where}[{i}]: work >= 1, threads >= 1 and "
                               f"seconds > 0 expected, got {row!r}")
        out.append((int(row[0]), int(row[1]), float(row[2])))
    return tuple(out)


BATCH_FIELDS = ("start_s", "task_s")


def validate_batch(batch, where: str) -> dict[str, float]:
    if not isinstance(batch, dict):
        raise ProfileError(f"{where}: expected a table")
    out = {}
    for name, value in batch.items():
        if name not in BATCH_FIELDS:
            raise ProfileError(f"{where}: unknown field {name!r} (known: "
                               f"{', '.join(BATCH_FIELDS)})")
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not 0 <= value < 10:
            raise ProfileError(f"{where}.{name}: expected seconds in [0, 10), "
                               f"got {value!r}")
        out[name] = float(value)
    return out


def validate_team_hot(rows, where: str) -> dict[int, float]:
    if not isinstance(rows, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [threads, seconds]")
    out = {}
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2
                or isinstance(row[0], bool) or not isinstance(row[0], int)
                or isinstance(row[1], bool) or not isinstance(row[1], (int, float))
                or not row[0] >= 2 or not 0 <= row[1] < 1):
            raise ProfileError(f"{where}[{i}]: expected [threads >= 2, seconds in "
                               f"[0, 1)], got {row!r}")
        out[int(row[0])] = float(row[1])
    return out


def validate_wake(rows, where: str) -> tuple:
    if not isinstance(rows, (list, tuple)):
        raise ProfileError(f"{where}: expected a list of [gap_us, threads, seconds]")
    out = []
    for i, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 3
                or any(isinstance(v, bool) or not isinstance(v, (int, float))
                       for v in row) or not isinstance(row[1], int)):
            raise ProfileError(f"{where}[{i}]: expected [gap_us, threads, seconds], "
                               f"got {row!r}")
        if not (row[0] > 0 and row[1] >= 2 and row[2] >= 0):
            raise ProfileError(f"{where}[{i}]: gap_us > 0, threads >= 2 and "
                               f"seconds >= 0 expected, got {row!r}")
        out.append((float(row[0]), int(row[1]), float(row[2])))
    return tuple(sorted(out))


def validate_entry(where: str, hot, cold, times=None, cold_idle=None,
                   method: str | None = None) -> dict:
    """The entry of one kernel and dtype (see Profile.set_table), each
    piece validated: ``where`` is ``"<kernel>.<dtype>"``."""
    entry = {"hot": validate_steps(hot, f"{where}.hot"),
             "cold": validate_steps(cold, f"{where}.cold")}
    if times:
        entry["times"] = validate_times(times, f"{where}.times")
    if cold_idle:
        entry["cold_idle"] = validate_cold_idle(cold_idle, f"{where}.cold_idle")
    if method is not None:
        if method not in METHODS:
            raise ProfileError(f"{where}.method: one of {', '.join(METHODS)}, "
                               f"got {method!r}")
        entry["method"] = method
    return entry


def validate_fingerprint(fields, where: str) -> Fingerprint:
    if not isinstance(fields, dict):
        raise ProfileError(f"{where}: missing [fingerprint] table")
    for name, typ in FINGERPRINT_FIELDS.items():
        value = fields.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ProfileError(f"{where}.fingerprint.{name}: expected "
                               f"{typ.__name__}, got {value!r}")
    return Fingerprint(**{k: fields[k] for k in FINGERPRINT_FIELDS})


def validate_kernels(kernels, where: str) -> dict:
    """A host's ``kernels`` table (a dict): ``{kernel: {dtype: entry}}``."""
    tables: dict[str, dict[str, dict]] = {}
    for kname, per_dtype in kernels.items():
        # A kernel of a library this process has not imported is kept (and
        # saved again) all the same; dispatch uses the entries of the
        # kernels registered, when they are.
        if not isinstance(kname, str) or not KERNEL_NAME.match(kname):
            raise ProfileError(f"{where}.kernels: {kname!r} is not a kernel name")
        if not isinstance(per_dtype, dict):
            raise ProfileError(f"{where}.kernels.{kname}: expected a table")
        for dname, states in per_dtype.items():
            if dname not in DTYPES:
                raise ProfileError(f"{where}.kernels.{kname}: unknown dtype {dname!r}")
            if not isinstance(states, dict) or not {"hot", "cold"} <= set(states) \
                    or not set(states) <= ENTRY_KEYS:
                raise ProfileError(f"{where}.kernels.{kname}.{dname}: expected "
                                   "'hot' and 'cold' step tables (and 'times', "
                                   "'cold_idle')")
            tables.setdefault(kname, {})[dname] = validate_entry(
                f"{kname}.{dname}", states["hot"], states["cold"],
                states.get("times"), states.get("cold_idle"), states.get("method"))
    return tables


def validate_host(key: str, data, where: str) -> dict:
    """A host's entry, validated: the fields of its :class:`Profile`
    (``fingerprint``, ``tables``, ``calibrated_at``, ...)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a table")
    fingerprint = validate_fingerprint(data.get("fingerprint"), where)
    sleep = data.get("sleep_after_us")
    if sleep is not None and (not isinstance(sleep, (int, float))
                              or isinstance(sleep, bool) or sleep < 0):
        raise ProfileError(f"{where}.sleep_after_us: expected a non-negative number")
    when = data.get("calibrated_at", "")
    if not isinstance(when, str):
        raise ProfileError(f"{where}.calibrated_at: expected a string")
    if not isinstance(data.get("kernels", {}), dict):
        raise ProfileError(f"{where}.kernels: expected a table")
    host = {"fingerprint": fingerprint, "calibrated_at": when,
            "sleep_after_us": None if sleep is None else float(sleep),
            "batch": validate_batch(data.get("batch", {}), f"{where}.batch"),
            "wake": validate_wake(data.get("wake", []), f"{where}.wake"),
            "team_hot": validate_team_hot(data.get("team_hot", []),
                                          f"{where}.team_hot"),
            "tables": validate_kernels(data.get("kernels", {}), where)}
    if key != fingerprint.key:
        raise ProfileError(f"{where}: the key does not match its fingerprint "
                           "(edited by hand?)")
    return host


def parse_hosts(text: str, path: Path | str, notes: list | None = None
                ) -> dict[str, dict]:
    """Parse and validate a profile file; returns its raw host tables, in
    the current format.  A file of an older format this version reads is
    converted (``notes`` receives a sentence saying so)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"not valid TOML ({exc})") from None
    fmt = data.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise ProfileError("missing or non-integer 'format' version")
    if fmt not in READABLE_FORMATS:
        raise ProfileError(f"format version {fmt} is not supported (this breakeven "
                           f"reads versions {', '.join(map(str, READABLE_FORMATS))})")
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ProfileError("'hosts' must be a table")
    if fmt == 1:
        hosts = from_format_1(hosts)
        if notes is not None and hosts:
            notes.append(f"it is of format 1, read as format {FORMAT_VERSION} "
                         "(a BLAS or breakeven upgrade now leaves a calibration "
                         "in use, marked stale); the next save writes format "
                         f"{FORMAT_VERSION}")
    for key, host in hosts.items():
        validate_host(key, host, f"hosts.{key}")
    return hosts


def format_1_key(fields: dict) -> str:
    """The key of a host in a profile of format 1: of every field it had."""
    return key_of(fields, FORMAT_1_KEY_FIELDS)


def from_format_1(hosts: dict) -> dict:
    """Format 1's hosts: keyed by a hash of every fingerprint field, and
    without the spin settings and NumPy's version.  Re-keyed by the host's
    fields (the key check of format 1 kept)."""
    out = {}
    for key, data in hosts.items():
        fp = data.get("fingerprint") if isinstance(data, dict) else None
        if not isinstance(fp, dict):
            out[key] = data  # the validation says what is wrong
            continue
        fp = {**fp, "spin": fp.get("spin", "default"), "numpy": fp.get("numpy", "")}
        try:
            old_key = format_1_key(fp)
        except (KeyError, TypeError):
            out[key] = data
            continue
        if key != old_key:
            raise ProfileError(f"hosts.{key}: the key does not match its "
                               "fingerprint (edited by hand?)")
        data = {**data, "fingerprint": fp}
        try:
            new_key = Fingerprint(**fp).key
        except TypeError:
            out[key] = data
            continue
        out[new_key] = data
    return out


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)  # a valid TOML basic string


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def hosts_text(hosts: dict[str, dict]) -> str:
    lines = ["# breakeven profile: calibrated serial/parallel thresholds.",
             "# Written by `breakeven calibrate`; one [hosts.<key>] per host.",
             f"format = {FORMAT_VERSION}", ""]
    for key in sorted(hosts):
        host = hosts[key]
        lines.append(f"[hosts.{_toml_str(key)}]")
        for name in ("calibrated_at", "sleep_after_us", "wake", "team_hot"):
            if name in host:
                lines.append(f"{name} = {_toml_value(host[name])}")
        lines.append("")
        lines.append(f"[hosts.{_toml_str(key)}.fingerprint]")
        for name, value in host["fingerprint"].items():
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
        if host.get("batch"):
            lines.append(f"[hosts.{_toml_str(key)}.batch]")
            for name, value in host["batch"].items():
                lines.append(f"{name} = {_toml_value(value)}")
            lines.append("")
        for kname in sorted(host.get("kernels", {})):
            for dname in sorted(host["kernels"][kname]):
                states = host["kernels"][kname][dname]
                lines.append(f"[hosts.{_toml_str(key)}.kernels.{_toml_str(kname)}."
                             f"{dname}]")
                for state in ("method", "hot", "cold", "cold_idle", "times"):
                    if state in states:
                        lines.append(f"{state} = {_toml_value(states[state])}")
                lines.append("")
    return "\n".join(lines)
