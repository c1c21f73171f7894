"""Helpers shared by the benchmark scripts (not a benchmark itself).

- :func:`blas_info`, :func:`ratio_range`: the header's BLAS line, and the
  batch-wise ratio statistics every table uses (how figures and tables are
  written is ``_report``'s);
- :func:`log`: progress, to stderr (the record goes to its file);
- :func:`dropin`: the drop-in call equivalent to a kernel's sample arguments;
- :func:`stamp`: the date / host fingerprint / versions lines of a header;
- :class:`Blas`: BLAS thread counts set through one cached threadpoolctl
  controller (cheap enough to switch between timing batches);
- :class:`Staged`: candidates for
  ``breakeven._calibrate.timing.time_interleaved`` with a
  per-batch setup and teardown that run outside the timed region.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from threadpoolctl import ThreadpoolController

import breakeven as be
from breakeven._core.openmp import usable_cpus


def blas_info() -> str:
    """The BLAS libraries threadpoolctl sees: API, version, kernel, threading."""
    parts = []
    for lib in ThreadpoolController().info():
        if lib.get("user_api") == "blas":
            parts.append(f"{lib.get('internal_api')} {lib.get('version')} "
                         f"({lib.get('architecture')}, {lib.get('threading_layer')}, "
                         f"{os.path.basename(lib.get('filepath', ''))})")
    return "; ".join(parts) or "none found"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ratio_range(a, b) -> tuple[float, float, float]:
    """Median, min and max of the batch-wise ratio a/b (batches paired)."""
    r = np.array(a.samples) / np.array(b.samples)
    return float(np.median(r)), float(r.min()), float(r.max())


def add_runs_option(ap, what: str, default: int) -> None:
    """``--runs N``: how many times ``what`` is measured (1 with --quick)."""
    ap.add_argument("--runs", type=int, default=None,
                    help=f"how many times {what} (default {default}, 1 with "
                         "--quick)")


def runs_option(ap, args, default: int) -> int:
    runs = args.runs if args.runs is not None else (1 if args.quick else default)
    if runs < 1:
        ap.error("--runs must be at least 1")
    return runs


def dropin(name, args):
    """The drop-in call equivalent to the kernel's arguments, with them bound
    in advance (as locals are in a user's loop), so that the call costs no
    more Python than the candidates' ``kernel.serial(*args)``."""
    a = tuple(args)
    if name == "sum":
        return lambda x=a[0]: be.sum(x)
    if name == "dot":
        return lambda x=a[0], y=a[1]: be.dot(x, y)
    if name == "axpy":
        return lambda s=a[0], x=a[1], y=a[2]: be.axpy(s, x, y)
    if name == "exp":
        return lambda x=a[0], o=a[1]: be.exp(x, out=o)
    if name == "cumsum":
        return lambda x=a[0], o=a[1]: be.cumsum(x, out=o)
    if name == "histogram":
        return lambda x=a[0], b=a[1], r=(a[2], a[3]): be.histogram(x, b, r)
    if name == "nearest":
        return lambda X=a[0], C=a[1]: be.nearest(X, C)
    raise KeyError(name)


class Stolen:
    """The share of the CPUs' time the hypervisor gave to other guests
    while the block ran (Linux's /proc/stat ``steal``; None elsewhere): on
    a virtual machine, the noise a benchmark's figures carry.

    >>> with Stolen() as st:
    ...     pass
    >>> st.share is None or 0 <= st.share <= 1
    True
    """

    share: float | None = None

    @staticmethod
    def _ticks():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (v[7] if len(v) > 7 else 0), sum(v)

    def __enter__(self):
        self._start = self._ticks()
        return self

    def __exit__(self, *exc):
        end = self._ticks()
        if self._start is not None and end is not None and end[1] > self._start[1]:
            self.share = (end[0] - self._start[0]) / (end[1] - self._start[1])
        return False


def stamp(versions: Mapping[str, str] | None = None) -> list[str]:
    """Header lines: date, host and its fingerprint, profile, versions."""
    from breakeven import testing

    prof = testing.profile()
    fp = prof.fingerprint
    vers = {"breakeven": be.__version__, "numpy": np.__version__,
            "python": platform.python_version(), **(versions or {})}
    return [
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- host: {platform.machine()}, {usable_cpus()} usable CPUs, "
        f"{platform.platform()}",
        f"- host fingerprint {fp.key}: {fp.cpu}, {fp.usable_cpus} CPUs, "
        f"{fp.openmp} (wait policy {fp.wait_policy})",
        f"- profile: {prof.source}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- BLAS: {blas_info()}",
        f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}",
    ]


