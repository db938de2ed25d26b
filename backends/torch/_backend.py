"""What the core needs on torch tensors beyond the Array API: seeded draws and in-place GEMM updates."""

from __future__ import annotations

from typing import Any

import torch

from .._base import Backend, Seed, seed_entropy


def seed_to_int(seed: Seed) -> int:
    """Map an int or a sequence of ints to one 64-bit seed, the same on every process."""
    import numpy as np

    entropy = seed_entropy(seed)
    words: list[int] | int | None = list(entropy) if isinstance(entropy, tuple) else entropy
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def generator(seed: Seed, device: Any) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded from ``seed`` (``None``: the global RNG).

    ``seed``: ``None``, a ``torch.Generator`` (used as is), a non-negative int
    (Python or NumPy) or a sequence of them, or a ``numpy.random.Generator``
    (one 63-bit seed is drawn from it).
    """
    import numpy as np

    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
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
    array_type = torch.Tensor

    def expm(self, xp: Any, X: Any) -> Any:
        return torch.linalg.matrix_exp(X)

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        # complex dtypes: real and imaginary parts each of variance 1/2
        return torch.randn(shape, dtype=dtype, device=device, generator=generator(seed, device))

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        values = torch.rand(shape, dtype=dtype, device=device, generator=generator(seed, device))
        return values.clamp_min_(torch.finfo(dtype).tiny)

    def out_problem(self, out: torch.Tensor, U: torch.Tensor) -> str | None:
        if out.requires_grad and torch.is_grad_enabled():
            return (
                "requires grad, and autograd cannot record an in-place step; run the step under "
                "torch.no_grad() (as optimizers do) or pass out=W.data"
            )
        if torch.compiler.is_compiling():
            return None  # storage cannot be compared while tracing; checked when the same call runs eagerly
        if out.numel() and any(stride == 0 and size > 1 for stride, size in zip(out.stride(), out.shape, strict=True)):
            return "repeats memory (an expanded or stride-0 view); pass a tensor that owns its elements"
        if not _same_view(out, U) and _shares_storage(out, U):
            return (
                "overlaps U without being the same view of it (e.g. out=U.mT); pass out=U itself (in place) "
                "or a separate tensor"
            )
        return None

    def empty_like(self, xp: Any, U: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if tuple(U.shape) == tuple(shape):
            return torch.empty_like(U, memory_format=torch.preserve_format)
        return torch.empty(shape, dtype=U.dtype, device=U.device)

    def is_traced(self, x: Any) -> bool:
        # under torch.compile values are symbolic, as under jax.jit: a step reads none of them
        return torch.compiler.is_compiling()

    def can_keep(self, x: Any) -> bool:
        # nor an inference tensor, which autograd could not save for a later differentiated call
        return not torch.compiler.is_compiling() and not torch.is_inference_mode_enabled()

    def is_capturing(self, x: Any) -> bool:
        return x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()

    def refusal(self, x: Any) -> str | None:
        import sys

        distributed = sys.modules.get("torch.distributed.tensor")  # loaded wherever a DTensor exists
        if distributed is None or not isinstance(x, distributed.DTensor):
            return None
        return (
            "is a DTensor, spread over processes, and the primitives work on local arrays. Train sharded weights "
            "with ProjUNN (it steps FSDP2's DTensor parameters), call unitary_lowrank.sharded.step on the local "
            "shards with a process group, or pass .full_tensor() to work on the gathered matrix"
        )

    def reads_values(self, x: Any) -> bool:
        # a CPU tensor, unless torch.compile is tracing (no value can be read then)
        return x.device.type == "cpu" and not torch.compiler.is_compiling()

    def wide_dtype(self, xp: Any, dtype: Any, device: Any) -> Any | None:
        return None if device.type == "mps" else super().wide_dtype(xp, dtype, device)  # MPS has no float64

    def device(self, x: Any) -> Any:
        return x.device  # what array_api_compat.device answers, without its type tests (traced by torch.compile)

    def matrix_transpose(self, xp: Any, X: torch.Tensor) -> torch.Tensor:
        return X.mT

    def adjoint_view(self, xp: Any, X: torch.Tensor) -> torch.Tensor:
        return X.mH  # a lazily conjugated view: in-place writes reach X

    def row_major(self, X: torch.Tensor) -> torch.Tensor:
        return X.contiguous()

    def stream_product(self, xp: Any, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``X @ Y``; a column-major large operand enters as its row-major transpose: ``(Yᵀ Xᵀ)ᵀ``.

        The CPU BLAS streams a transposed N×N operand 1.3–2.7× slower (measured,
        N = 4096: ``U @ B`` 6.0 ms on a column-major U against 2.2 ms row-major).
        """
        big = X if X.numel() >= Y.numel() else Y
        if big.ndim >= 2 and not big.is_contiguous() and big.mT.is_contiguous():
            return torch.matmul(Y.mT, X.mT).mT
        return torch.matmul(X, Y)

    def host_transfer(self, arrays: Any) -> tuple[Any, Any] | None:
        like = arrays[0]
        if like.device.type == "cpu" or (torch.is_grad_enabled() and any(a.requires_grad for a in arrays)):
            return None  # already on the host; or autograd records the step through these tensors
        device = like.device
        return (lambda x: x.detach().cpu().numpy()), (lambda x: torch.from_numpy(x).to(device))

    def copy_(self, out: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        if out is not U:
            out.copy_(U)
        return out

    def add_product_(self, out: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        if out.ndim == 2 and X.ndim == 2 and Y.ndim == 2:
            return out.addmm_(X, Y)
        n, p, r = out.shape[-2], out.shape[-1], X.shape[-1]
        batch = tuple(out.shape[:-2])
        if out.is_contiguous():
            X = X.expand(*batch, n, r).reshape(-1, n, r)
            Y = Y.expand(*batch, r, p).reshape(-1, r, p)
            out.view(-1, n, p).baddbmm_(X, Y)
        else:
            out.add_(torch.matmul(X, Y))
        return out


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


BACKEND = TorchBackend()
