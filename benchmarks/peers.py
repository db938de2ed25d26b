"""The peer harness: one task, one data stream, one initial weight, one seed per run; the method swapped.

    python benchmarks/peers.py list                               # the tasks and the methods each runs
    python benchmarks/peers.py run rotation-1024 projunn-k16 --lr 1e-2 --seconds 20 --out r.json

A *task* owns a model with one constrained weight (square orthogonal, complex
unitary, or tall with orthonormal columns), a stream of training minibatches,
a held-out validation set (learning rates are chosen on it) and a test metric
(the curves and tables report it). A *method* turns the model into something
that trains: ``ProjUNN`` of this library (ranks 1, 4, 16, 64; randomized and
subspace sketches; its dense Riemannian step), torch's
``parametrizations.orthogonal`` (matrix_exp, cayley, householder), geotorch's
``orthogonal``, geoopt's ``RiemannianAdam`` / ``RiemannianSGD`` on its
``Stiefel`` manifold, and plain Adam without any constraint (a reference that
is not orthogonal); ``projected-auto`` is a prototype measured here, not the
library's step (optimizer state of O(k N), ``projected_state.py``). Each peer
runs as its authors document it: the default trivialization or manifold, with
Adam (the optimizer their examples use).

A run trains for a budget of wall seconds (one thread), evaluates the
validation and test metrics on a schedule with its clock stopped, and writes
its curve (against steps *and* seconds), its seconds per step, its peak memory
(resident memory reached above what was resident before the first step; only
for the first run of a process, see ``_FRESH_PROCESS``), and
the final unitarity error ``max |Wᴴ W − I|``. Drawing the minibatch is not
timed; the forward pass (including any parametrization), the backward pass
and the optimizer step are. Every run is one process (``peer_study.py``
starts them, one at a time): nothing is shared between methods but the seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


# -- tasks ------------------------------------------------------------------------------------------------------


@dataclass
class Task:
    """A model with one constrained weight, its data and its metrics (see the module docstring)."""

    name: str
    description: str
    model: nn.Module
    weight_name: str  # the constrained parameter, an attribute of ``model``
    other_lr: float  # the learning rate of the model's other parameters (Adam), the same for every method
    batches: Iterator[Batch]
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    metric: Callable[[nn.Module, str], float]  # (model, "val" | "test") → the reported figure, lower is better
    metric_name: str
    targets: tuple[float, ...]  # the figures whose time to reach the tables report
    complex: bool = False
    rectangular: bool = False


def _seeded(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * seed + stream)


def _haar(shape: tuple[int, int], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """A Haar draw, kept on disk by its generator's seed: a 4096 × 4096 QR costs ~10 s on one thread, and
    every run of a task draws the same ones (same seed, same bits: the cache changes no result)."""
    from unitary_lowrank.backends.torch import haar_

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unitary_lowrank" / "peers"
    path = root / f"haar-{shape[0]}x{shape[1]}-{str(dtype).split('.')[-1]}-{generator.initial_seed()}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    weight = haar_(torch.empty(*shape, dtype=dtype), generator=generator)
    if shape[0] * shape[1] >= 1 << 20:
        root.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(weight, partial)
        partial.replace(path)
    return weight


class Linear(nn.Module):
    """``x ↦ W x`` for column-stacked data ``x`` (n × batch): the weight whose rows we constrain."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight @ x


