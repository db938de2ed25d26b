"""Small Array API building blocks shared by the core: adjoints, identities, dtypes.

Only Array API calls on the namespace ``xp`` that ``array_api_compat`` found.
"""

from __future__ import annotations

from typing import Any


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


def eye(xp: Any, n: int, like: Any) -> Any:
    return xp.eye(n, dtype=like.dtype, device=device_of(like))


def device_of(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


def batch_shape(*arrays: Any) -> tuple[int, ...]:
    """Broadcast shape of the leading (batch) axes of matrices."""
    shape: tuple[int, ...] = ()
    for a in arrays:
        shape = _broadcast(shape, tuple(a.shape[:-2]))
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


def orthonormal_basis(xp: Any, X: Any) -> Any:
    """Orthonormal columns spanning ``X``: the ``Q`` of the backend's reduced Householder QR."""
    from .backends import backend_for

    return backend_for(X).qr(xp, X)[0]
