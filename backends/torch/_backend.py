"""What the core needs on torch tensors beyond the Array API: seeded draws and in-place GEMM updates."""

from __future__ import annotations

from typing import Any

import torch

from .._base import Backend, Seed


def seed_to_int(seed: Seed) -> int:
    """Map an int or a sequence of ints to one 64-bit seed, the same on every process."""
    import numpy as np

    entropy = [int(seed)] if isinstance(seed, int) else [int(s) for s in seed]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def generator(seed: Seed, device: Any) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded from ``seed`` (``None``: the global RNG)."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    g.manual_seed(seed_to_int(seed))
    return g


class TorchBackend(Backend):
    """PyTorch tensors on any device.

    Draws use a ``torch.Generator`` on the tensor's own device, so nothing moves
    to or from the host; an int or tuple seed gives the same stream on every
    process with the same device type. The rank-r update accumulates with
    ``addmm_``/``baddbmm_`` (β = 1): no N×N temporary.
    """

    name = "torch"
    supports_inplace = True

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        # complex dtypes: real and imaginary parts each of variance 1/2
        return torch.randn(shape, dtype=dtype, device=device, generator=generator(seed, device))

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        values = torch.rand(shape, dtype=dtype, device=device, generator=generator(seed, device))
        return values.clamp_min_(torch.finfo(dtype).tiny)

    def copy_(self, out: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        if out is not U:
            out.copy_(U)
        return out

    def add_product_(self, out: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        if out.ndim == 2 and X.ndim == 2 and Y.ndim == 2:
            return out.addmm_(X, Y)
        n, r = out.shape[-1], X.shape[-1]
        batch = tuple(out.shape[:-2])
        if out.is_contiguous():
            X = X.expand(*batch, n, r).reshape(-1, n, r)
            Y = Y.expand(*batch, r, n).reshape(-1, r, n)
            out.view(-1, n, n).baddbmm_(X, Y)
        else:
            out.add_(torch.matmul(X, Y))
        return out


BACKEND = TorchBackend()
