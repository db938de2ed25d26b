"""``unitary-lowrank train cifar10``: a 1-Lipschitz LipConvNet on CIFAR-10, trained with the margin loss and certified.

The images are read from disk (``--data``: the official ``cifar-10-batches-py``
or a class-folder JPEG archive, :mod:`unitary_lowrank.tasks.cifar10`), scaled to
[0, 1] and centred by the training mean (a shift: the Lipschitz constant with
respect to pixels in [0, 1] stays that of the network), with random horizontal
flips. The run stops after ``--minutes`` of CPU time (or ``--epochs``), then
reports clean and certified accuracy at ε ∈ {36, 72, 108}/255 on the test set,
the Lipschitz bound (product of exact layer norms, and a power-iteration
estimate), and the time per iteration split into forward + backward and the
optimizer step. Writes a CSV log, a PNG curve and a JSON summary under ``--out``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .train import config_or_print, recorded_out

#: Radii of the certificates reported, as the literature writes them.
RADII = {"36/255": 36 / 255, "72/255": 72 / 255, "108/255": 108 / 255}
METHODS = ("transport", "project")


@dataclass
class CifarConfig:
    data: str = ""
    conv: str = "projunn"
    method: str = "transport"
    rank: int = 1
    width: int = 16
    depth: int = 5
    batch: int = 128
    lr: float = 1e-3
    lr_unitary: float | None = None
    margin_eps: float = 36 / 255  # the loss asks for a margin of 2√2 · this (Prach et al. 2024)
    temperature: float = 0.25
    minutes: float | None = 5.0
    epochs: int | None = None
    limit: int | None = None  # training images used (the first ones after a fixed shuffle); None: all
    test_limit: int | None = None
    eval_every: int = 100
    seed: int = 0
    out: str = "runs"
    threads: int | None = None
    device: str = "cpu"


def build(config: CifarConfig) -> tuple[Any, Any]:
    """The LipConvNet and its optimizer: ProjUNN(Adam) over the unitary weights, Adam over the rest."""
    import torch

    from ..backends.torch import LipConvNet, ProjUNN

    generator = torch.Generator().manual_seed(config.seed)
    model = LipConvNet(3, 10, 32, config.width, config.depth, conv=config.conv, generator=generator)
    model = model.to(config.device)
    groups = [{"params": model.other_parameters()}]
    if model.unitary_parameters():
        groups.append({"params": model.unitary_parameters(), "unitary": True, "lr": config.lr_unitary or config.lr})
    base = torch.optim.Adam(groups, lr=config.lr)
    if not model.unitary_parameters():
        return model, base
    return model, ProjUNN(base, rank=config.rank, method=config.method, seed=config.seed)


def run(config: CifarConfig, progress: bool = True) -> dict[str, Any]:
    """Train, certify, write the log, the curve and the summary; returns the summary."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..backends.torch import certified_accuracy, lipschitz_bound, lipschitz_margin_loss
    from ..tasks.cifar10 import load_cifar10

    if config.method not in METHODS:
        raise ValueError(f"train cifar10: --method must be one of {METHODS}; got {config.method!r}")
    if not config.data:
        raise ValueError("train cifar10: give --data, the cifar-10-batches-py directory or a class-folder archive")
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_cifar10(config.data)
    order = np.random.default_rng(config.seed).permutation(len(data.x_train))[: config.limit]

    def tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)

    if len(order) < config.batch:
        raise ValueError(f"train cifar10: {len(order)} training images are fewer than one batch of {config.batch}")
    if config.epochs is not None and config.epochs < 1:
        raise ValueError(f"train cifar10: --epochs must be ≥ 1; got {config.epochs}")
    x_train, y_train = tensor(data.x_train[order]), torch.from_numpy(data.y_train[order])
    x_test, y_test = tensor(data.x_test[: config.test_limit]), torch.from_numpy(data.y_test[: config.test_limit])
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    x_train, x_test = (x_train - mean).to(config.device), (x_test - mean).to(config.device)
    y_train, y_test = y_train.to(config.device), y_test.to(config.device)
    model, optimizer = build(config)
    margin = 2 * math.sqrt(2) * config.margin_eps

    name = f"cifar10-{config.conv}" + (f"-{config.method}-k{config.rank}" if config.conv != "plain" else "")
    name += f"-w{config.width}-d{config.depth}" + (f"-seed{config.seed}" if config.seed else "")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path, plot_path, summary_path = out / f"{name}.csv", out / f"{name}.png", out / f"{name}.json"
    generator = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict[str, Any]] = []
    forward_backward = step_time = 0.0
    iteration, running, cpu_started = 0, math.nan, time.process_time()
    epochs = config.epochs if config.epochs is not None else 10**9
    budget = math.inf if config.minutes is None else 60 * config.minutes
    bar = tqdm(desc=name, disable=not progress, dynamic_ncols=True, unit="it")
    with open(log_path, "w", newline="") as log:
        writer = csv.DictWriter(log, fieldnames=["iteration", "epoch", "train_loss", "test_accuracy", "cpu_seconds"])
        writer.writeheader()
        done = False
        for epoch in range(epochs):
            permutation = torch.randperm(len(x_train), generator=generator).to(config.device)
            for start in range(0, len(x_train) - config.batch + 1, config.batch):
                index = permutation[start : start + config.batch]
                x, y = x_train[index], y_train[index]
                flip = torch.rand(len(x), generator=generator).to(config.device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                model.train()
                started = time.perf_counter()
                optimizer.zero_grad()
                loss = lipschitz_margin_loss(model(x), y, margin, config.temperature)
                loss.backward()
                middle = time.perf_counter()
                optimizer.step()
                forward_backward += middle - started
                step_time += time.perf_counter() - middle
                iteration += 1
                value = loss.item()
                running = value if math.isnan(running) else 0.95 * running + 0.05 * value
                bar.update()
                spent = time.process_time() - cpu_started
                if iteration % config.eval_every == 0 or spent > budget:
                    accuracy = certified_accuracy(model, x_test, y_test, 0.0, lipschitz=1.0)[0.0]
                    rows.append(
                        {
                            "iteration": iteration,
                            "epoch": epoch,
                            "train_loss": running,
                            "test_accuracy": accuracy,
                            "cpu_seconds": spent,
                        }
                    )
                    writer.writerow(rows[-1])
                    log.flush()
                    bar.set_postfix(loss=f"{running:.3f}", test=f"{accuracy:.3f}")
                if spent > budget:
                    done = True
                    break
            if done:
                break
    bar.close()
    model.eval()
    bound = lipschitz_bound(model, (3, 32, 32), points=4, iterations=20, generator=torch.Generator().manual_seed(0))
    lipschitz = bound.product if config.conv != "plain" else None
    # one pass over the test set: ε = 0 is the clean accuracy (any L), the radii need the certified L
    fractions = certified_accuracy(model, x_test, y_test, [0.0, *RADII.values()], lipschitz=lipschitz or 1.0)
    clean = fractions[0.0]
    certified = {eps: fractions[eps] for eps in RADII.values()} if lipschitz else {}
    if not rows or rows[-1]["iteration"] != iteration:
        rows.append({"iteration": iteration, "epoch": epoch, "train_loss": running, "test_accuracy": clean,
                     "cpu_seconds": time.process_time() - cpu_started})  # fmt: skip
        with open(log_path, "a", newline="") as log:
            csv.DictWriter(log, fieldnames=list(rows[-1])).writerow(rows[-1])
    _plot(rows, name, plot_path)
    summary = {
        "name": name,
        "config": {
            **asdict(config),
            "task": "cifar10",
            "model": "LipConvNet",
            "data": Path(config.data).name,  # no machine's paths in summaries
            "out": recorded_out(config.out),
        },
        "iterations": iteration,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "test_accuracy": clean,
        "certified_accuracy": {label: certified.get(eps) for label, eps in RADII.items()} if certified else None,
        "lipschitz_bound": lipschitz,
        "lipschitz_estimate": bound.estimate,
        "seconds_per_iteration": (forward_backward + step_time) / max(iteration, 1),
        "seconds_forward_backward": forward_backward / max(iteration, 1),
        "seconds_optimizer_step": step_time / max(iteration, 1),
        "cpu_seconds": time.process_time() - cpu_started,
        "peak_memory_mb": _peak_memory_mb(),
        "log": log_path.name,
        "plot": plot_path.name,
    }
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def _peak_memory_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _plot(rows: list[dict[str, Any]], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(6.5, 4))
    steps = [r["iteration"] for r in rows]
    left.plot(steps, [r["train_loss"] for r in rows], color="tab:blue", label="train loss (running mean)")
    left.set_xlabel("iteration")
    left.set_ylabel("margin loss", color="tab:blue")
    right = left.twinx()
    right.plot(steps, [r["test_accuracy"] for r in rows], color="tab:orange", label="clean test accuracy")
    right.set_ylabel("clean test accuracy", color="tab:orange")
    left.set_title(name, fontsize=10)
    left.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: Any) -> int:
    """``train cifar10`` from parsed arguments: options given override :class:`CifarConfig`'s defaults."""
    if (args.method or "transport") not in METHODS:
        raise SystemExit(f"unitary-lowrank train cifar10: --method must be one of {', '.join(METHODS)}")
    config = config_or_print(CifarConfig, args)
    if config is None:
        return 0
    summary = run(config, progress=not args.no_progress)
    certified = summary["certified_accuracy"] or {}
    print(
        f"{summary['name']}: clean test accuracy {summary['test_accuracy']:.3f}, certified "
        + ", ".join(f"{v:.3f} at ε = {k}" for k, v in certified.items())
        + f"; Lipschitz bound {summary['lipschitz_bound']}, estimate {summary['lipschitz_estimate']:.4f}; "
        f"{summary['iterations']} iterations, {1e3 * summary['seconds_forward_backward']:.0f} ms forward+backward "
        f"and {1e3 * summary['seconds_optimizer_step']:.0f} ms optimizer step per iteration"
    )
    return 0
