"""``LSTMBaseline``: the recurrent tasks' unconstrained baseline, an LSTM with the RNN cells' readout."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTMBaseline"]


class LSTMBaseline(nn.Module):
    """``torch.nn.LSTM`` with the same readout conventions, for comparisons in the same harness."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        readout: str = "last",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.readout = readout
        self.lstm = nn.LSTM(input_size, hidden_size, dtype=dtype)
        self.output = nn.Linear(hidden_size, output_size, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, (h, _) = self.lstm(x)
        return self.output(states if self.readout == "all" else h[-1])