def rotation(
    n: int, seed: int, *, complex: bool = False, batch: int = 64, noise: float = 0.05, same_component: bool = False
) -> Task:
    """Fit a Haar teacher rotation ``W*`` from minibatches ``y = W* x + noise``, ``x ~ N(0, I)``.

    O(n) has two components (det ±1) and no orthogonal path joins them: from a start in the other component
    than ``W*``, no orthogonal method gets below a relative error of 4/n (the nearest reachable point is ``W*``
    times a reflection, at squared distance 4) — the case of the real fits at seeds 0 (and 1 at N = 1024),
    whose plateaus at 0.016 (N = 256) and 0.004 (N = 1024) are that floor. ``same_component``: negate the
    start's first column where needed, so that the fit can reach 0 (the ``-so`` tasks).

    Metric: the relative error ``‖W X − W* X‖² / ‖W* X‖²`` on fixed samples (validation: 256 columns;
    test: 512 columns, another draw; a quarter of each at N ≥ 4096, where each evaluation would otherwise
    cost a second), ≈ 2 at a Haar start, 0 at the teacher.
    """
    dtype = torch.complex64 if complex else torch.float32
    teacher = _haar((n, n), dtype, _seeded(seed, 1))
    start = _haar((n, n), dtype, _seeded(seed, 2))
    if (
        same_component
        and not complex
        and float(torch.linalg.det(start.double()) * torch.linalg.det(teacher.double())) < 0
    ):
        start[:, 0] = -start[:, 0]
    model = Linear(start)
    data = _seeded(seed, 3)

    def draw(columns: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, columns, dtype=dtype, generator=generator)

    def stream() -> Iterator[Batch]:
        while True:
            x = draw(batch, data)
            yield x, teacher @ x + noise * draw(batch, data)

    fewer = 1 if n < 4096 else 4
    held_out = {"val": draw(256 // fewer, _seeded(seed, 4)), "test": draw(512 // fewer, _seeded(seed, 5))}
    clean = {split: (x, teacher @ x) for split, x in held_out.items()}

    def loss(model: nn.Module, b: Batch) -> torch.Tensor:
        x, y = b
        return (model(x) - y).abs().pow(2).sum() / y.abs().pow(2).sum()

    @torch.no_grad()
    def metric(model: nn.Module, split: str) -> float:
        x, y = clean[split]
        return float((model(x) - y).abs().pow(2).sum() / y.abs().pow(2).sum())

    kind = "unitary" if complex else "rotation"
    return Task(
        f"{kind}-{n}" + ("-so" if same_component else ""),
        f"{'complex unitary' if complex else 'orthogonal'} teacher fit, N = {n}, minibatch {batch}, noise {noise}"
        + (", start in the teacher's component" if same_component else ""),
        model,
        "weight",
        0.0,
        stream(),
        loss,
        metric,
        "relative test error",
        (1e-1, 1e-2, 1e-3),
        complex=complex,
    )


class Basis(nn.Module):
    """Reconstruction through an n × p basis ``W``: ``x ↦ W Wᴴ x``."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W = self.weight
        return W @ (W.mT @ x)


def subspace(n: int, p: int, seed: int, *, batch: int = 64, noise: float = 0.1) -> Task:
    """Learn the top-p principal subspace of data ``x = V (√λ ∘ z) + σ ε`` (V n × p orthonormal) from minibatches.

    The loss is the reconstruction error ``‖x − W Wᵀ x‖² / ‖x‖²``; the spectrum λ falls linearly from 4
    to 1. Test metric: the exact excess reconstruction error over the optimum, ``(E‖x − W Wᵀ x‖² −
    σ² (n − p)) / Σ λ`` (from the covariance, no sampling), ≈ 1 at a random start, 0 on span(V).
    Validation: the same figure measured on 1,024 held-out samples.
    """
    V = _haar((n, p), torch.float32, _seeded(seed, 1))
    scale = torch.linspace(4.0, 1.0, p).sqrt()
    model = Basis(_haar((n, p), torch.float32, _seeded(seed, 2)))
    data = _seeded(seed, 3)

    def draw(columns: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(p, columns, generator=generator) * scale[:, None]
        return V @ z + noise * torch.randn(n, columns, generator=generator)

    def stream() -> Iterator[Batch]:
        while True:
            x = draw(batch, data)
            yield x, x

    val = draw(1024, _seeded(seed, 4))
    optimum = noise**2 * (n - p)
    total = float(scale.pow(2).sum())

    def loss(model: nn.Module, b: Batch) -> torch.Tensor:
        x, _ = b
        return (model(x) - x).pow(2).sum() / x.pow(2).sum()

    @torch.no_grad()
    def metric(model: nn.Module, split: str) -> float:
        W = model.weight.double()
        if split == "val":
            x = val.double()
            error = float((W @ (W.mT @ x) - x).pow(2).sum()) / x.shape[1]
        else:  # E‖(I − W Wᵀ) x‖² = tr(M V Λ Vᵀ Mᵀ) + σ² tr(M Mᵀ), M = I − W Wᵀ
            MV = V.double() - W @ (W.mT @ V.double())
            gram = W.mT @ W
            trace_MMt = n - 2 * float(gram.trace()) + float(gram.pow(2).sum())
            error = float((MV * scale.double().pow(2)).mul(MV).sum()) + noise**2 * trace_MMt
        return (error - optimum) / total

    return Task(
        f"subspace-{n}x{p}",
        f"principal subspace, n × p = {n} × {p}, minibatch {batch}, noise {noise}",
        model,
        "weight",
        0.0,
        stream(),
        loss,
        metric,
        "excess reconstruction error",
        (1e-1, 3e-2, 1e-2),
        rectangular=True,
    )


def adding(hidden: int, seed: int, *, T: int = 50, batch: int = 16) -> Task:
    """The adding problem (T steps) on an orthogonal RNN of ``hidden`` units, ReLU, small batch.

    The authors' model (:class:`~unitary_lowrank.backends.torch.OrthogonalRNN`, Henaff initialization, no
    input bias, Xavier readout); the input and readout maps train with Adam at 1e-3 for every method.
    Metric: test MSE (predicting 1 always scores 1/6 ≈ 0.167); validation: 512 other sequences.
    """
    from unitary_lowrank.backends.torch import OrthogonalRNN

    from unitary_lowrank.tasks.adding import adding_batch

    torch.manual_seed(seed)  # the input and readout maps' default initialization
    model = OrthogonalRNN(2, hidden, 1, init="henaff", output_init="xavier", generator=_seeded(seed, 2))
    data = _seeded(seed, 3)

    def stream() -> Iterator[Batch]:
        while True:
            yield adding_batch(T, batch, data)

    held_out = {"val": adding_batch(T, 512, _seeded(seed, 4)), "test": adding_batch(T, 1000, _seeded(seed, 5))}

    def loss(model: nn.Module, b: Batch) -> torch.Tensor:
        x, y = b
        return nn.functional.mse_loss(model(x), y)

    @torch.no_grad()
    def metric(model: nn.Module, split: str) -> float:
        return float(loss(model, held_out[split]))

    return Task(
        f"adding-{hidden}",
        f"adding problem, T = {T}, orthogonal RNN with {hidden} units, minibatch {batch}",
        model,
        "weight_hh",
        1e-3,
        stream(),
        loss,
        metric,
        "test MSE",
        (0.1, 0.05, 0.01),
    )


#: name → builder(seed). The names are the harness's task identifiers.
TASKS: dict[str, Callable[[int], Task]] = {
    "rotation-256": lambda seed: rotation(256, seed),
    "rotation-1024": lambda seed: rotation(1024, seed),
    "rotation-4096": lambda seed: rotation(4096, seed),
    "rotation-1024-so": lambda seed: rotation(1024, seed, same_component=True),
    "adding-512": lambda seed: adding(512, seed),
    "subspace-4096x256": lambda seed: subspace(4096, 256, seed),
    "unitary-1024": lambda seed: rotation(1024, seed, complex=True),
}


# -- methods ----------------------------------------------------------------------------------------------------


@dataclass
class Trainer:
    """What a method makes of a task's model: one optimizer step from a loss, and the constrained weight."""

    step: Callable[[Callable[[], torch.Tensor]], torch.Tensor]
    weight: Callable[[], torch.Tensor]


def _split(task: Task) -> tuple[nn.Parameter, list[nn.Parameter]]:
    weight = getattr(task.model, task.weight_name)
    return weight, [p for p in task.model.parameters() if p is not weight]


def _groups(constrained: list[nn.Parameter], lr: float, others: list[nn.Parameter], task: Task, **flags) -> list:
    groups = [{"params": constrained, "lr": lr, **flags}]
    return groups + ([{"params": others, "lr": task.other_lr}] if others else [])


def _stepper(*optimizers: Any) -> Callable[[Callable[[], torch.Tensor]], torch.Tensor]:
    def step(forward: Callable[[], torch.Tensor]) -> torch.Tensor:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss = forward()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        return loss.detach()

    return step


def projunn(rank: int | str = 1, sketch: str = "randomized", method: str = "transport", default: bool = False):
    """``ProjUNN(torch.optim.Adam(...))``; ``default``: no option given but the learning rate (``rank="auto"``)."""

    def install(task: Task, lr: float, seed: int) -> Trainer:
        from unitary_lowrank.backends.torch import ProjUNN

        weight, others = _split(task)
        base = torch.optim.Adam(_groups([weight], lr, others, task, unitary=True))
        low_rank = {} if method == "dense" else {"rank": rank, "sketch": sketch}  # dense takes no rank or sketch
        options = {} if default else {"method": method, **low_rank}
        optimizer = ProjUNN(base, seed=seed, **options)
        return Trainer(_stepper(optimizer), lambda: weight)

    return install


def projected(task: Task, lr: float, seed: int) -> Trainer:
    """The projected-state prototype (``projected_state.ProjectedAdam``, not the library's step), Adam on the rest."""
    from projected_state import ProjectedAdam

    weight, others = _split(task)
    optimizers = [ProjectedAdam([weight], lr, seed=seed)]
    if others:
        optimizers.append(torch.optim.Adam(others, lr=task.other_lr))
    return Trainer(_stepper(*optimizers), lambda: weight)


def torch_orthogonal(orthogonal_map: str):
    """``torch.nn.utils.parametrizations.orthogonal`` with ``orthogonal_map``, started at the task's weight, Adam."""

    def install(task: Task, lr: float, seed: int) -> Trainer:
        from torch.nn.utils import parametrizations

        start = getattr(task.model, task.weight_name).detach().clone()
        parametrizations.orthogonal(task.model, task.weight_name, orthogonal_map=orthogonal_map)
        with torch.no_grad():
            setattr(task.model, task.weight_name, start)  # the parametrization's right inverse: the same start
        original = getattr(task.model.parametrizations, task.weight_name).original
        others = [p for p in task.model.parameters() if p is not original]
        optimizer = torch.optim.Adam(_groups([original], lr, others, task))
        return Trainer(_stepper(optimizer), lambda: getattr(task.model, task.weight_name))

    return install


def geotorch_orthogonal(task: Task, lr: float, seed: int) -> Trainer:
    """geotorch's ``orthogonal`` (its default trivialization, ``expm``) started at the task's weight, Adam."""
    import geotorch

    start = getattr(task.model, task.weight_name).detach().clone()
    geotorch.orthogonal(task.model, task.weight_name)
    with torch.no_grad():
        setattr(task.model, task.weight_name, start)
    constrained = list(getattr(task.model.parametrizations, task.weight_name).parameters())
    others = [p for p in task.model.parameters() if all(p is not c for c in constrained)]
    optimizer = torch.optim.Adam(_groups(constrained, lr, others, task))
    return Trainer(_stepper(optimizer), lambda: getattr(task.model, task.weight_name))


def geoopt_stiefel(optimizer_name: str, canonical: bool = True):
    """geoopt's ``ManifoldParameter`` on ``geoopt.Stiefel()`` (its default, the canonical metric, whose Cayley
    retraction solves an n × n system) with its ``RiemannianAdam`` or ``RiemannianSGD``; ``canonical=False``:
    the Euclidean metric and a QR retraction (O(n p²)). The other parameters are Euclidean, in the same
    optimizer."""

    def install(task: Task, lr: float, seed: int) -> Trainer:
        import geoopt

        weight, others = _split(task)
        manifold_weight = geoopt.ManifoldParameter(
            weight.detach().clone(), manifold=geoopt.Stiefel(canonical=canonical)
        )
        setattr(task.model, task.weight_name, manifold_weight)
        kind = getattr(geoopt.optim, optimizer_name)
        if optimizer_name == "RiemannianAdam":  # Euclidean parameters in RiemannianAdam are stepped by Adam
            return Trainer(_stepper(kind(_groups([manifold_weight], lr, others, task), lr=lr)), lambda: manifold_weight)
        # RiemannianSGD: the other parameters keep Adam, as in every other method
        optimizers = [kind([manifold_weight], lr=lr)] + ([torch.optim.Adam(others, lr=task.other_lr)] if others else [])
        return Trainer(_stepper(*optimizers), lambda: manifold_weight)

    return install


def unconstrained_adam(task: Task, lr: float, seed: int) -> Trainer:
    """Plain Adam on the weight, nothing keeping it orthogonal: the reference that is not orthogonal."""
    weight, others = _split(task)
    return Trainer(_stepper(torch.optim.Adam(_groups([weight], lr, others, task))), lambda: weight)


@dataclass(frozen=True)
class Method:
    label: str
    install: Callable[[Task, float, int], Trainer]
    family: str  # "projunn", "peer", "reference" or "prototype" (a design measured in benchmarks/, not the library)
    complex: bool = True  # runs complex unitary weights
    rectangular: bool = True  # runs n × p weights
    optimizer: str = "adam"  # which learning-rate grid applies


METHODS: dict[str, Method] = {
    "projunn-default": Method("projUNN, default", projunn(default=True), "projunn"),
    **{
        f"projunn-k{k}{'-subspace' if sketch == 'subspace' else ''}": Method(
            f"projUNN, k = {k}{', subspace' if sketch == 'subspace' else ''}", projunn(k, sketch), "projunn"
        )
        for k in (1, 4, 16, 64)
        for sketch in ("randomized", "subspace")
    },
    "projunn-auto-subspace": Method("projUNN, rank auto, subspace", projunn("auto", "subspace"), "projunn"),
    "projunn-dense": Method("dense Riemannian (this library)", projunn(method="dense"), "projunn"),
    "projected-auto": Method("projected state, rank auto (prototype)", projected, "prototype"),
    "torch-matrix_exp": Method("torch orthogonal, matrix_exp", torch_orthogonal("matrix_exp"), "peer"),
    "torch-cayley": Method("torch orthogonal, cayley", torch_orthogonal("cayley"), "peer"),
    "torch-householder": Method(
        "torch orthogonal, householder", torch_orthogonal("householder"), "peer", complex=False
    ),
    "geotorch": Method("geotorch orthogonal", geotorch_orthogonal, "peer", complex=False),
    "geoopt-adam": Method("geoopt RiemannianAdam, Stiefel", geoopt_stiefel("RiemannianAdam"), "peer", complex=False),
    "geoopt-adam-euclidean": Method(
        "geoopt RiemannianAdam, Stiefel(canonical=False)",
        geoopt_stiefel("RiemannianAdam", canonical=False),
        "peer",
        complex=False,
    ),
    "geoopt-sgd": Method(
        "geoopt RiemannianSGD, Stiefel", geoopt_stiefel("RiemannianSGD"), "peer", complex=False, optimizer="sgd"
    ),
    "adam": Method("Adam, unconstrained (not orthogonal)", unconstrained_adam, "reference"),
}
# Why the complex=False entries: torch's householder map refuses complex tensors; geotorch 0.4 fails on them
# (torch.sign of a complex tensor); geoopt 0.5's Stiefel accepts complex tensors but does not keep them unitary
# (max |Wᴴ W − I| = 1.8e-2 after one RiemannianAdam step on an 8 × 8 complex64 weight, measured).


def supports(method: str, task_name: str) -> bool:
    kind = METHODS[method]
    complex_task, rectangular = task_name.startswith("unitary"), task_name.startswith("subspace")
    return (kind.complex or not complex_task) and (kind.rectangular or not rectangular)


# -- one run ----------------------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    task: str
    method: str
    lr: float
    seed: int = 0
    seconds: float = 20.0  # budget of timed training (wall seconds, one thread)
    max_steps: int | None = None
    evaluate: bool = True  # False: calibration (no curve; memory over the timed steps alone)
    evaluations: int = 40  # about this many evaluations over the budget, after step 0


@dataclass
class RunResult:
    spec: dict
    status: str = "running"  # "ok", "diverged", "running" (a killed run leaves this)
    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    seconds_per_step: float = math.nan
    step_seconds: list[float] = field(default_factory=list)  # the first 50 steps' times
    peak_memory_mb: float = math.nan  # NaN unless this was the process's first run (see ``run``)
    unitarity_error: float = math.nan
    curve: list[dict] = field(default_factory=list)  # {step, seconds, val, test}
    load_start: list[float] = field(default_factory=list)
    load_end: list[float] = field(default_factory=list)
    task_description: str = ""
    metric_name: str = ""
    targets: tuple[float, ...] = ()
    versions: dict = field(default_factory=dict)


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for package in ("torch", "unitary-lowrank", "geotorch", "geoopt"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def _resident_mb(key: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux), NaN elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


#: Whether this process has run nothing yet: resident memory measures a run only in a fresh process (a
#: process that ran before keeps freed memory in its allocator, which a later run reuses unseen).
_FRESH_PROCESS = True


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: restart VmHWM from the current VmRSS
    except OSError:
        pass


@torch.no_grad()
def unitarity_error(W: torch.Tensor) -> float:
    W = W.detach().to(torch.complex128 if W.is_complex() else torch.float64)
    if W.shape[-2] < W.shape[-1]:
        W = W.mH
    return float((W.mH @ W - torch.eye(W.shape[-1], dtype=W.dtype)).abs().max())


def run(spec: RunSpec, out: Path | None = None) -> RunResult:
    """Train ``spec.method`` on ``spec.task`` for ``spec.seconds`` of timed work; write the result as it goes."""
    if not supports(spec.method, spec.task):
        raise ValueError(f"{spec.method} does not run {spec.task} (see METHODS)")
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    task = TASKS[spec.task](spec.seed)
    trainer = METHODS[spec.method].install(task, spec.lr, spec.seed)
    result = RunResult(
        asdict(spec),
        load_start=[round(x, 2) for x in os.getloadavg()],
        task_description=task.description,
        metric_name=task.metric_name,
        targets=task.targets,
        versions=_versions(),
    )

    def save() -> None:
        if out is not None:
            partial = out.with_suffix(".tmp")
            partial.write_text(json.dumps(asdict(result), indent=1))
            partial.replace(out)

    def record() -> None:
        task.model.eval()
        point = {"step": result.steps, "seconds": result.seconds}
        for split in ("val", "test"):
            point[split] = task.metric(task.model, split)
        result.curve.append(point)
        task.model.train()
        save()

    if spec.evaluate:
        record()
    interval, next_evaluation = spec.seconds / spec.evaluations, 0.0
    resident = _resident_mb("VmRSS")
    _reset_peak()
    cpu_start = time.process_time()
    while result.seconds < spec.seconds and (spec.max_steps is None or result.steps < spec.max_steps):
        batch = next(task.batches)
        started = time.perf_counter()
        loss = trainer.step(lambda b=batch: task.loss(task.model, b))
        finite = bool(torch.isfinite(loss))  # one host read per step, in every method alike
        elapsed = time.perf_counter() - started
        result.steps += 1
        result.seconds += elapsed
        if len(result.step_seconds) < 50:
            result.step_seconds.append(elapsed)
        if not finite:
            result.status = "diverged"
            break
        if spec.evaluate and (result.seconds >= next_evaluation or result.seconds >= spec.seconds):
            next_evaluation = result.seconds + interval
            record()
    result.cpu_seconds = time.process_time() - cpu_start
    global _FRESH_PROCESS
    if _FRESH_PROCESS:
        result.peak_memory_mb = _resident_mb("VmHWM") - resident
    _FRESH_PROCESS = False
    result.seconds_per_step = result.seconds / max(result.steps, 1)
    result.unitarity_error = unitarity_error(trainer.weight())
    if spec.evaluate and result.status != "diverged" and result.curve[-1]["step"] != result.steps:
        record()
    if result.status == "running":
        result.status = "ok"
    result.load_end = [round(x, 2) for x in os.getloadavg()]
    save()
    return result


def serve() -> None:
    """Run the specs read from standard input, one JSON object a line (:class:`RunSpec` fields and ``out``),
    answering each with one line once its result is written: one process for many runs, imports paid once."""
    for line in sys.stdin:
        request = json.loads(line)
        out = Path(request.pop("out"))
        try:
            result = run(RunSpec(**request), out)
            answer = {"status": result.status}
        except Exception as err:  # one bad run must not stop the others
            answer = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(answer), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peers.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the tasks and the methods each runs")
    commands.add_parser("serve", help="run specs read from standard input (used by peer_study.py)")
    one = commands.add_parser("run", help="one run, its result as JSON")
    one.add_argument("task", choices=sorted(TASKS))
    one.add_argument("method", choices=sorted(METHODS))
    one.add_argument("--lr", type=float, required=True)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--seconds", type=float, default=20.0)
    one.add_argument("--max-steps", type=int)
    one.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="calibration: no curve")
    one.add_argument("--out", type=Path, help="write the result here (also while it runs)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
        return
    if args.command == "list":
        for name in TASKS:
            print(f"{name}: {', '.join(m for m in METHODS if supports(m, name))}")
        return
    if args.lr <= 0 or args.seconds <= 0:
        parser.error("--lr and --seconds must be > 0")
    spec = RunSpec(args.task, args.method, args.lr, args.seed, args.seconds, args.max_steps, args.evaluate)
    result = run(spec, args.out)
    if args.out is None:
        print(json.dumps(asdict(result), indent=1))
    else:
        last = result.curve[-1] if result.curve else {}
        print(f"{args.task} {args.method}: {result.status}, {result.steps} steps, "
              f"{1e3 * result.seconds_per_step:.1f} ms/step, test {last.get('test', math.nan):.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
