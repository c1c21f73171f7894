"""Where profiles live on disk and how they are written: the default path,
an exclusive lock between processes on any OS, atomic writes, and saving a
host's entry into a file that holds others (what it keeps of the file's)."""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from breakeven._profile.format import ProfileError, hosts_text, parse_hosts


def default_profile_path() -> Path:
    """``$BREAKEVEN_PROFILE`` if set, else ``profile.toml`` in the user's
    config directory (platformdirs)."""
    env = os.environ.get("BREAKEVEN_PROFILE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir  # only when a file is looked for

    return Path(user_config_dir("breakeven")) / "profile.toml"


def _lock_file(lock, held: bool) -> None:
    """Take (``held=True``, blocking) or release the exclusive lock of an
    open lock file: the one place that knows how each OS locks a file."""
    if os.name == "nt":
        import msvcrt
        lock.seek(0)  # both calls lock the file's first byte
        if not held:
            msvcrt.locking(lock.fileno(), msvcrt.LK_UNLCK, 1)
            return
        while True:  # LK_LOCK gives up after ten seconds: wait on
            try:
                msvcrt.locking(lock.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue
    import fcntl
    fcntl.flock(lock, fcntl.LOCK_EX if held else fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(target: Path):
    """Hold the lock of ``target`` (its ``.lock`` file beside it) between
    processes, on any OS."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a+") as lock:
        _lock_file(lock, True)
        try:
            yield
        finally:
            _lock_file(lock, False)


def atomic_write(target: Path, text: str) -> None:
    """Replace ``target`` by a file holding ``text``, never leaving it half
    written (a temporary file beside it, then ``os.replace``)."""
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode the file
        # had, or the one a plain open() would have given.
        try:
            mode = os.stat(target).st_mode & 0o777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dirfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def save_entry(target: Path, key: str, entry: dict, replace: bool
               ) -> list[tuple[str, str]]:
    """Write one host's ``entry`` (the file's data, see
    :func:`~breakeven._profile.model.host_entry`) under ``key`` into the
    profile file ``target``, under its lock: the other hosts' entries stay,
    and so do this host's tables that ``entry`` does not replace
    (:func:`keep_from_file`).  Returns the ``(kernel, dtype)`` entries kept
    of the file instead of ``entry``'s."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target):
        hosts = _hosts_of(target)
        old = hosts.get(key)
        kept = keep_from_file(entry, old, replace) if isinstance(old, dict) else []
        hosts[key] = entry
        atomic_write(target, hosts_text(hosts))
    return kept


def _hosts_of(target: Path) -> dict[str, dict]:
    """The host entries of the file about to be written; a file that cannot
    be read is set aside (never destroyed) and counts as empty."""
    if not target.exists():
        return {}
    try:
        return parse_hosts(target.read_text(), target)
    except (ProfileError, OSError, UnicodeDecodeError):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        with contextlib.suppress(OSError):
            os.replace(target, target.with_name(f"{target.name}.unreadable-{stamp}"))
        return {}


def keep_from_file(entry: dict, old: dict, replace: bool) -> list[tuple[str, str]]:
    """Merge into a host's new ``entry`` what it keeps of its ``old`` one:
    the tables of kernels and dtypes it has none for (a calibration of some
    of them keeps the others'), a full calibration's tables over a quick
    one's (unless ``replace``), any calibration's over learned ones, and the
    batch costs if it has none.  Returns the ``(kernel, dtype)`` entries
    kept instead of the new ones."""
    kept = []
    for kname, per in old.get("kernels", {}).items():
        for dname, states in per.items():
            mine = entry["kernels"].setdefault(kname, {})
            new = mine.get(dname)
            if new is None:
                mine[dname] = states
            elif _old_wins(new.get("method"), states.get("method", "full"), replace):
                mine[dname] = states
                kept.append((kname, dname))
    if "batch" in old and "batch" not in entry:
        entry["batch"] = old["batch"]
    return kept


def _old_wins(new_method: str | None, old_method: str, replace: bool) -> bool:
    """Whether a file's entry made by ``old_method`` stays over a new one."""
    if new_method == "learned":  # learned tables never replace a calibration
        return old_method in ("full", "quick")
    return not replace and new_method == "quick" and old_method == "full"
