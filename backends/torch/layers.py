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

__all__ = ["ModReLU", "OrthogonalRNN", "UnitaryRNN"]

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

    Works on real input too, where it is ``relu(|x| + b) · sign(x)``. The bias
    starts uniform in (−0.01, 0.01), as in the projUNN authors' released scripts.
    """

    def __init__(self, features: int, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        bias = (torch.rand(features, dtype=dtype, generator=generator) * 2 - 1) * 0.01
        self.bias = nn.Parameter(bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not z.is_complex():
            return torch.relu(z.abs() + self.bias) * z.sign()
        magnitude = z.abs()
        scale = torch.relu(magnitude + self.bias) / (magnitude + 1e-6)
        return z * scale


def _recur(drive: torch.Tensor, weight: torch.Tensor, activation: nn.Module, readout: str) -> torch.Tensor:
    """``h_t = σ(W h_{t−1} + drive_t)`` from ``h_0 = 0`` through autograd; the last state, or all stacked.

    The general path (complex weights, any activation). ``drive`` (T, batch, n)
    holds every step's input, computed in one product before the loop. It is
    unbound (not indexed as ``drive[t]``) so that the backward pass concatenates
    per-step gradients instead of scattering each into a zero tensor the size
    of the whole sequence.
    """
    if drive.shape[0] == 0:
        raise ValueError("the input sequence is empty (T = 0)")
    steps = drive.unbind(0)
    h = steps[0].new_zeros(steps[0].shape)
    W_t = weight.T
    states = []
    for step_input in steps:
        h = activation(torch.addmm(step_input, h, W_t))
        if readout == "all":
            states.append(h)
    return torch.stack(states) if readout == "all" else h


class _RealRecurrence(torch.autograd.Function):
    """``h_t = σ(h_{t−1} Wᵀ + d_t)`` for real relu / tanh / modReLU, with a hand-written backward.

    Every derivative the backward pass needs follows from the stored states
    alone (relu: ``h > 0``; tanh: ``1 − h²``; modReLU ``sign(z) relu(|z| + b)``:
    ``∂σ/∂z = [h ≠ 0]``, ``∂σ/∂b = sign(h)``), so the forward pass keeps one
    (T, batch, n) tensor and writes each step into it in place. The backward
    pass runs one ``δ_{t+1} W`` product per step and forms ``∂L/∂W = Σ_t δ_tᵀ h_{t−1}``
    as a single (n × T·batch)(T·batch × n) product after the loop, instead of
    T small products and T accumulations through the autograd engine.
    """

    @staticmethod
    def forward(ctx, drive, weight, bias, kind: str, last: bool):
        T, batch, n = drive.shape
        H = torch.empty_like(drive, memory_format=torch.contiguous_format)
        W_t = weight.T
        sign = torch.empty((batch, n), dtype=drive.dtype, device=drive.device)  # modReLU's signs (unused otherwise)
        for t in range(T):
            z = drive[0].clone() if t == 0 else torch.addmm(drive[t], H[t - 1], W_t)
            if kind == "relu":
                torch.clamp(z, min=0, out=H[t])
            elif kind == "tanh":
                torch.tanh(z, out=H[t])
            else:
                torch.sign(z, out=sign)
                torch.mul(z.abs_().add_(bias).clamp_(min=0), sign, out=H[t])
        ctx.save_for_backward(H, weight)
        ctx.kind, ctx.last = kind, last
        return H[-1].clone() if last else H

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        H, weight = ctx.saved_tensors
        T, _, n = H.shape
        if ctx.kind == "relu":
            slope = (H > 0).to(H.dtype)  # in H's dtype: a float-by-bool product is 2× slower
        elif ctx.kind == "tanh":
            slope = 1 - H * H
        else:
            slope = (H != 0).to(H.dtype)
        D = torch.empty_like(H)  # δ_t = ∂L/∂z_t
        for t in range(T - 1, -1, -1):
            if t == T - 1:
                g = grad if ctx.last else grad[t]
            else:  # a fresh product, then one write into D: faster than mm(..., out=D[t]) on small blocks
                g = D[t + 1] @ weight
                if not ctx.last:
                    g += grad[t]
            torch.mul(g, slope[t], out=D[t])
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] and T > 1:
            grad_weight = D[1:].reshape(-1, n).T @ H[:-1].reshape(-1, n)
        elif ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
        if ctx.kind == "modrelu" and ctx.needs_input_grad[2]:
            grad_bias = (D * H.sign()).sum((0, 1))
        return D, grad_weight, grad_bias, None, None


def _recur_real(drive: torch.Tensor, weight: torch.Tensor, activation: nn.Module, readout: str) -> torch.Tensor:
    """The real recurrence with its hand-written backward (same numbers as :func:`_recur`)."""
    if drive.shape[0] == 0:
        raise ValueError("the input sequence is empty (T = 0)")
    if isinstance(activation, nn.ReLU):
        kind, bias = "relu", None
    elif isinstance(activation, nn.Tanh):
        kind, bias = "tanh", None
    else:
        kind, bias = "modrelu", activation.bias
    return _RealRecurrence.apply(drive, weight, bias, kind, readout == "last")


class _RecurrentBase(nn.Module):
    weight_hh: nn.Parameter

    def unitary_parameters(self) -> list[nn.Parameter]:
        """The recurrent weight: put it in a ``unitary=True`` param group."""
        return [self.weight_hh]

    def other_parameters(self) -> list[nn.Parameter]:
        """Everything else (input map, biases, readout)."""
        return [p for name, p in self.named_parameters() if name != "weight_hh"]


def _init_input(layer: nn.Linear) -> None:
    with torch.no_grad():
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()


def _init_output(layer: nn.Linear, output_init: str) -> None:
    with torch.no_grad():
        if output_init == "kaiming":
            nn.init.kaiming_normal_(layer.weight)
            layer.bias.zero_()
        elif output_init == "xavier":
            nn.init.xavier_uniform_(layer.weight, gain=0.5)
            layer.bias.zero_()
        elif output_init != "default":
            raise ValueError(f"output_init must be 'default', 'kaiming' or 'xavier'; got {output_init!r}")


class OrthogonalRNN(_RecurrentBase):
    """Real RNN ``h_t = σ(W h_{t−1} + V x_t)`` with orthogonal ``W``, and a linear readout.

    The input map ``V`` has **no bias** by default, and for a reason: with an
    orthogonal ``W`` nothing contracts the state, so a constant drive ``b``
    added at every step accumulates instead of settling (with ``W = I`` and
    ReLU, ``|h_T|`` grows like ``T |b|``: ≈ 3,300 at T = 750 for a default-initialized
    bias, and a cross-entropy of hundreds at initialization on permuted MNIST).
    Zero-mean inputs and no bias keep the state bounded by the input energy.
    ``input_bias=True`` restores it (initialized to zero).

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    nonlinearity : {"relu", "modrelu", "tanh"}, default "relu"
    init : {"henaff", "haar", "cayley", "identity"}, default "henaff"
        Initialization of the recurrent weight ``W``.
    readout : {"last", "all"}, default "last"
        Read out the last hidden state (classification, adding task) or every
        time step (copy task).
    input_bias : bool, default False
        Give the input map a bias.
    output_init : {"default", "kaiming", "xavier"}, default "default"
        Readout initialization: PyTorch's ``nn.Linear`` default; Kaiming-normal
        weight and zero bias (the authors' copy task); Xavier-uniform with gain
        0.5 and zero bias (their adding task). The input weight is always
        Xavier-uniform and the modReLU bias uniform in (−0.01, 0.01), as in the
        authors' released scripts.
    backward : {"auto", "autograd", "manual"}, default "auto"
        How the real recurrence is differentiated: through autograd over the
        Python loop, or by the hand-written backward pass (same numbers to
        rounding; it saves the per-step temporaries of modReLU). "auto" takes
        the hand-written pass for modReLU and autograd for relu and tanh, the
        faster of the two for each on the CPU this was measured on
        (``benchmarks/rnn_speed.py``).
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
        input_bias: bool = False,
        output_init: str = "default",
        backward: str = "auto",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if readout not in ("last", "all"):
            raise ValueError(f"readout must be 'last' or 'all'; got {readout!r}")
        if backward not in ("auto", "autograd", "manual"):
            raise ValueError(f"backward must be 'auto', 'autograd' or 'manual'; got {backward!r}")
        if backward == "auto":
            backward = "manual" if nonlinearity == "modrelu" else "autograd"
        self.hidden_size, self.readout, self.backward = hidden_size, readout, backward
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, dtype=dtype))
        _init_recurrent(self.weight_hh, init, generator)
        self.input = nn.Linear(input_size, hidden_size, bias=input_bias, dtype=dtype)
        _init_input(self.input)
        self.output = nn.Linear(hidden_size, output_size, dtype=dtype)
        _init_output(self.output, output_init)
        if nonlinearity == "modrelu":
            self.activation: nn.Module = ModReLU(hidden_size, dtype, generator)
        elif nonlinearity in ("relu", "tanh"):
            self.activation = nn.ReLU() if nonlinearity == "relu" else nn.Tanh()
        else:
            raise ValueError(f"nonlinearity must be relu, modrelu or tanh; got {nonlinearity!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (T, batch, input_size) → (batch, output) or (T, batch, output)."""
        recur = _recur if self.backward == "autograd" else _recur_real
        hs = recur(self.input(x), self.weight_hh, self.activation, self.readout)
        return self.output(hs)


class UnitaryRNN(_RecurrentBase):
    """Complex RNN ``h_t = modReLU(W h_{t−1} + V x_t)`` with unitary ``W``; readout of ``[Re h, Im h]``.

    Parameters as for :class:`OrthogonalRNN` (no input bias by default, for
    the same reason); ``dtype`` is the complex dtype of the recurrent weight
    (complex64 by default). The recurrence runs through autograd.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        init: str = "henaff",
        readout: str = "last",
        input_bias: bool = False,
        output_init: str = "default",
        dtype: torch.dtype = torch.complex64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        real = torch.empty(0, dtype=dtype).real.dtype
        self.hidden_size, self.readout = hidden_size, readout
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, dtype=dtype))
        _init_recurrent(self.weight_hh, init, generator)
        self.input = nn.Linear(input_size, hidden_size, bias=input_bias, dtype=dtype)
        _init_input(self.input)
        self.activation = ModReLU(hidden_size, real, generator)
        self.output = nn.Linear(2 * hidden_size, output_size, dtype=real)
        _init_output(self.output, output_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hs = _recur(self.input(x.to(self.weight_hh.dtype)), self.weight_hh, self.activation, self.readout)
        return self.output(torch.cat([hs.real, hs.imag], dim=-1))
