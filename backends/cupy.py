"""CuPy backend: seeded draws on the GPU and an in-place rank-r update through cuBLAS.

Written against CuPy's documented API (``cupy.random.default_rng``,
``cupy.cublas.gemm``); this project's CI has no GPU, so it is exercised only
where CuPy and a CUDA device are present (``unitary-lowrank verify --backend
cupy``, ``unitary-lowrank bench --backends cupy``).
"""

from __future__ import annotations

from typing import Any

import cupy

from ._base import Backend, Seed, seed_entropy


def _generator(seed: Seed):
    if isinstance(seed, cupy.random.Generator):
        return seed
    import numpy as np

    entropy = seed_entropy(seed)
    if entropy is None or isinstance(entropy, int):
        return cupy.random.default_rng(entropy)
    # a sequence of ints: mix it into one 64-bit seed, the same on every process
    return cupy.random.default_rng(int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0]))


class CupyBackend(Backend):
    """CuPy arrays on the current CUDA device."""

    name = "cupy"
    supports_inplace = True
    array_type = cupy.ndarray

    def expm(self, xp: Any, X: Any) -> Any:
        import cupyx.scipy.linalg

        return cupyx.scipy.linalg.expm(X)

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        rng = _generator(seed)
        dtype = cupy.dtype(dtype)
        if dtype.kind == "c":
            real = cupy.float32 if dtype == cupy.complex64 else cupy.float64
            values = rng.standard_normal(shape, dtype=real) + 1j * rng.standard_normal(shape, dtype=real)
            return (values * (0.5**0.5)).astype(dtype)
        return rng.standard_normal(shape, dtype=dtype)

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        values = _generator(seed).random(shape, dtype=dtype)
        return cupy.maximum(values, cupy.finfo(dtype).tiny)

    def empty_like(self, xp: Any, U: Any, shape: tuple[int, ...]) -> Any:
        return cupy.empty_like(U) if tuple(U.shape) == tuple(shape) else cupy.empty(shape, dtype=U.dtype)

    def row_major(self, X: Any) -> Any:
        return cupy.ascontiguousarray(X)

    def host_transfer(self, arrays: Any) -> tuple[Any, Any] | None:
        return cupy.asnumpy, cupy.asarray

    def out_problem(self, out: Any, U: Any) -> str | None:
        if out.size and any(stride == 0 and size > 1 for stride, size in zip(out.strides, out.shape, strict=True)):
            return "repeats memory (a broadcast or stride-0 view); pass an array that owns its elements"
        same = U.data.ptr == out.data.ptr and U.shape == out.shape and U.strides == out.strides
        if not same and cupy.shares_memory(out, U):
            return "overlaps U without being the same view of it; pass out=U itself or a separate array"
        return None

    def copy_(self, out: Any, U: Any) -> Any:
        if out is not U:
            out[...] = U
        return out

    def add_product_(self, out: Any, X: Any, Y: Any) -> Any:
        """``out += X @ Y`` with cuBLAS ``gemm`` (β = 1) per matrix: no N×N temporary."""
        import cupy.cublas
        import numpy as np

        batch = out.shape[:-2]
        X = cupy.broadcast_to(X, batch + X.shape[-2:])
        Y = cupy.broadcast_to(Y, batch + Y.shape[-2:])
        for index in np.ndindex(*batch):
            target = out[index]
            if target.flags.c_contiguous or target.flags.f_contiguous:
                cupy.cublas.gemm(
                    "N",
                    "N",
                    cupy.ascontiguousarray(X[index]),
                    cupy.ascontiguousarray(Y[index]),
                    out=target,
                    alpha=1.0,
                    beta=1.0,
                )
            else:
                target += X[index] @ Y[index]
        return out


BACKEND = CupyBackend()
