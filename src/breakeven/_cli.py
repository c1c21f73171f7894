"""The ``breakeven`` command line."""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["main"]


def _parse_kernels(text: str | None) -> list[str]:
    from breakeven._registry import KERNELS

    if not text:
        return list(KERNELS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise SystemExit(
            f"breakeven: error: unknown kernel(s) {', '.join(unknown)}; "
            f"known: {', '.join(KERNELS)}")
    return names


def _blas_cap():
    """A context capping BLAS to one thread (kernels calling BLAS in prange)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().limit(limits=1, user_api="blas")


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Time every kernel serial and parallel at one large size.

    This is the measurement core the full calibration sweeps over sizes.
    """
    from breakeven._registry import get_kernel
    from breakeven._threads import usable_cpus
    from breakeven._timing import time_interleaved

    threads = usable_cpus()
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    print(f"breakeven: timing serial vs parallel ({threads} threads) at "
          f"work {args.size} ({dtype}); median of {args.repeats} batches")
    header = f"{'kernel':<10} {'serial':>11} {'parallel':>11} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for name in _parse_kernels(args.kernels):
        k = get_kernel(name)
        a = k.sample(args.size, dtype, rng)
        with _blas_cap():
            t = time_interleaved(
                {"serial": lambda k=k, a=a: k.serial(*a),
                 "parallel": lambda k=k, a=a: k.parallel(*a, threads)},
                repeats=args.repeats)
        s, p = t["serial"].median, t["parallel"].median
        print(f"{name:<10} {s * 1e3:>8.3f} ms {p * 1e3:>8.3f} ms {s / p:>8.2f}x",
              flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breakeven",
        description="Calibrated serial/parallel dispatch for NumPy kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calibrate", help="time the kernels on this host")
    p.add_argument("--size", type=int, default=1 << 22,
                   help="work size to time at (default: 2^22)")
    p.add_argument("--kernels", help="comma-separated kernel names (default: all)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--repeats", type=int, default=7)
    p.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "size", 1) < 1:
        print("breakeven: error: --size must be positive", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("breakeven: interrupted", file=sys.stderr)
        return 130
