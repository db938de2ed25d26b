"""CIFAR-10: a certified 1-Lipschitz LipConvNet, or the paper's ResNet9 (``unitary-lowrank train cifar10``).

The images are read from disk (``--data``: the official ``cifar-10-batches-py``
or a class-folder JPEG archive, :mod:`unitary_lowrank.tasks.cifar10`), scaled to
[0, 1] and centred by the training mean (a shift: the Lipschitz constant with
respect to pixels in [0, 1] stays that of the network), with random horizontal
flips (and shifts: ``--translate``). The run stops after ``--minutes`` of
training CPU time (the periodic evaluations excluded) or ``--epochs``.

``--model lipconvnet`` (default) then reports clean and certified accuracy at
ε ∈ {36, 72, 108}/255 on the test set and the Lipschitz bound (product of exact
layer norms, and a power-iteration estimate); ``--model resnet9`` (``--preset
paper``/``cpu``/``quick``) trains with cross-entropy and reports the clean
accuracy. Both report the time per iteration split into forward + backward and
the optimizer step. Writes a CSV log, a PNG curve and a JSON summary under
``--out``. ``--holdout N`` evaluates on N held-out training images instead of
the test set, to choose settings.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import checkpoints
from .cifar10 import load_cifar10
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

#: Radii of the certificates reported, as the literature writes them.
RADII = {"36/255": 36 / 255, "72/255": 72 / 255, "108/255": 108 / 255}
METHODS = ("transport", "project", "dense")
MODELS = ("lipconvnet", "resnet9")
#: ``--preset``: the paper's ResNet9 experiment. "paper": the authors' released CIFAR-10 settings
#: (facebookresearch/projUNN, cifar_config.yaml and train_cifar.py: RMSprop with momentum 0.9, lr 0.5,
#: weight decay 5e-5, label smoothing 0.01, batch 128, 100 epochs, 10 warm-up epochs then steps, flips
#: and 2-pixel shifts, mirror test-time augmentation, rank 1), for a GPU. "cpu": the same network at
#: width 16 (channels 16-32-64 instead of 64-128-256) with Adam, for 5 CPU-minutes. "quick": a smoke run.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        model="resnet9", conv="projunn", method="transport", rank=1, width=64, batch=128, epochs=100, minutes=None,
        optimizer="rmsprop", lr=0.5, momentum=0.9, weight_decay=5e-5, label_smoothing=0.01, warmup_epochs=10,
        translate=2, tta=True, eval_every=390,
    ),
    "cpu": dict(
        model="resnet9", width=16, batch=128, minutes=5.0, optimizer="adam", lr=1e-3, label_smoothing=0.01,
        translate=2, tta=True, eval_every=25,
    ),
    "quick": dict(
        model="resnet9", width=8, batch=64, limit=1024, test_limit=1000, epochs=1, minutes=None, eval_every=8,
    ),
}  # fmt: skip
OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class CifarConfig:
    data: str = ""
    model: str = "lipconvnet"
    conv: str = "projunn"
    method: str = "transport"
    rank: int | str = 1
    sketch: str = "randomized"
    error_feedback: bool = False
    width: int = 16
    depth: int = 5
    batch: int = 128
    lr: float = 1e-3
    lr_unitary: float | None = None
    optimizer: str = "adam"
    momentum: float = 0.0  # rmsprop
    weight_decay: float = 0.0
    label_smoothing: float = 0.0  # resnet9 (cross-entropy); LipConvNet trains with the margin loss
    warmup_epochs: int = 0  # > 0: lr from 0.001× up over these epochs, then × 0.2 at each third of --epochs
    translate: int = 0  # random shifts of up to this many pixels (zero fill), besides the horizontal flips
    tta: bool = False  # evaluate on the mean logits of each image and its mirror (not for certificates)
    margin_eps: float = 36 / 255  # the loss asks for a margin of 2√2 · this (Prach et al. 2024)
    temperature: float = 0.25
    minutes: float | None = 5.0
    epochs: int | None = None
    limit: int | None = None  # training images used (the first ones after a fixed shuffle); None: all
    test_limit: int | None = None
    holdout: int = 0  # > 0: the last this many training images (after the fixed shuffle) replace the test set
    eval_every: int = 100
    eval_images: int = 2000  # the learning curve's test accuracy: on this many (a fixed random subset)
    seed: int = 0
    out: str = "runs"
    threads: int | None = None
    device: str = "cpu"


def build(config: CifarConfig) -> tuple[Any, Any]:
    """The model and its optimizer: ProjUNN(base) over the unitary weights, the base optimizer over the rest."""
    import torch

    from ..backends.torch.optim import ProjUNN
    from .models.lipconvnet import LipConvNet
    from .models.resnet9 import ResNet9

    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # the plain layers' default initialization
    model: torch.nn.Module
    if config.model == "resnet9":
        model = ResNet9(3, 10, config.width, conv=config.conv, generator=generator)
    else:
        model = LipConvNet(3, 10, 32, config.width, config.depth, conv=config.conv, generator=generator)
    model = model.to(config.device)
    # weight decay on the other parameters only: it would pull a unitary weight off the manifold
    groups: list[dict[str, Any]] = [{"params": model.other_parameters(), "weight_decay": config.weight_decay}]
    # rank k, or min(n, p) for the matrices smaller than that (the stem's c × 3 frequency matrices); "auto": the
    # optimizer's rule, per weight
    ranks: dict[Any, list[Any]] = {}  # keys all ints (by rank), or the one "auto"
    for p in model.unitary_parameters():
        ranks.setdefault(config.rank if config.rank == "auto" else min(int(config.rank), *p.shape[-2:]), []).append(p)
    for rank, params in sorted(ranks.items()):
        group = {"params": params, "unitary": True, "lr": config.lr_unitary or config.lr}
        groups.append(group if config.method == "dense" else {**group, "rank": rank})
    base: torch.optim.Optimizer
    if config.optimizer == "rmsprop":
        base = torch.optim.RMSprop(groups, lr=config.lr, alpha=0.99, eps=1e-8, momentum=config.momentum)
    else:
        base = torch.optim.Adam(groups, lr=config.lr)
    if not model.unitary_parameters():
        return model, base
    return model, ProjUNN(base, **projunn_options(config))


def run_name(config: CifarConfig) -> str:
    """The file name (without suffix) of a run's log, curve and summary."""
    resnet = config.model == "resnet9"
    name = "cifar10-" + ("resnet9-" if resnet else "") + config.conv
    name += f"-{config.method}-k{config.rank}{sketch_suffix(config)}" if config.conv == "projunn" else ""
    name += f"-w{config.width}" + ("" if resnet else f"-d{config.depth}")
    name += f"-seed{config.seed}" if config.seed else ""
    return name + (f"-lr{config.lr:g}-holdout" if config.holdout else "")


