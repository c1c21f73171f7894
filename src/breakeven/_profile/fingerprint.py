"""A host's fingerprint: the fields that say which host a profile's entry
is for (CPU, usable CPUs, OpenMP runtime and its spin settings, BLAS,
versions) and the key made of them."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breakeven._core.openmp import usable_cpus
from breakeven._core.runtimes import running
from breakeven._interop.blas import blas_libraries
from breakeven._version import __version__


@dataclass(frozen=True)
class Fingerprint:
    """What a calibration's figures depend on.

    Two kinds of field.  The host's own (``cpu``, ``usable_cpus``,
    ``openmp`` runtime, its ``wait_policy`` and ``spin`` settings) decide
    what a parallel region costs: a calibration of another is not this
    host's, and :attr:`key`, which finds a host's entry in a profile file,
    is made of them alone.  The libraries' (``blas``, ``numpy``,
    ``breakeven`` versions) may move a threshold a little: a calibration
    made with others is still used, and called stale (:meth:`stale`), so
    that an upgrade does not silently turn a calibrated host into an
    uncalibrated one.
    """

    cpu: str
    usable_cpus: int
    openmp: str
    wait_policy: str
    blas: str
    breakeven: str
    spin: str = "default"
    numpy: str = ""

    HOST = ("cpu", "usable_cpus", "openmp", "wait_policy", "spin")
    LIBRARIES = ("blas", "numpy", "breakeven")

    @property
    def key(self) -> str:
        """A short stable identifier of the host's fields."""
        return key_of(self.as_dict(), self.HOST)

    def as_dict(self) -> dict:
        return {"cpu": self.cpu, "usable_cpus": self.usable_cpus,
                "openmp": self.openmp, "wait_policy": self.wait_policy,
                "spin": self.spin, "blas": self.blas, "numpy": self.numpy,
                "breakeven": self.breakeven}

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable fields in which ``other`` differs from this one."""
        a, b = self.as_dict(), other.as_dict()
        return [f"{k} {b[k]!r} (this host: {a[k]!r})" for k in a if a[k] != b[k]]

    def stale(self, now: Fingerprint) -> list[str]:
        """The libraries that changed since a calibration with this
        fingerprint, ``now`` being the host's: ``["numpy 2.3.0 -> 2.4.6",
        ...]`` (empty: not stale)."""
        a, b = self.as_dict(), now.as_dict()
        return [f"{k} {a[k] or 'unknown'} -> {b[k] or 'unknown'}"
                for k in self.LIBRARIES if a[k] != b[k]]


def key_of(fields: dict, names) -> str:
    """A short stable identifier of the named ``fields``."""
    import hashlib  # milliseconds of import: only when a key is computed
    text = json.dumps({k: fields[k] for k in names}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def most_similar(references: list[Fingerprint], here: Fingerprint) -> int | None:
    """Which of a set of reference hosts (an embedded or a library's
    default) a host without a calibration of its own borrows from: its own,
    else one of the same CPU model and CPU count, else of the same CPU
    count, else the first.  Its index; None if there is none."""
    if not references:
        return None
    for same in (lambda fp: fp.key == here.key,
                 lambda fp: (fp.cpu, fp.usable_cpus) == (here.cpu, here.usable_cpus),
                 lambda fp: fp.usable_cpus == here.usable_cpus):
        chosen = next((i for i, fp in enumerate(references) if same(fp)), None)
        if chosen is not None:
            return chosen
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _blas_info() -> str:
    """The BLAS libraries as threadpoolctl sees them."""
    # Only a fingerprint with the libraries' versions needs them: the host
    # key does not, so a process that only dispatches pays for no scan.
    blas = [f"{lib.get('internal_api')} {lib.get('version')} "
            f"{lib.get('architecture')} {lib.get('threading_layer')}"
            for lib in blas_libraries()]
    return "; ".join(sorted(set(blas))) or "none"


_fingerprint_cache: dict[bool, Fingerprint] = {}
# Reentrant: the full fingerprint scans the libraries through threadpoolctl,
# which asks breakeven's controller for the profile, which needs the key.
_fingerprint_lock = threading.RLock()


def host_fingerprint(refresh: bool = False, *, libraries: bool = True
                     ) -> Fingerprint:
    """This host's fingerprint (cached; ``refresh=True`` recomputes it).

    ``libraries=False`` leaves the BLAS libraries out (``blas == ""``): the
    key, which finds the host's entry, does not depend on them, and looking
    them up imports threadpoolctl and SciPy.
    """
    with _fingerprint_lock:
        if refresh:
            _fingerprint_cache.clear()
        fp = _fingerprint_cache.get(libraries)
        if fp is None:
            # the runtime the kernels run on (one preloaded in place of the
            # build's counts), with its own spin settings
            runtime = running()
            fp = Fingerprint(
                cpu=_cpu_model(),
                usable_cpus=usable_cpus(),
                openmp=runtime.name,
                wait_policy=os.environ.get("OMP_WAIT_POLICY", "default").lower(),
                blas=_blas_info() if libraries else "",
                breakeven=__version__,
                spin=runtime.spin(),
                numpy=np.__version__,
            )
            _fingerprint_cache[libraries] = fp
        return fp
