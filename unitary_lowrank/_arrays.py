"""Small Array API building blocks: adjoints, dtypes, batch shapes, exact scaling by powers of two.

Only Array API calls on the namespace ``xp`` that ``array_api_compat`` found;
no factorizations (those are in :mod:`~unitary_lowrank._linalg`).
"""

from __future__ import annotations

from typing import Any

from .backends import backend_for

#: An array of any Array API library (NumPy, CuPy, torch, JAX, ...): what the core computes with
Array = Any


def is_complex(xp: Any, x: Any) -> bool:
    return xp.isdtype(x.dtype, "complex floating")


def adjoint(xp: Any, x: Any) -> Any:
    """``xᴴ`` over the last two axes; a plain transpose for real input."""
    t = xp.matrix_transpose(x)
    return xp.conj(t) if is_complex(xp, x) else t


def real_part(xp: Any, x: Any) -> Any:
    return xp.real(x) if is_complex(xp, x) else x


def complex_dtype(xp: Any, dtype: Any) -> Any:
    """The complex dtype of the same precision as ``dtype``."""
    if dtype in (xp.float32, xp.complex64):
        return xp.complex64
    return xp.complex128


def real_dtype(xp: Any, dtype: Any) -> Any:
    """The real dtype of the same precision as ``dtype``."""
    if dtype in (xp.float32, xp.complex64):
        return xp.float32
    return xp.float64


def eps(xp: Any, dtype: Any) -> float:
    return float(xp.finfo(real_dtype(xp, dtype)).eps)


def device_of(x: Any) -> Any:
    """The device of ``x``, as its backend reads it (a torch tensor's own ``.device``: nothing to trace)."""
    return backend_for(x).device(x)


def eye(xp: Any, n: int, like: Any) -> Any:
    return xp.eye(n, dtype=like.dtype, device=device_of(like))


def batch_shape(*arrays: Any) -> tuple[int, ...]:
    """Broadcast shape of the leading (batch) axes of matrices."""
    shape: tuple[int, ...] = ()
    for a in arrays:
        t = tuple(a.shape[:-2])
        if t != shape:
            shape = _broadcast(shape, t)
    return shape


def _broadcast(s: tuple[int, ...], t: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(s), len(t))
    s = (1,) * (n - len(s)) + s
    t = (1,) * (n - len(t)) + t
    out = []
    for a, b in zip(s, t, strict=True):
        if a != b and 1 not in (a, b):
            raise ValueError(f"batch shapes {s} and {t} do not broadcast")
        out.append(b if a == 1 else a)
    return tuple(out)


def scale_exponent(xp: Any, X: Any) -> Any:
    """``e`` with ``2^e ≤ max |X| < 2^(e+1)`` over the last two axes, shape (..., 1, 1), real; 0 for zero or empty X.

    Factors are multiplied by ``2^−e`` before they are multiplied together or
    squared, so that neither overflows nor underflows: a power of two scales
    exactly, with no rounding, and exponents add without overflow.
    """
    if X.shape[-1] == 0 or X.shape[-2] == 0:
        return xp.zeros(tuple(X.shape[:-2]) + (1, 1), dtype=real_dtype(xp, X.dtype), device=device_of(X))
    largest = xp.max(xp.abs(X), axis=(-2, -1), keepdims=True)
    positive = largest > 0
    return xp.where(positive, xp.floor(xp.log2(xp.where(positive, largest, xp.ones_like(largest)))), 0.0 * largest)


def power_of_two(xp: Any, e: Any) -> Any:
    """``2^e`` for integer-valued real ``e``, exact while representable."""
    return backend_for(e).power_of_two(xp, e)


def times_power_of_two(xp: Any, X: Any, e: Any) -> Any:
    """``X · 2^e``, exact: in two half-way factors, so that neither over- nor underflows for ``e`` of a finite scale."""
    half = xp.floor(e / 2)
    first, second = power_of_two(xp, half), power_of_two(xp, e - half)
    if first.dtype != X.dtype:  # complex X: complex factors (a real one would give Inf·0 = NaN parts elsewhere)
        first, second = xp.astype(first, X.dtype), xp.astype(second, X.dtype)
    return X * first * second


def finite_matrices(xp: Any, X: Any) -> Any:
    """Boolean mask over the batch, shape (..., 1, 1): every entry of the matrix is finite."""
    return xp.all(xp.isfinite(X), axis=(-2, -1), keepdims=True)
