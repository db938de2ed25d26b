"""What a task provides to the training harness."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass
class Task:
    """A sequence task: batches of (inputs (T, batch, features), targets), a loss and a figure of merit.

    ``train_batches(generator)`` yields training batches forever (or one epoch
    for a finite data set); ``test()`` returns the fixed test set.
    """

    name: str
    input_size: int
    output_size: int
    readout: str  # "all": an output at every time step; "last": one at the end
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric_name: str
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    baseline: float  # the loss of the best memoryless predictor
    train_batches: Callable[[torch.Generator], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    test: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    steps_per_epoch: int | None = None  # finite data sets
    note: str = ""