class Blas:
    """BLAS thread counts through one cached controller: ``set(n)`` costs a
    microsecond or two (a threadpoolctl ``limit`` context costs ~10 us and
    more, it rescans the loaded libraries)."""

    def __init__(self):
        self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
        self.defaults = [lib.num_threads for lib in self.libs]
        self.default = max(self.defaults, default=1)
        self.current = None

    def set(self, n: int | None) -> None:
        """``n`` threads in every BLAS library (None: each library's default)."""
        if n == self.current:
            return
        for lib, d in zip(self.libs, self.defaults, strict=True):
            lib.set_num_threads(d if n is None else n)
        self.current = n


class Staged(Mapping):
    """Candidates for ``time_interleaved`` with a setup and a teardown per
    batch, run outside the timed region.

    ``time_interleaved`` looks a candidate up (``candidates[name]``) just
    before each batch (and once before sizing its batches); this mapping runs
    the previous candidate's teardown and this one's setup at that moment.
    Call :meth:`close` (or use it as a context manager) to tear down the last.

    ``stages`` maps a name to ``fn`` or ``(fn, setup, teardown)`` (either of
    setup/teardown may be None).
    """

    def __init__(self, stages: Mapping[str, object]):
        self.stages = {}
        for name, s in stages.items():
            fn, setup, teardown = (s, None, None) if callable(s) else s
            self.stages[name] = (fn, setup, teardown)
        self.active = None

    def __getitem__(self, name: str) -> Callable[[], object]:
        fn, setup, _ = self.stages[name]
        self.close()
        if setup is not None:
            setup()
        self.active = name
        return fn

    def __iter__(self) -> Iterator[str]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def close(self) -> None:
        if self.active is not None:
            teardown = self.stages[self.active][2]
            self.active = None
            if teardown is not None:
                teardown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def threads_stage(n: int, exact: bool = False):
    """(setup, teardown) holding ``breakeven.threads(n, exact=...)`` open for
    a batch: thread-local, so it applies to the calls the batch makes here."""
    holder = []

    def setup():
        cm = be.threads(n, exact=exact)
        cm.__enter__()
        holder.append(cm)

    def teardown():
        holder.pop().__exit__(None, None, None)

    return setup, teardown


_JOB_DATA: dict[int, tuple] = {}


def exp_job(mode: str, lg: int, calls: int) -> float:
    """``calls`` exps of 2^lg elements, the way ``mode`` says: ``breakeven``
    (dispatched), ``parallel`` (the bare parallel kernel at all usable CPUs,
    whatever limits are in force) or ``serial`` (the bare serial kernel).
    Module-level so that joblib's process workers import it by name; the
    arrays are made once per process."""
    from breakeven._kernels.registry import KERNELS

    data = _JOB_DATA.get(lg)
    if data is None:
        x = np.random.default_rng(lg).uniform(-10.0, 10.0, 1 << lg)
        data = _JOB_DATA[lg] = (x, np.empty_like(x))
    x, o = data
    k = KERNELS["exp"]
    if mode == "breakeven":
        for _ in range(calls):
            be.exp(x, out=o)
    elif mode == "parallel":
        n = usable_cpus()
        for _ in range(calls):
            k.parallel(x, o, n)
    elif mode == "serial":
        for _ in range(calls):
            k.serial(x, o)
    else:
        raise ValueError(mode)
    return float(o[0])


def strip_defaults(names) -> None:
    """The built-ins ``names``, registered again without their default (the
    embedded profile): with no table of this host, nothing but the
    estimate decides them."""
    for name in names:
        k = be.get_kernel(name)
        be.register(name, k.call, work=k.work, sample=k.sample,
                    dtypes=k.dtypes, serial=k.serial, parallel=k.parallel,
                    reference=k.reference, defaults=None)


def without(p, names):
    """Profile ``p`` with no entry for the kernels ``names`` (the host's
    figures, sleep time, wake-up costs and team start, kept)."""
    from breakeven._profile import Profile, host_fingerprint

    empty = Profile(host_fingerprint(), {k: v for k, v in p.tables.items()
                                         if k not in names},
                    p.calibrated_at, p.sleep_after_us,
                    f"{p.source}, without {', '.join(names)}")
    empty.wake, empty.team_hot = p.wake, p.team_hot
    return empty
