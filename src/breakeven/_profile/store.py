"""Loading profiles: from a file, a library's defaults or the embedded
default, with the fallback policy (loading never raises: a file that
cannot be used gives one warning naming it, and the embedded default)."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from breakeven._profile.files import default_profile_path
from breakeven._profile.fingerprint import Fingerprint, host_fingerprint, most_similar
from breakeven._profile.format import (
    EMBEDDED_DEFAULT,
    ProfileError,
    ProfileWarning,
    parse_hosts,
)
from breakeven._profile.model import Profile, host_from_entry

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _first_time(path: Path | str, message: str) -> bool:
    """Whether ``message`` about the file at ``path`` is new to this process."""
    with _warned_lock:
        if (str(path), message) in _warned:
            return False
        _warned.add((str(path), message))
        return True


def _warn_once(path: Path | str, reason: str) -> None:
    if _first_time(path, reason):
        warnings.warn(f"breakeven: ignoring profile {path}: {reason}; using the "
                      "embedded default profile", ProfileWarning, stacklevel=3)


def _note_once(path: Path | str, sentence: str) -> None:
    """A profile used, with something to say about it (once per file)."""
    if _first_time(path, sentence):
        warnings.warn(f"breakeven: profile {path}: {sentence}", ProfileWarning,
                      stacklevel=3)


def forget_warnings() -> None:
    """Warn again about files already warned about (a new process would)."""
    with _warned_lock:
        _warned.clear()


def read_defaults(source, fingerprint: Fingerprint | None = None,
                  name: str = "default") -> Profile | None:
    """A default profile file (the embedded one, or a library's): the entry
    for this host or a similar one (:func:`.fingerprint.most_similar`), its
    ``source`` naming the file; None if it has none.  Raises ProfileError or
    OSError if the file cannot be used."""
    fingerprint = fingerprint or host_fingerprint(libraries=False)
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
    text = source.read_text()
    hosts = parse_hosts(text, str(source))
    references = [host_from_entry(k, h, f"hosts.{k}")
                  for k, h in sorted(hosts.items())]
    index = most_similar([p.fingerprint for p in references], fingerprint)
    if index is None:
        return None
    chosen = references[index]
    chosen.source = name
    chosen.stale_against = fingerprint
    return chosen


def embedded_profile(fingerprint: Fingerprint | None = None) -> Profile:
    """The default profile shipped in the package.

    It holds the calibrations of reference hosts (see ``calibration/`` in
    the source tree); this host gets the entry of a similar host
    (:func:`.fingerprint.most_similar`).  Its fingerprint stays the
    reference host's.
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
        return _hosts_entry(target, fingerprint)
    except ProfileError as exc:
        _warn_once(target, str(exc))
    except OSError as exc:
        _warn_once(target, f"cannot be read ({exc.strerror or exc})")
    return embedded_profile(fingerprint)


def _hosts_entry(target: Path, fingerprint: Fingerprint) -> Profile:
    """The entry for the host ``fingerprint`` in the profile file ``target``;
    raises ProfileError (or OSError) saying why there is none to use."""
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
    if fingerprint.key not in hosts:
        raise ProfileError(_no_entry(hosts, fingerprint))
    profile = host_from_entry(fingerprint.key, hosts[fingerprint.key],
                              f"hosts.{fingerprint.key}")
    profile.stale_against = fingerprint
    profile.source = str(target)
    return profile


def _no_entry(hosts: dict[str, dict], fingerprint: Fingerprint) -> str:
    """Why a file of these ``hosts`` has no entry to use for this host."""
    detail = ""
    if hosts:
        key, nearest = next(iter(hosts.items()))
        differs = host_from_entry(key, nearest, f"hosts.{key}").fingerprint \
            .differences(fingerprint)
        detail = " (nearest entry differs in " + "; ".join(differs[:3]) + ")"
    return (f"it holds no calibration for this host among {len(hosts)} host(s)"
            f"{detail}; run `breakeven calibrate`")
