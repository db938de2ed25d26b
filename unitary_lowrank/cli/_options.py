"""What the ``train`` subcommands share: settings from a preset and the options given, defaults in the help, reports.

Each task's settings are a dataclass of the training program
(:mod:`unitary_lowrank.tasks`); its subcommand declares only the options that
apply to it, so argparse refuses the others.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from .._adapters import SKETCHES

#: argparse destinations that are not settings of a run
_NOT_SETTINGS = {"command", "task", "preset", "print_config", "no_progress", "run", "parser", "help"}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``PROG: error: MESSAGE``, exit status 2.

    The usage is left out: ``--help`` shows it, and a wrong value is easier
    to see on its own. Subcommand parsers made from it are of the same class,
    so each names its own command.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}; got {value}")
        return value

    return parse


def rank_or_auto(text: str) -> int | str:
    """An argparse type: ``auto`` (the optimizer's rule from each weight's shape) or an integer ≥ 1."""
    if text == "auto":
        return text
    try:
        return at_least(1)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (or 'auto')") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite; got {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value:g}")
    return value


def nonnegative(text: str) -> float:
    """An argparse type: a finite number ≥ 0."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0; got {value:g}")
    return value


def below_one(text: str) -> float:
    """An argparse type: a finite number in [0, 1)."""
    value = nonnegative(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1; got {value:g}")
    return value


def settings(
    args: argparse.Namespace, config_class: Any, presets: dict[str, dict[str, Any]] | None = None, **fixed: Any
) -> Any:
    """``config_class`` from ``--preset`` (if given), then the options given on the command line, then ``fixed``."""
    names = {f.name for f in fields(config_class)}
    chosen = dict((presets or {}).get(getattr(args, "preset", None) or "", {}))
    chosen.update({name: value for name, value in vars(args).items() if value is not None and name in names})
    return config_class(**{**chosen, **fixed})


def print_config(config: Any) -> int:
    """``--print-config``: the settings a run would use, as JSON."""
    print(json.dumps(asdict(config), indent=1))
    return 0


def fraction(text: str) -> float:
    """A number written as a decimal or as a ratio (``36/255``), as radii of certificates are written."""
    try:
        value = float(Fraction(text.replace(" ", "")))
    except (ValueError, ZeroDivisionError) as err:
        raise argparse.ArgumentTypeError(f"expected a number or a ratio such as 36/255; got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0; got {text}")
    return value


def add_run_options(parser: argparse.ArgumentParser, *, device: bool = True, resumable: bool = False) -> None:
    """The options every training run takes: seed, threads, device, output folder, progress, --print-config.

    ``resumable``: also ``--checkpoint-every`` and ``--resume`` (the tasks that write checkpoints).
    """
    parser.add_argument("--seed", type=at_least(0), help="seed of the initialization, the data order and the sketches")
    parser.add_argument("--threads", type=at_least(1), help="torch CPU threads (default: torch's own)")
    if device:
        parser.add_argument("--device", help="torch device, e.g. cuda")
    parser.add_argument("--out", help="output folder of the log, the curve and the summary")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if resumable:
        add_resume_options(parser)
    parser.add_argument(
        "--print-config",
        action="store_true",
        dest="print_config",
        help="print the settings the run would use (preset, then options) as JSON, and exit",
    )


def checkpoint_interval(text: str) -> str:
    """``--checkpoint-every``: iterations (``500``) or minutes (``10m``), checked when parsed."""
    from ..tasks.checkpoints import interval
    from ..tasks.runs import SettingsError

    try:
        interval(text)
    except SettingsError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--checkpoint-every: ")) from None
    return text


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-every`` and ``--resume``."""
    parser.add_argument(
        "--checkpoint-every",
        type=checkpoint_interval,
        dest="checkpoint_every",
        metavar="EVERY",
        help="write NAME.ckpt beside the log every EVERY iterations (500) or minutes (10m), and when the run "
        "ends or is stopped with Ctrl-C; 0: only then (default: 10m)",
    )
    parser.add_argument(
        "--resume",
        metavar="PATH",
        help="continue the run whose checkpoint (or run folder) this is, with its settings, bit for bit",
    )


def add_sketch_options(parser: argparse.ArgumentParser) -> None:
    """How a projUNN run reduces each update to rank k: ``--sketch`` and ``--error-feedback``."""
    parser.add_argument(
        "--sketch",
        choices=SKETCHES,
        help="how each update is reduced to rank k: a fresh sketch, or a warm-started subspace iteration",
    )
    parser.add_argument(
        "--error-feedback",
        action="store_true",
        default=None,
        dest="error_feedback",
        help="carry what each low-rank step leaves out into the next update",
    )


def show_defaults(
    parser: argparse.ArgumentParser,
    config_class: Any,
    *,
    presets: dict[str, dict[str, Any]] | None = None,
    shown: Mapping[str, str | None] | None = None,
) -> None:
    """Append each option's default (from ``config_class``) to its help, unless the help states one already.

    ``shown``: how to write a default where its value would not say it (a
    derived value, a ratio); options that a preset sets say so.
    """
    defaults = {f.name: f.default for f in fields(config_class)}
    preset_keys = {key for values in (presets or {}).values() for key in values}
    for action in parser._actions:
        dest = action.dest
        if (
            dest not in defaults
            or dest in _NOT_SETTINGS
            or (action.help and ("default" in action.help or "required" in action.help))
        ):
            continue
        value = (shown or {}).get(dest)
        if value is None:
            default = defaults[dest]
            value = "none" if default is None else "off" if default is False else str(default)
        note = f"default: {value}" + (", or the preset's" if dest in preset_keys else "")
        action.help = f"{action.help} ({note})" if action.help else note


def stopped_note(task: str, summary: dict[str, Any]) -> int:
    """The exit status of a finished run: 0; of one stopped by Ctrl-C or SIGTERM: 130, with how to resume it."""
    if not summary.get("interrupted"):
        return 0
    folder = Path(summary["config"]["out"])
    print(
        f"{summary['name']}: stopped by {summary['interrupted']} at iteration {summary['steps']}; checkpoint "
        f"{folder / summary['checkpoint']}. Resume with: unitary-lowrank train {task} --resume {folder}",
        file=sys.stderr,
    )
    return 130


def report_files(out: str, summary: dict[str, Any]) -> str:
    """Where a run wrote its files: the line the ``train`` subcommands print last."""
    folder = Path(out)
    return (
        f"wrote {folder / summary['log']} (log), {folder / summary['plot']} (curve), "
        f"{folder / (summary['name'] + '.json')} (summary)"
    )
