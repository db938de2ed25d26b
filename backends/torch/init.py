"""Unitary initializers in the style of ``torch.nn.init``: in place, return the tensor.

Each fills a tensor of shape (..., n, n), real (orthogonal) or complex (unitary),
and accepts an optional ``generator`` for reproducible draws.
"""

from __future__ import annotations

import math

import torch

__all__ = ["cayley_", "haar_", "henaff_"]


def _check(name: str, tensor: torch.Tensor, *, square: bool = True) -> None:
    if tensor.ndim < 2 or (square and tensor.shape[-1] != tensor.shape[-2]):
        shape = "(..., n, n)" if square else "(..., n, p)"
        raise ValueError(f"{name}: tensor must have shape {shape}; got {tuple(tensor.shape)}")
    if tensor.dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        raise TypeError(f"{name}: dtype must be float32, float64, complex64 or complex128; got {tensor.dtype}")


@torch.no_grad()
def haar_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with Haar-distributed orthogonal (real) or unitary (complex) matrices.

    QR of a Gaussian matrix with the phases of ``diag(R)`` moved into ``Q``
    (Mezzadri 2007), computed on the tensor's device. A rectangular tensor
    (..., n, p) gets orthonormal columns (p < n) or rows (p > n), uniform on
    the Stiefel manifold.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import haar_
    >>> W = haar_(torch.empty(4, 4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(W.T @ W, torch.eye(4, dtype=torch.float64)))
    True
    """
    _check("haar_", tensor, square=False)
    wide = tensor.shape[-1] > tensor.shape[-2]
    shape = (*tensor.shape[:-2], tensor.shape[-1], tensor.shape[-2]) if wide else tensor.shape
    Z = torch.randn(shape, dtype=tensor.dtype, device=tensor.device, generator=generator)
    Q, R = torch.linalg.qr(Z)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    phase = d.sgn()
    phase = torch.where(d == 0, torch.ones_like(phase), phase)
    Q = Q * phase.unsqueeze(-2)
    return tensor.copy_(Q.mH if wide else Q)


def _rotation_blocks(tensor: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Block-diagonal 2×2 rotations by ``angles`` (..., n // 2); a trailing 1 for odd n."""
    n = tensor.shape[-1]
    real = torch.empty(0, dtype=tensor.dtype).real.dtype
    W = torch.zeros(tensor.shape, dtype=real, device=tensor.device)
    c, s = torch.cos(angles), torch.sin(angles)
    even = torch.arange(0, n - 1, 2, device=tensor.device)
    W[..., even, even] = c
    W[..., even, even + 1] = -s
    W[..., even + 1, even] = s
    W[..., even + 1, even + 1] = c
    if n % 2:
        W[..., n - 1, n - 1] = 1
    return W


@torch.no_grad()
def henaff_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with block-diagonal 2×2 rotations, angles uniform in (−π, π).

    The initialization of Henaff, Szlam & LeCun (2016) for orthogonal RNNs on
    long-memory tasks (copy task). For odd n the last diagonal entry is 1.
    Complex tensors get the same (real) rotations.
    """
    _check("henaff_", tensor)
    n = tensor.shape[-1]
    real = tensor.real.dtype if tensor.is_complex() else tensor.dtype
    u = torch.rand((*tensor.shape[:-2], n // 2), dtype=real, device=tensor.device, generator=generator)
    return tensor.copy_(_rotation_blocks(tensor, (2 * u - 1) * math.pi))


@torch.no_grad()
def cayley_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with the Cayley transform ``(I + S)⁻¹ (I − S)`` of a block skew matrix.

    ``S`` has 2×2 blocks ``[[0, s], [−s, 0]]`` with ``s = √((1 − cos t)/(1 + cos t))``,
    t uniform in (0, π/2): the scoRNN initialization (Helfrich, Willmott & Ye 2018),
    which makes the eigenvalue phases of the result uniform in (−π/2, π/2).
    """
    _check("cayley_", tensor)
    n = tensor.shape[-1]
    real = tensor.real.dtype if tensor.is_complex() else tensor.dtype
    t = torch.rand((*tensor.shape[:-2], n // 2), dtype=real, device=tensor.device, generator=generator) * (math.pi / 2)
    s = torch.sqrt((1 - torch.cos(t)) / (1 + torch.cos(t)))
    S = torch.zeros(tensor.shape, dtype=real, device=tensor.device)
    even = torch.arange(0, n - 1, 2, device=tensor.device)
    S[..., even, even + 1] = s
    S[..., even + 1, even] = -s
    identity = torch.eye(n, dtype=real, device=tensor.device)
    return tensor.copy_(torch.linalg.solve(identity + S, identity - S))
