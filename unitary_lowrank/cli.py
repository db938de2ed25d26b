"""Command line: ``unitary-lowrank verify`` and ``unitary-lowrank bench`` (also ``python -m unitary_lowrank``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .verify import DEFAULT_DTYPES, DEFAULT_RANKS, DEFAULT_SIZES

    parser = argparse.ArgumentParser(
        prog="unitary-lowrank",
        description="Orthogonal/unitary low-rank updates (projUNN): checks and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"unitary_lowrank {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser(
        "verify",
        help="compare project/transport with dense SciPy references over a grid; exit 1 on any failure",
        description="Run project and transport over a grid of N, k and dtypes, compare with "
        "scipy.linalg.polar and scipy.linalg.expm, print a table; exit status 1 if any error "
        "exceeds its tolerance (1e-12 double, 1e-5 single precision).",
    )
    verify.add_argument(
        "--backend",
        default="numpy",
        choices=["numpy", "array_api_strict", "torch", "jax", "cupy"],
        help="array library to run the low-rank steps on (default: numpy)",
    )
    verify.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        metavar="N",
        help=f"matrix sizes (default: {' '.join(map(str, DEFAULT_SIZES))})",
    )
    verify.add_argument(
        "--ranks",
        type=int,
        nargs="+",
        default=list(DEFAULT_RANKS),
        metavar="K",
        help=f"update ranks (default: {' '.join(map(str, DEFAULT_RANKS))})",
    )
    verify.add_argument(
        "--dtypes",
        nargs="+",
        default=list(DEFAULT_DTYPES),
        choices=list(DEFAULT_DTYPES),
        metavar="DTYPE",
        help="dtypes (default: all four)",
    )
    verify.add_argument("--repeats", type=int, default=3, help="timed repeats of each low-rank step (median)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random test matrices")
    verify.add_argument("--json", metavar="PATH", help="also write the rows as JSON")

    bench = commands.add_parser(
        "bench",
        help="time the steps against the memory floor and dense SVD/expm; table, PNG and JSON",
        description="Time project, transport (in place) and sketch over a grid, in the same run as the floor "
        "(one U @ X with X of shape N×2k) and the dense baselines (scipy.linalg.polar / expm, "
        "torch.linalg.svd / matrix_exp). Prints medians and ratios, writes a log-log plot and the raw numbers.",
    )
    bench.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=["numpy", "torch", "cupy"],
        help="default: numpy, and torch if installed",
    )
    bench.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096], metavar="N")
    bench.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16], metavar="K")
    bench.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64", "complex64"],
        choices=list(DEFAULT_DTYPES),
        metavar="DTYPE",
    )
    bench.add_argument(
        "--dense-max",
        type=int,
        default=2048,
        metavar="N",
        help="largest N for the dense baselines (float64 also at the largest N); default 2048",
    )
    bench.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per case (median taken)")
    bench.add_argument("--json", default="bench.json", help="raw numbers (default: bench.json)")
    bench.add_argument("--plot", default="bench.png", help="log-log plot of time against N (default: bench.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        from .backends import available_backends
        from .verify import main as verify_main

        if args.backend not in available_backends():
            print(
                f"unitary-lowrank verify: backend {args.backend!r} is not installed "
                f"(installed: {', '.join(available_backends())})",
                file=sys.stderr,
            )
            return 2
        return verify_main(args)
    if args.command == "bench":
        from .backends import available_backends
        from .bench import main as bench_main

        installed = available_backends()
        if args.backends is None:
            args.backends = [b for b in ("numpy", "torch") if b in installed]
        missing = [b for b in args.backends if b not in installed]
        if missing:
            print(f"unitary-lowrank bench: not installed: {', '.join(missing)}", file=sys.stderr)
            return 2
        return bench_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
