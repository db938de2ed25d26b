"""Recurrent layers with a unitary recurrent weight: ``OrthogonalRNN`` (real) and ``UnitaryRNN`` (complex).

Both keep the recurrent matrix in the parameter ``weight_hh`` (n×n), which
:meth:`unitary_parameters` returns for a ``{"params": ..., "unitary": True}``
group of :class:`~unitary_lowrank.backends.torch.ProjUNN`. The input
projection of the whole sequence is one matrix product before the time loop,
so each time step costs one n×n product and the nonlinearity.
"""

from __future__ import annotations

import torch
from torch import nn

from .init import cayley_, haar_, henaff_

__all__ = ["LSTMBaseline", "ModReLU", "OrthogonalRNN", "UnitaryRNN"]

_INITS = {"haar": haar_, "henaff": henaff_, "cayley": cayley_}


def _init_recurrent(weight: torch.Tensor, init: str, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        if init == "identity":
            weight.copy_(torch.eye(weight.shape[-1], dtype=weight.dtype))
        elif init in _INITS:
            _INITS[init](weight, generator=generator)
        else:
            raise ValueError(f"init must be one of {('identity', *_INITS)}; got {init!r}")


class ModReLU(nn.Module):
    """``σ(z) = relu(|z| + b) · z / |z|`` with a learned bias per unit (Arjovsky et al. 2016).

    Works on real input too, where it is ``relu(|x| + b) · sign(x)``.
    """

    def __init__(self, features: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.bias = nn.Parameter(torch.full((features,), -0.01, dtype=dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        magnitude = z.abs()
        scale = torch.relu(magnitude + self.bias) / (magnitude + 1e-6)
        return z * scale


def _recur(drive: torch.Tensor, weight: torch.Tensor, activation: nn.Module, readout: str) -> torch.Tensor:
    """``h_t = σ(W h_{t−1} + drive_t)`` from ``h_0 = 0``; the last state, or all of them stacked.

    ``drive`` (T, batch, n) holds every step's input, computed in one product
    before the loop. It is unbound (not indexed as ``drive[t]``) so that the
    backward pass concatenates per-step gradients instead of scattering each
    into a zero tensor the size of the whole sequence.
    """
    steps = drive.unbind(0)
    h = steps[0].new_zeros(steps[0].shape)
    W_t = weight.T
    states = []
    for step_input in steps:
        h = activation(torch.addmm(step_input, h, W_t))
        if readout == "all":
            states.append(h)
    return torch.stack(states) if readout == "all" else h


class _RecurrentBase(nn.Module):
    weight_hh: nn.Parameter

    def unitary_parameters(self) -> list[nn.Parameter]:
        """The recurrent weight: put it in a ``unitary=True`` param group."""
        return [self.weight_hh]

    def other_parameters(self) -> list[nn.Parameter]:
        """Everything else (input map, biases, readout)."""
        return [p for name, p in self.named_parameters() if name != "weight_hh"]


class OrthogonalRNN(_RecurrentBase):
    """Real RNN ``h_t = σ(W h_{t−1} + V x_t + b)`` with orthogonal ``W``, and a linear readout.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    nonlinearity : {"relu", "modrelu", "tanh"}, default "relu"
    init : {"henaff", "haar", "cayley", "identity"}, default "henaff"
    readout : {"last", "all"}, default "last"
        Read out the last hidden state (classification, adding task) or every
        time step (copy task).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: str = "relu",
        init: str = "henaff",
        readout: str = "last",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.hidden_size, self.readout = hidden_size, readout
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, dtype=dtype))
        _init_recurrent(self.weight_hh, init, generator)
        self.input = nn.Linear(input_size, hidden_size, dtype=dtype)
        self.output = nn.Linear(hidden_size, output_size, dtype=dtype)
        if nonlinearity == "modrelu":
            self.activation: nn.Module = ModReLU(hidden_size, dtype)
        elif nonlinearity in ("relu", "tanh"):
            self.activation = nn.ReLU() if nonlinearity == "relu" else nn.Tanh()
        else:
            raise ValueError(f"nonlinearity must be relu, modrelu or tanh; got {nonlinearity!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (T, batch, input_size) → (batch, output) or (T, batch, output)."""
        hs = _recur(self.input(x), self.weight_hh, self.activation, self.readout)
        return self.output(hs)


class UnitaryRNN(_RecurrentBase):
    """Complex RNN ``h_t = modReLU(W h_{t−1} + V x_t)`` with unitary ``W``; readout of ``[Re h, Im h]``.

    Parameters as for :class:`OrthogonalRNN`; ``dtype`` is the complex dtype of
    the recurrent weight (complex64 by default).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        init: str = "henaff",
        readout: str = "last",
        dtype: torch.dtype = torch.complex64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        real = torch.empty(0, dtype=dtype).real.dtype
        self.hidden_size, self.readout = hidden_size, readout
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, dtype=dtype))
        _init_recurrent(self.weight_hh, init, generator)
        self.input = nn.Linear(input_size, hidden_size, dtype=dtype)
        self.activation = ModReLU(hidden_size, real)
        self.output = nn.Linear(2 * hidden_size, output_size, dtype=real)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hs = _recur(self.input(x.to(self.weight_hh.dtype)), self.weight_hh, self.activation, self.readout)
        return self.output(torch.cat([hs.real, hs.imag], dim=-1))


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
