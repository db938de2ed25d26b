"""NumPy/SciPy backend: seeded draws and a BLAS rank-r update that accumulates in place."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Backend, Seed, _numpy_generator

__all__ = ["BACKEND", "NumpyBackend"]

# Below this size a batched matmul into a temporary beats one BLAS call per
# matrix (Python overhead per call ~ a few µs; a 64×64 update is ~1 µs of work).
_PER_MATRIX_BLAS_MIN_N = 128


class NumpyBackend(Backend):
    """NumPy arrays on the CPU.

    Random draws use ``numpy.random.default_rng`` (PCG64), which gives the same
    stream for the same seed on every platform and process.
    """

    name = "numpy"
    supports_inplace = True

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        rng = _numpy_generator(seed)
        dtype = np.dtype(dtype)
        if dtype.kind == "c":
            real = np.finfo(dtype).dtype
            values = np.empty(shape, dtype=dtype)
            values.real = rng.standard_normal(shape, dtype=real)
            values.imag = rng.standard_normal(shape, dtype=real)
            values *= np.sqrt(0.5).astype(real)
            return values
        return rng.standard_normal(shape, dtype=dtype)

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        rng = _numpy_generator(seed)
        values = rng.random(shape, dtype=np.dtype(dtype))
        values[values == 0] = np.finfo(dtype).tiny
        return values

    def copy_(self, out: np.ndarray, U: np.ndarray) -> np.ndarray:
        if out is not U:
            np.copyto(out, U)
        return out

    def add_product_(self, out: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``out += X @ Y`` with BLAS ``?gemm`` (β = 1): no N×N temporary.

        ``out`` is (..., N, N); ``X`` is (..., N, r) and ``Y`` is (..., r, N),
        broadcastable to ``out``'s batch shape. A C-ordered ``out`` is handed
        to BLAS as the Fortran-ordered ``outᵀ`` with ``outᵀ += Yᵀ Xᵀ``, so
        ``U`` is streamed in its own memory order, never copied.
        """
        n = out.shape[-1]
        if n < _PER_MATRIX_BLAS_MIN_N or not (out.flags.c_contiguous or out.flags.f_contiguous):
            out += np.matmul(X, Y)
            return out
        from scipy.linalg.blas import get_blas_funcs

        batch = out.shape[:-2]
        X = np.broadcast_to(X, batch + X.shape[-2:])
        Y = np.broadcast_to(Y, batch + Y.shape[-2:])
        (gemm,) = get_blas_funcs(("gemm",), (out,))
        for index in np.ndindex(*batch):
            target = out[index]
            if target.flags.f_contiguous:
                result = gemm(1.0, X[index], Y[index], beta=1.0, c=target, overwrite_c=True)
                view = target
            else:
                view = target.T
                result = gemm(1.0, Y[index].T, X[index].T, beta=1.0, c=view, overwrite_c=True)
            if not np.shares_memory(result, view):  # BLAS copied: write back
                view[...] = result
        return out


BACKEND = NumpyBackend()
#: The host-drawing backend for namespaces without one of their own.
BACKEND.portable = Backend()
