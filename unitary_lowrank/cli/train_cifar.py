"""``unitary-lowrank train cifar10``: a certified 1-Lipschitz LipConvNet, or the paper's ResNet9, on CIFAR-10.

The options of :class:`~unitary_lowrank.tasks.train_cifar10.CifarConfig`; the
training loop is :func:`unitary_lowrank.tasks.train_cifar10.run`. A missing or
unreadable ``--data`` is a usage error, not a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..tasks.cifar10 import DataError
from ..tasks.runs import SettingsError
from ..tasks.train_cifar10 import (
    METHODS,
    MODELS,
    OPTIMIZERS,
    PRESETS,
    RADII,
    CifarConfig,
    build,
    run,
    run_name,
    schedule,
    translate,
)
from ._options import (
    add_run_options,
    add_sketch_options,
    at_least,
    below_one,
    fraction,
    nonnegative,
    positive,
    print_config,
    rank_or_auto,
    report_files,
    settings,
    show_defaults,
    stopped_note,
)

#: Names this module had when the training program lived in it, kept importable
__all__ = [
    "METHODS",
    "MODELS",
    "OPTIMIZERS",
    "PRESETS",
    "RADII",
    "CifarConfig",
    "add_parser",
    "build",
    "main",
    "run",
    "run_name",
    "schedule",
    "translate",
]


def add_parser(tasks: Any) -> argparse.ArgumentParser:
    """Register ``cifar10`` on the task subcommand parsers ``tasks``."""
    cifar = tasks.add_parser(
        "cifar10",
        help="a certified 1-Lipschitz LipConvNet, or the paper's ResNet9, on CIFAR-10 read from --data",
        description="Train on CIFAR-10 read from your files (--data: the official cifar-10-batches-py directory or "
        "its .tar.gz, or a class-folder image archive), for --minutes of training CPU time or --epochs. "
        "LipConvNet reports clean and certified accuracy at 36/255, 72/255 and 108/255 and its Lipschitz bound; "
        "ResNet9 (--model resnet9, or --preset paper/cpu/quick) the clean accuracy.",
    )
    cifar.add_argument(
        "--data", help="cifar-10-batches-py directory (or its .tar.gz), or a class-folder image archive (required)"
    )
    cifar.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="the paper's ResNet9: its authors' settings (paper, for a GPU), width 16 for 5 CPU-minutes (cpu), "
        "or a smoke run (quick); --print-config shows what a preset sets",
    )
    cifar.add_argument("--model", choices=MODELS, help="LipConvNet (certified) or the paper's ResNet9")
    cifar.add_argument(
        "--conv",
        choices=["projunn", "cayley", "aol", "torchlip", "plain"],
        help="the network's convolutions (torchlip: deel-torchlip, the [torchlip] extra)",
    )
    cifar.add_argument("--method", choices=METHODS, help="projUNN-T or -D, or the exact dense Riemannian step")
    cifar.add_argument(
        "--rank", type=rank_or_auto, help="rank k of the projUNN sketch (capped at each layer's size), or 'auto'"
    )
    add_sketch_options(cifar)
    cifar.add_argument(
        "--width", type=at_least(1), help="channels of the first block (LipConvNet) or of the stem (ResNet9)"
    )
    cifar.add_argument("--depth", type=at_least(1), help="LipConvNet: convolutions in each block")
    cifar.add_argument("--batch", type=at_least(1), help="batch size")
    cifar.add_argument("--optimizer", choices=OPTIMIZERS, help="the base optimizer")
    cifar.add_argument("--lr", type=positive, help="the base optimizer's learning rate")
    cifar.add_argument("--lr-unitary", type=positive, dest="lr_unitary", help="the same for the unitary weights")
    cifar.add_argument("--momentum", type=below_one, help="RMSprop's momentum")
    cifar.add_argument(
        "--weight-decay", type=nonnegative, dest="weight_decay", help="weight decay of the other parameters"
    )
    cifar.add_argument("--label-smoothing", type=below_one, dest="label_smoothing", help="ResNet9's cross-entropy")
    cifar.add_argument(
        "--warmup-epochs",
        type=at_least(0),
        dest="warmup_epochs",
        help="linear warm-up of the learning rate, then × 0.2 at each third of --epochs",
    )
    cifar.add_argument("--translate", type=at_least(0), help="random shifts of up to this many pixels")
    cifar.add_argument("--tta", action="store_true", default=None, help="evaluate on each image and its mirror")
    cifar.add_argument(
        "--margin-eps",
        type=fraction,
        dest="margin_eps",
        help="ε of LipConvNet's margin loss (margin 2√2 ε), e.g. 36/255",
    )
    cifar.add_argument("--temperature", type=positive, help="temperature of the margin loss")
    cifar.add_argument(
        "--minutes", type=positive, help="training CPU-time budget, in minutes (evaluations not counted)"
    )
    cifar.add_argument("--epochs", type=at_least(1), help="epochs (stops earlier if --minutes is spent)")
    cifar.add_argument("--limit", type=at_least(1), help="use only this many training images (a fixed random subset)")
    cifar.add_argument(
        "--test-limit", type=at_least(1), dest="test_limit", help="test images used (a fixed random subset)"
    )
    cifar.add_argument(
        "--holdout", type=at_least(1), help="evaluate on this many held-out training images instead of the test set"
    )
    cifar.add_argument(
        "--eval-every", type=at_least(1), dest="eval_every", help="iterations between points of the curve"
    )
    cifar.add_argument(
        "--eval-images", type=at_least(1), dest="eval_images", help="test images behind each point of the curve"
    )
    add_run_options(cifar, resumable=True)
    shown = {"margin_eps": "36/255", "lr_unitary": "--lr's value", "limit": "all", "test_limit": "all"}
    show_defaults(cifar, CifarConfig, presets=PRESETS, shown=shown)
    cifar.set_defaults(run=main, parser=cifar)
    return cifar


def main(args: argparse.Namespace) -> int:
    """``train cifar10`` from parsed arguments: options given override :class:`CifarConfig`'s defaults."""
    config = settings(args, CifarConfig, PRESETS)
    if args.print_config:
        return print_config(config)
    if not config.data and not args.resume:
        args.parser.error("--data is required: the cifar-10-batches-py directory (or its .tar.gz), or a class-folder "
                          "image archive")  # fmt: skip
    if config.data and not Path(config.data).expanduser().exists():
        args.parser.error(f"--data {config.data}: no such file or directory")
    try:
        summary = run(
            config, progress=not args.no_progress, checkpoint_every=args.checkpoint_every or "10m", resume=args.resume
        )
    except (DataError, SettingsError) as err:
        args.parser.error(str(err))
    certified = summary["certified_accuracy"] or {}
    certificate = (
        ", certified " + ", ".join(f"{v:.3f} at ε = {k}" for k, v in certified.items())
        + f"; Lipschitz bound {summary['lipschitz_bound']}, estimate {summary['lipschitz_estimate']:.4f}"
        if certified
        else ""
    )  # fmt: skip
    print(
        f"{summary['name']}: clean test accuracy {summary['test_accuracy']:.3f}{certificate}; "
        f"{summary['iterations']} iterations, {1e3 * summary['seconds_forward_backward']:.0f} ms forward+backward "
        f"and {1e3 * summary['seconds_optimizer_step']:.0f} ms optimizer step per iteration"
    )
    print(report_files(summary["config"]["out"] if args.resume else config.out, summary))
    return stopped_note("cifar10", summary)
