"""Where profiles live on disk and how they are written: the default path,
an exclusive lock between processes on any OS, and atomic writes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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
