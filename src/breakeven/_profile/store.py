"""Loading profiles: from a file, a library's defaults or the embedded
default, with the fallback policy (loading never raises: a file that
cannot be used gives one warning naming it, and the embedded default)."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from breakeven._profile.files import default_profile_path
from breakeven._profile.fingerprint import Fingerprint, host_fingerprint
from breakeven._profile.format import EMBEDDED_DEFAULT, ProfileError, ProfileWarning
from breakeven._profile.model import Profile, host_from_entry, parse_hosts

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(path: Path | str, reason: str) -> None:
    with _warned_lock:
        if (str(path), reason) in _warned:
            return
        _warned.add((str(path), reason))
    warnings.warn(f"breakeven: ignoring profile {path}: {reason}; "
                  "using the embedded default profile", ProfileWarning, stacklevel=3)


def forget_warnings() -> None:
    """Warn again about files already warned about (a new process would)."""
    with _warned_lock:
        _warned.clear()


def _note_once(path: Path | str, sentence: str) -> None:
    """A profile used, with something to say about it (once per file)."""
    with _warned_lock:
        if (str(path), sentence) in _warned:
            return
        _warned.add((str(path), sentence))
    warnings.warn(f"breakeven: profile {path}: {sentence}", ProfileWarning,
                  stacklevel=3)


def _pick_host(hosts: dict[str, dict], fingerprint: Fingerprint) -> Profile | None:
    if fingerprint.key in hosts:
        p = host_from_entry(fingerprint.key, hosts[fingerprint.key],
                            f"hosts.{fingerprint.key}")
        p.stale_against = fingerprint
        return p
    return None


def similar_host(profiles: list[Profile], fingerprint: Fingerprint) -> Profile | None:
    """The entry a host without a calibration of its own borrows from a set
    of reference hosts (an embedded or a library's default): its own, else
    one of the same CPU model and CPU count, else of the same CPU count,
    else the first; None if there is none."""
    if not profiles:
        return None
    for same in (lambda p: p.fingerprint.key == fingerprint.key,
                 lambda p: (p.fingerprint.cpu, p.fingerprint.usable_cpus)
                 == (fingerprint.cpu, fingerprint.usable_cpus),
                 lambda p: p.fingerprint.usable_cpus == fingerprint.usable_cpus):
        chosen = next((p for p in profiles if same(p)), None)
        if chosen is not None:
            return chosen
    return profiles[0]


def read_defaults(source, fingerprint: Fingerprint | None = None,
                  name: str = "default") -> Profile | None:
    """A default profile file (the embedded one, or a library's): the entry
    for this host or a similar one (:func:`similar_host`), its ``source``
    naming the file; None if it has none.  Raises ProfileError or OSError
    if the file cannot be used."""
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
    text = source.read_text()
    hosts = parse_hosts(text, str(source))
    chosen = similar_host([host_from_entry(k, h, f"hosts.{k}")
                           for k, h in sorted(hosts.items())], fingerprint)
    if chosen is not None:
        chosen.source = name
        chosen.stale_against = fingerprint
    return chosen


def embedded_profile(fingerprint: Fingerprint | None = None) -> Profile:
    """The default profile shipped in the package.

    It holds the calibrations of reference hosts (see ``calibration/`` in
    the source tree); this host gets the entry of a similar host
    (:func:`similar_host`).  Its fingerprint stays the reference host's.
    """
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    try:
        chosen = read_defaults(EMBEDDED_DEFAULT, fingerprint, "embedded default")
    except (OSError, ProfileError) as exc:  # a broken install: stay serial
        warnings.warn(f"breakeven: the embedded default profile is unusable ({exc}); "
                      "every call runs serially", ProfileWarning, stacklevel=2)
        chosen = None
    if chosen is None:
        return Profile(fingerprint, {}, "", None, "embedded default (empty)")
    return chosen


def load_profile(path: str | os.PathLike | None = None, *,
                 fingerprint: Fingerprint | None = None) -> Profile:
    """The profile for this host.

    Parameters
    ----------
    path : path-like, optional
        The profile file; default :func:`default_profile_path`.
    fingerprint : Fingerprint, optional
        The host to look up (default: this host).

    Returns
    -------
    Profile
        This host's entry from the file; or the embedded default when the
        file does not exist (silently) or cannot be used (with one
        :class:`ProfileWarning` naming the file and the reason).  Never raises
        because of the file's contents.

    See Also
    --------
    Profile.save : Write a profile into the file.
    calibrate : Measure this host.

    Notes
    -----
    The default file is ``$BREAKEVEN_PROFILE`` if set, else ``profile.toml``
    in the user configuration directory (``~/.config/breakeven/`` on Linux).
    Dispatch loads it once, at the process's first dispatched call.

    Examples
    --------
    >>> import breakeven
    >>> p = breakeven.load_profile("/nonexistent/profile.toml")
    >>> p.source
    'embedded default'
    >>> p.threshold("sum", "float64", "hot") > 0
    True
    """
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    target = Path(path) if path is not None else default_profile_path()
    try:
        if not target.exists():
            return embedded_profile(fingerprint)
        if target.is_dir():
            raise ProfileError("it is a directory")
        try:
            text = target.read_text()
        except PermissionError:
            raise ProfileError("permission denied") from None
        except UnicodeDecodeError:
            raise ProfileError("not a text file") from None
        notes: list[str] = []
        hosts = parse_hosts(text, target, notes)
        for note in notes:
            _note_once(target, note)
        profile = _pick_host(hosts, fingerprint)
        if profile is None:
            others = [host_from_entry(k, h, f"hosts.{k}") for k, h in hosts.items()]
            detail = ""
            if others:
                diffs = others[0].fingerprint.differences(fingerprint)
                detail = " (nearest entry differs in " + "; ".join(diffs[:3]) + ")"
            raise ProfileError(f"it holds no calibration for this host among "
                               f"{len(hosts)} host(s){detail}; run "
                               "`breakeven calibrate`")
        profile.source = str(target)
        return profile
    except ProfileError as exc:
        _warn_once(target, str(exc))
    except OSError as exc:
        _warn_once(target, f"cannot be read ({exc.strerror or exc})")
    return embedded_profile(fingerprint)
