"""Copy task: remember 10 symbols over T blank steps, then reproduce them after a marker.

Input alphabet: 0 = blank, 1–8 = symbols, 9 = marker, one-hot (10 features).
A sequence has T + 20 steps: 10 random symbols, T blanks, the marker, 9
blanks. The target is blank for T + 10 steps, then the 10 symbols, the first
of them due at the marker's own step (the convention of the expRNN and
projUNN authors' scripts: marker at position T + 10, counting from 0). The loss is
the cross-entropy over all steps (9 classes); a memoryless predictor that
outputs blanks and then uniform guesses scores ``10 log 8 / (T + 20)``.
"""

from __future__ import annotations

import math

import torch

from ._task import Task


def copy_batch(T: int, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    symbols = torch.randint(1, 9, (10, batch), generator=generator)
    inputs = torch.zeros(T + 20, batch, dtype=torch.long)
    inputs[:10] = symbols
    inputs[T + 10] = 9
    targets = torch.zeros(T + 20, batch, dtype=torch.long)
    targets[T + 10 :] = symbols
    return torch.nn.functional.one_hot(inputs, 10).float(), targets


def copy_task(T: int = 1000, batch: int = 128, test_size: int = 1000, seed: int = 0) -> Task:
    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(output.reshape(-1, 9).float(), targets.reshape(-1))

    def accuracy(output: torch.Tensor, targets: torch.Tensor) -> float:
        recalled = output[-10:].argmax(-1)
        return float((recalled == targets[-10:]).float().mean())

    def train_batches(generator: torch.Generator):
        while True:
            yield copy_batch(T, batch, generator)

    test_set = copy_batch(T, test_size, torch.Generator().manual_seed(10_000 + seed))
    return Task(
        "copy",
        10,
        9,
        "all",
        loss,
        "recall accuracy",
        accuracy,
        10 * math.log(8) / (T + 20),
        train_batches,
        lambda: test_set,
        note=f"T = {T}",
    )
