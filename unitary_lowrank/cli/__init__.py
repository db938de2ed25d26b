"""The command-line tools: ``unitary-lowrank verify``, ``bench`` and ``train`` (also ``python -m unitary_lowrank``).

One module per command (:mod:`.verify`, :mod:`.bench`, :mod:`.train`), each with
``add_parser(commands)`` for its arguments and ``command(args)`` to run it; ``train``
has one subcommand per task (:mod:`.train_conv` and :mod:`.train_cifar` hold those of
``conv`` and ``cifar10``, :mod:`._options` what they share). Parsing and dispatch
only: the training programs are in :mod:`unitary_lowrank.tasks`. The library itself
never imports this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, train, verify
from ._options import Parser

COMMANDS = {"verify": verify, "bench": bench, "train": train}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
        prog="unitary-lowrank",
        description="Orthogonal/unitary low-rank updates (projUNN): checks, benchmarks and the paper's tasks.",
    )
    parser.add_argument("--version", action="version", version=f"unitary_lowrank {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand that was given them, not the top-level parser
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    return COMMANDS[args.command].command(args)


if __name__ == "__main__":
    sys.exit(main())
