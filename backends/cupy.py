"""CuPy backend: seeded draws on the GPU and an in-place rank-r update through cuBLAS.

Written against CuPy's documented API (``cupy.random.default_rng``,
``cupy.cublas.gemm``); this project's CI has no GPU, so it is exercised only
where CuPy and a CUDA device are present (``unitary-lowrank verify --backend
cupy``, ``unitary-lowrank bench --backends cupy``).
"""

from __future__ import annotations

from typing import Any

import cupy

from ._base import Backend, Seed


def _generator(seed: Seed):
    if isinstance(seed, cupy.random.Generator):
        return seed
    if seed is None or isinstance(seed, int):
        return cupy.random.default_rng(seed)
    import numpy as np

    # a sequence of ints: mix it into one 64-bit seed, the same on every process
    return cupy.random.default_rng(int(np.random.SeedSequence([int(s) for s in seed]).generate_state(1, np.uint64)[0]))


class CupyBackend(Backend):
    """CuPy arrays on the current CUDA device."""

    name = "cupy"
    supports_inplace = True

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