def schedule(config: CifarConfig, per_epoch: int):
    """The learning-rate factor at each iteration: constant, or the paper's warm-up then steps."""
    warm = config.warmup_epochs * per_epoch
    third = max((config.epochs or 0) * per_epoch // 3, 1)

    def factor(iteration: int) -> float:
        if iteration < warm:
            return 0.001 + (1 - 0.001) * iteration / warm
        return 0.2 ** ((iteration - warm) // third) if config.epochs else 1.0

    return factor


def translate(x: Any, pixels: int, generator: Any) -> Any:
    """Each image shifted by its own random offset in [-pixels, pixels]² (zero fill)."""
    import torch

    if pixels <= 0:
        return x
    B, _, H, W = x.shape
    padded = torch.nn.functional.pad(x, (pixels,) * 4)
    dy, dx = (torch.randint(0, 2 * pixels + 1, (2, B), generator=generator)).to(x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def run(
    config: CifarConfig, progress: bool = True, *, checkpoint_every: str | None = "10m", resume: str | None = None
) -> dict[str, Any]:
    """Train, certify, write the log, the curve and the summary; returns the summary.

    ``checkpoint_every``, ``resume``: as in :func:`unitary_lowrank.tasks.train_rnn.run` (a resumed run
    uses the checkpoint's settings; with ``--epochs`` it is the uninterrupted run bit for bit, but for
    its clocks; with a ``--minutes`` budget the CPU time already spent counts).
    """
    with checkpoints.stop_requests() as stop:
        return _run(config, progress, checkpoints.interval(checkpoint_every), resume, stop)


def _run(
    config: CifarConfig, progress: bool, every: tuple[int | None, float | None], resume: str | None, stop: Any
) -> dict[str, Any]:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..backends.torch.lipschitz import certified_accuracy, lipschitz_bound, lipschitz_margin_loss

    state = None
    if resume is not None:
        state, source = checkpoints.load(resume, task="cifar10")
        config = CifarConfig(**{**state["config"], "out": str(source.parent)})
        print(f"resuming {source} at iteration {state['iteration']}", file=sys.stderr)
    if config.method not in METHODS:
        raise SettingsError(f"train cifar10: --method must be one of {METHODS}; got {config.method!r}")
    if config.model not in MODELS:
        raise SettingsError(f"train cifar10: --model must be one of {MODELS}; got {config.model!r}")
    if config.optimizer not in OPTIMIZERS:
        raise SettingsError(f"train cifar10: --optimizer must be one of {OPTIMIZERS}; got {config.optimizer!r}")
    if config.model == "resnet9" and config.conv in ("aol", "torchlip"):
        raise SettingsError("train cifar10: ResNet9 takes --conv projunn, cayley or plain")
    if config.conv == "torchlip" and not _has_torchlip():
        raise SettingsError(
            'train cifar10: --conv torchlip needs deel-torchlip: pip install "unitary-lowrank[torchlip]"'
        )
    if not config.data:
        raise SettingsError("train cifar10: give --data, the cifar-10-batches-py directory or a class-folder archive")
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_cifar10(config.data)
    if not 0 <= config.holdout < len(data.x_train):
        raise SettingsError(f"train cifar10: --holdout must be in [0, {len(data.x_train)}); got {config.holdout}")
    # the held-out images come from a shuffle of their own (seed-independent), so every seed and every
    # setting is judged on the same images, none of which it trained on
    shuffled = np.random.default_rng(12345).permutation(len(data.x_train))
    kept, held = shuffled[: len(shuffled) - config.holdout], shuffled[len(shuffled) - config.holdout :]
    order = kept[np.random.default_rng(config.seed).permutation(len(kept))][: config.limit]

    def tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)

    if len(order) < config.batch:
        raise SettingsError(f"train cifar10: {len(order)} training images are fewer than one batch of {config.batch}")
    if config.epochs is not None and config.epochs < 1:
        raise SettingsError(f"train cifar10: --epochs must be ≥ 1; got {config.epochs}")
    x_train, y_train = tensor(data.x_train[order]), torch.from_numpy(data.y_train[order])
    if config.holdout:
        x_test, y_test = tensor(data.x_train[held]), torch.from_numpy(data.y_train[held])
    else:
        x_test, y_test = tensor(data.x_test), torch.from_numpy(data.y_test)
    if config.test_limit is not None:  # a fixed random subset: archives may list the images class by class
        subset = torch.from_numpy(np.random.default_rng(0).permutation(len(x_test))[: config.test_limit])
        x_test, y_test = x_test[subset], y_test[subset]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    x_train, x_test = (x_train - mean).to(config.device), (x_test - mean).to(config.device)
    y_train, y_test = y_train.to(config.device), y_test.to(config.device)
    model, optimizer = build(config)
    margin = 2 * math.sqrt(2) * config.margin_eps

    resnet = config.model == "resnet9"
    name = run_name(config)
    files = run_files(config.out, name)
    generator = torch.Generator().manual_seed(config.seed + 1)
    rows: list[dict[str, Any]] = []
    forward_backward = step_time = 0.0
    load_at_start = _load_average()
    iteration, running, cpu_started, wall_started = 0, math.nan, time.process_time(), time.perf_counter()
    evaluating = 0.0  # CPU time spent on the periodic test evaluations: not part of the training budget
    evaluating_wall = 0.0
    first_epoch, first_start, permutation = 0, 0, None
    if state is not None:  # where the checkpoint stopped: the same state, the rest of the same epoch next
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        checkpoints.restore_random_state(state["random"], {"data": generator})
        rows, running, iteration = list(state["rows"]), state["running"], state["iteration"]
        forward_backward, step_time = state["forward_backward"], state["step_time"]
        evaluating, evaluating_wall = state["evaluating"], state["evaluating_wall"]
        cpu_started -= state["cpu_seconds"]
        wall_started -= state["wall_seconds"]
        first_epoch, first_start, permutation = state["epoch"], state["start"], state["permutation"]
    saved_at = checkpoints.path_for(files.log)
    saving = checkpoints.Schedule(every, iteration)

    def checkpoint(epoch: int, start: int, permutation: Any, finished: bool) -> None:
        checkpoints.save(saved_at, {
            "task": "cifar10", "config": asdict(config), "iteration": iteration, "finished": finished,
            "epoch": epoch, "start": start, "permutation": permutation.cpu(),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "random": checkpoints.random_state({"data": generator}), "rows": rows, "running": running,
            "forward_backward": forward_backward, "step_time": step_time, "evaluating": evaluating,
            "evaluating_wall": evaluating_wall, "cpu_seconds": time.process_time() - cpu_started,
            "wall_seconds": time.perf_counter() - wall_started,
        })  # fmt: skip

    epochs = config.epochs if config.epochs is not None else 10**9
    budget = math.inf if config.minutes is None else 60 * config.minutes
    per_epoch = len(x_train) // config.batch
    factors = schedule(config, per_epoch)
    initial = [group["lr"] for group in optimizer.param_groups]

    def objective(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if resnet:
            return torch.nn.functional.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        return lipschitz_margin_loss(logits, labels, margin, config.temperature)

    # the learning curve's points: a fixed random subset of the test images (the final figures use all)
    curve = torch.from_numpy(np.random.default_rng(1).permutation(len(x_test))[: config.eval_images]).to(x_test.device)
    x_curve, y_curve = x_test[curve], y_test[curve]

    def clean_accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
        if not config.tta:
            return certified_accuracy(model, images, labels, 0.0, lipschitz=1.0)[0.0]
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(images), 500):
                x = images[start : start + 500]
                logits = model(x) + model(x.flip(-1))
                correct += int((logits.argmax(-1) == labels[start : start + 500]).sum())
        return correct / len(images)

    bar = tqdm(desc=name, disable=not progress, dynamic_ncols=True, unit="it", initial=iteration)
    epoch = first_epoch
    interrupted = False
    spent = time.process_time() - cpu_started - evaluating
    with CsvLog(files.log) as log:
        for row in rows:  # a resumed run's log: the checkpoint's rows, then the new ones
            log.write(row)
        done = False
        for epoch in range(first_epoch, epochs):
            if epoch != first_epoch or permutation is None:
                permutation = torch.randperm(len(x_train), generator=generator)
            permutation = permutation.to(config.device)
            for start in range(
                first_start if epoch == first_epoch else 0, len(x_train) - config.batch + 1, config.batch
            ):
                index = permutation[start : start + config.batch]
                x, y = x_train[index], y_train[index]
                flip = torch.rand(len(x), generator=generator).to(config.device) < 0.5
                x = translate(torch.where(flip[:, None, None, None], x.flip(-1), x), config.translate, generator)
                for group, lr in zip(optimizer.param_groups, initial, strict=True):
                    group["lr"] = lr * factors(iteration)
                model.train()
                started = time.perf_counter()
                optimizer.zero_grad()
                loss = objective(model(x), y)
                loss.backward()
                middle = time.perf_counter()
                optimizer.step()
                forward_backward += middle - started
                step_time += time.perf_counter() - middle
                iteration += 1
                value = loss.item()
                running = value if math.isnan(running) else 0.95 * running + 0.05 * value
                bar.update()
                spent = time.process_time() - cpu_started - evaluating
                if iteration % config.eval_every == 0 or spent > budget:
                    evaluation_started, evaluation_wall = time.process_time(), time.perf_counter()
                    accuracy = clean_accuracy(x_curve, y_curve)
                    evaluating += time.process_time() - evaluation_started
                    evaluating_wall += time.perf_counter() - evaluation_wall
                    rows.append(
                        {
                            "iteration": iteration,
                            "epoch": epoch,
                            "train_loss": running,
                            "test_accuracy": accuracy,
                            "cpu_seconds": spent,
                        }
                    )
                    log.write(rows[-1])
                    bar.set_postfix(loss=f"{running:.3f}", test=f"{accuracy:.3f}")
                if spent > budget:
                    done = True
                    break
                if saving.due(iteration) or stop.requested:
                    checkpoint(epoch, start + config.batch, permutation, finished=False)
                    saving.saved(iteration)
                if stop.requested:
                    interrupted = done = True
                    break
            if done:
                break
    if not interrupted and iteration > (state["iteration"] if state is not None else 0):
        checkpoint(epoch + 1, 0, torch.zeros(0, dtype=torch.long), finished=True)  # the end: an empty next epoch
    bar.close()
    wall = time.perf_counter() - wall_started - evaluating_wall
    load_at_end = _load_average()
    model.eval()
    bound, lipschitz, certified = None, None, {}
    if resnet:  # BatchNorm, ReLU and residual sums: no certificate
        clean = clean_accuracy(x_test, y_test)
    else:
        bound = lipschitz_bound(model, (3, 32, 32), points=4, iterations=20, generator=torch.Generator().manual_seed(0))
        lipschitz = bound.product if config.conv != "plain" else None
        # one pass over the test set: ε = 0 is the clean accuracy (any L), the radii need the certified L
        fractions = certified_accuracy(model, x_test, y_test, [0.0, *RADII.values()], lipschitz=lipschitz or 1.0)
        clean = fractions[0.0]
        certified = {eps: fractions[eps] for eps in RADII.values()} if lipschitz else {}
    if not rows or rows[-1]["iteration"] != iteration:
        rows.append({"iteration": iteration, "epoch": epoch, "train_loss": running, "test_accuracy": clean,
                     "cpu_seconds": spent})  # fmt: skip
        with CsvLog(files.log, append=bool(rows[:-1])) as log:
            log.write(rows[-1])
    _plot(rows, name, files.plot)
    summary = {
        "name": name,
        "config": {
            **asdict(config),
            "task": "cifar10",
            "model": "ResNet9" if resnet else "LipConvNet",
            "data": recorded_path(config.data),  # from the working directory: no machine's absolute paths
            "out": recorded_path(config.out),
        },
        "data_sha256": data_digest(data),
        "iterations": iteration,
        "interrupted": stop.signal_name if interrupted else None,
        "resumed_from": state["iteration"] if state is not None else None,
        "checkpoint": saved_at.name,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "evaluated_on": "held-out training images" if config.holdout else "test set",
        "test_accuracy": clean,
        "certified_accuracy": {label: certified.get(eps) for label, eps in RADII.items()} if certified else None,
        "lipschitz_bound": lipschitz,
        "lipschitz_estimate": bound.estimate if bound else None,
        # what the layers' own library guarantees (deel-torchlip: 1 per layer), beside the exact bound above
        "library_bound": 1.0 if config.conv == "torchlip" and not resnet else None,
        "seconds_per_iteration": (forward_backward + step_time) / max(iteration, 1),
        "seconds_forward_backward": forward_backward / max(iteration, 1),
        "seconds_optimizer_step": step_time / max(iteration, 1),
        "cpu_seconds": spent,  # training only (the budget); the evaluations' time is not in it
        "wall_seconds": wall,  # the same stretch in wall-clock time
        "iterations_per_cpu_minute": 60 * iteration / spent if spent > 0 else None,
        # the conditions: threads of this run, and the machine's 1-minute load average before and after training
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": {"start": load_at_start, "end": load_at_end},
        "unitarity_error": _unitarity_error(model),
        "peak_memory_mb": _peak_memory_mb(),
    }
    return write_summary(files, summary)


def data_digest(data: Any) -> str:
    """SHA-256 of the decoded images and labels (first 16 hex digits): which data a run saw, whatever its path."""
    digest = hashlib.sha256()
    for array in data:
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _has_torchlip() -> bool:
    try:
        return importlib.util.find_spec("deel.torchlip") is not None
    except ModuleNotFoundError:  # no "deel" package at all
        return False


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _unitarity_error(model: Any) -> float | None:
    """Largest ‖MᴴM − I‖ (or ‖MMᴴ − I‖ for wide M) over every UnitaryConv2d's frequency matrices."""
    import torch

    worst = None
    for p in model.unitary_parameters() if hasattr(model, "unitary_parameters") else []:
        M = p.detach().to(torch.complex128 if p.is_complex() else torch.float64)
        G = M.mH @ M if M.shape[-2] >= M.shape[-1] else M @ M.mH
        eye = torch.eye(G.shape[-1], dtype=G.dtype)
        error = float(torch.linalg.matrix_norm(G - eye, ord=2).max()) if G.numel() else 0.0
        worst = error if worst is None else max(worst, error)
    return worst


def _peak_memory_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _plot(rows: list[dict[str, Any]], name: str, path: Path) -> None:
    plt = pyplot()
    fig, left = plt.subplots(figsize=(6.5, 4))
    steps = [r["iteration"] for r in rows]
    left.plot(steps, [r["train_loss"] for r in rows], color="tab:blue", label="train loss (running mean)")
    left.set_xlabel("iteration")
    left.set_ylabel("training loss", color="tab:blue")
    right = left.twinx()
    right.plot(steps, [r["test_accuracy"] for r in rows], color="tab:orange", label="clean test accuracy")
    right.set_ylabel("clean test accuracy", color="tab:orange")
    left.set_title(name, fontsize=10)
    left.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
