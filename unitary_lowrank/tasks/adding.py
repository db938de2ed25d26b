"""Adding problem: output the sum of the two marked numbers among T.

Each step carries a value uniform in [0, 1] and a marker; exactly one marker
is set in each half of the sequence. The target is the sum of the two marked
values; the loss is the mean squared error. The first marker falls in
positions [0, h), the second in [h, T), h = ⌊(T − 1)/2⌋ (the projUNN authors'
split). Predicting 1 always scores 1/6 ≈ 0.167.
"""

from __future__ import annotations

import torch

from ._task import Task


def adding_batch(T: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if T < 3:
        raise ValueError(f"the adding task needs T >= 3 (a marker in each half); got T = {T}")
    values = torch.rand(T, batch, generator=generator)
    half = (T - 1) // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, T, (batch,), generator=generator)
    markers = torch.zeros(T, batch)
    columns = torch.arange(batch)
    markers[first, columns] = 1
    markers[second, columns] = 1
    targets = values[first, columns] + values[second, columns]
    return torch.stack([values, markers], dim=-1), targets.unsqueeze(-1)


def adding_task(T: int = 750, batch: int = 50, test_size: int = 1000, seed: int = 0) -> Task:
    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(output.float(), targets)

    def train_batches(generator: torch.Generator):
        while True:
            yield adding_batch(T, batch, generator)

    test_set = adding_batch(T, test_size, torch.Generator().manual_seed(20_000 + seed))
    return Task(
        "adding",
        2,
        1,
        "last",
        loss,
        "test MSE",
        lambda o, t: float(loss(o, t)),
        1 / 6,
        train_batches,
        lambda: test_set,
        note=f"T = {T}",
    )
