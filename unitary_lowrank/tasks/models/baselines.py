"""Baseline 1-Lipschitz convolutions for comparisons in the same harness: Cayley-FFT and AOL.

Both are written from their papers, act on H×W images with circular padding
like :class:`~unitary_lowrank.backends.torch.UnitaryConv2d`, and report their
exact operator norm (:meth:`lipschitz`, max over frequencies), so that
:func:`~unitary_lowrank.backends.torch.lipschitz_bound` certifies them alike.
They are trained by any plain ``torch.optim`` optimizer (no projUNN step).
"""

from __future__ import annotations

import torch
from torch import nn

from ...backends.torch.lipschitz import circular_spectrum, image_size, largest_norm

__all__ = ["AOLConv2d", "CayleyConv2d"]


class CayleyConv2d(nn.Module):
    """Orthogonal convolution by the Cayley transform of each frequency's skew-Hermitian matrix (Trockman & Kolter).

    The parameter is a real kernel ``V`` (n, n, k, k), n = max(c_in, c_out).
    Per ``rfft2`` frequency f of the H×W image, ``S[f] = V̂[f] − V̂[f]ᴴ`` is
    skew-Hermitian and ``Q[f] = (I + S[f])⁻¹ (I − S[f])`` unitary; the layer
    applies its top-left c_out×c_in block (orthonormal columns when
    c_out ≥ c_in, rows otherwise). ``V`` real makes ``Q[−f] = conj(Q[f])``: a real
    operator. Cost per step: a batch of H (W/2 + 1) n×n Hermitian eigendecompositions (in
    double precision), which the layer repeats on every forward pass (projUNN instead keeps ``Q``).

    References
    ----------
    A. Trockman, J. Z. Kolter, "Orthogonalizing convolutional layers with the
    Cayley transform", ICLR 2021.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | tuple[int, int],
        *,
        kernel_size: int = 3,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, image_size(size)
        n = max(in_channels, out_channels)
        weight = torch.randn(n, n, kernel_size, kernel_size, dtype=dtype, generator=generator)
        self.weight = nn.Parameter(weight / (n * kernel_size))  # small S: Q starts near the identity

    def frequencies(self) -> torch.Tensor:
        """``Q[f]`` cut to c_out×c_in, shape (H, W//2 + 1, c_out, c_in), complex."""
        V = circular_spectrum(self.weight, self.size)
        # Through the Hermitian eigendecomposition iS = W Λ Wᴴ, Q = W diag((1 + iλ)/(1 − iλ)) Wᴴ, in double
        # precision: MKL's batched LU solves (torch 2.13, CPU; linalg.solve and linalg.inv alike) stopped with
        # "Parameter 6 was incorrect on entry to CLASWP/ZLASWP" and hung inside this network (measured).
        S = (V - V.mH).to(torch.complex128)
        lam, W = torch.linalg.eigh(1j * S)
        phase = (1 + 1j * lam) / (1 - 1j * lam)
        Q = ((W * phase[..., None, :]) @ W.mH).to(V.dtype)
        return Q[..., : self.out_channels, : self.in_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = torch.fft.rfft2(x, norm="ortho")
        Y = torch.einsum("hwoi,bihw->bohw", self.frequencies(), X)
        return torch.fft.irfft2(Y, s=self.size, norm="ortho")

    def lipschitz(self) -> float:
        """Max over frequencies of ‖Q[f]‖₂ (double precision): 1 to rounding."""
        return largest_norm(self.frequencies())

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, size={self.size}, kernel_size={self.weight.shape[-1]}"


class AOLConv2d(nn.Module):
    """Almost-orthogonal (AOL) convolution: a k×k kernel rescaled per input channel to be 1-Lipschitz.

    With kernel ``P`` (c_out, c_in, k, k) and ``G = Pᵀ P`` the Gram kernel
    ((2k − 1)×(2k − 1), computed by convolving ``P`` with itself), the input
    channels are scaled by ``d_i = (Σ_{j, Δ} |G[i, j, Δ]|)^{−1/2}``; the layer
    applies the circular convolution with ``P diag(d)``, whose norm is ≤ 1 by
    Prach & Lampert's theorem (the rescaled Gram operator has ℓ∞ row sums ≤ 1;
    on a small torus wrapped terms only merge, which cannot raise a row sum
    of absolute values). Not exactly orthogonal: its norm can be below 1.

    References
    ----------
    B. Prach, C. H. Lampert, "Almost-orthogonal layers for efficient general-purpose
    Lipschitz networks", ECCV 2022.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | tuple[int, int],
        *,
        kernel_size: int = 3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"AOLConv2d: kernel_size must be odd; got {kernel_size}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, image_size(size)
        if kernel_size // 2 > min(self.size):
            raise ValueError(f"AOLConv2d: kernel_size {kernel_size} needs images of side ≥ {kernel_size // 2}")
        weight = torch.zeros(out_channels, in_channels, kernel_size, kernel_size, dtype=dtype)
        center = kernel_size // 2
        with torch.no_grad():  # the identity on the first min(c_in, c_out) channels: no contraction at the start
            for c in range(min(in_channels, out_channels)):
                weight[c, c, center, center] = 1.0
        self.weight = nn.Parameter(weight)

    def rescaled_kernel(self) -> torch.Tensor:
        P = self.weight
        k = P.shape[-1]
        per_input = P.transpose(0, 1)  # (c_in, c_out, k, k): channel i's kernels as one "image" of c_out channels
        gram = nn.functional.conv2d(per_input, per_input, padding=k - 1)  # (c_in, c_in, 2k − 1, 2k − 1)
        d = gram.abs().sum(dim=(1, 2, 3)).clamp_min(torch.finfo(P.dtype).tiny).rsqrt()
        return P * d[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = self.rescaled_kernel()
        p = K.shape[-1] // 2
        return nn.functional.conv2d(nn.functional.pad(x, (p, p, p, p), mode="circular"), K)

    def lipschitz(self) -> float:
        """Max over frequencies of the rescaled kernel's ‖·‖₂ (double precision): ≤ 1."""
        K = self.rescaled_kernel().detach().to(torch.float64)
        # conv2d is a cross-correlation: the same singular values as the convolution with K
        return largest_norm(circular_spectrum(K, self.size))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, size={self.size}, kernel_size={self.weight.shape[-1]}"
