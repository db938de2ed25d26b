"""Haar-distributed random unitary and orthogonal matrices."""

from __future__ import annotations

import numbers
from typing import Any

import array_api_compat

from ._arrays import is_complex
from ._validate import SUPPORTED_DTYPES
from .backends import backend_for

__all__ = ["random_unitary"]


def random_unitary(
    n: int,
    p: int | None = None,
    *,
    dtype: Any = "float64",
    batch_shape: int | tuple[int, ...] = (),
    seed: Any = None,
    like: Any = None,
) -> Any:
    """Draw Haar-distributed unitary (complex) or orthogonal (real) matrices.

    Parameters
    ----------
    n : int
        Matrix size n ≥ 1 (rows).
    p : int, optional
        Columns, 0 ≤ p ≤ n: an n×p matrix with orthonormal columns, uniform
        (Haar) on the Stiefel manifold — distributed as the first p columns
        of a Haar unitary. ``None`` (default): p = n.
    dtype : str or dtype, default "float64"
        ``"float32"``/``"float64"`` give orthogonal, ``"complex64"``/``"complex128"``
        unitary matrices. A dtype object of the target library works too.
    batch_shape : int or tuple of int, default ()
        Leading axes: the result has shape ``batch_shape + (n, p)``.
    seed : int, sequence of int, None, or a generator of the target library
        Same seed, same matrices, on every process. ``None`` draws fresh entropy.
    like : array or array module, optional
        Picks the array library (and device, for an array): e.g. a torch
        tensor on a GPU, ``torch``, ``jax.numpy`` or ``array_api_strict``.
        NumPy by default.

    Returns
    -------
    array, shape batch_shape + (n, p)
        Row-major (C-ordered) for every library.

    Notes
    -----
    QR of a Gaussian n×p matrix ``Z = Q R`` gives the Haar measure once the
    columns of ``Q`` are multiplied by the phases of ``diag(R)`` (Mezzadri
    2007). Unitary to machine precision: ``max|Uᴴ U − I|`` = O(√n ε).

    References
    ----------
    F. Mezzadri, "How to generate random matrices from the classical compact
    groups", Notices of the AMS 54 (2007) 592–604.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> U = ul.random_unitary(4, dtype="complex128", batch_shape=(3,), seed=0)
    >>> U.shape
    (3, 4, 4)
    >>> ul.random_unitary(5, 2, seed=0).shape
    (5, 2)
    """
    if not _is_int(n) or n < 1:
        raise ValueError(f"random_unitary: n must be a positive int; got {n!r}")
    n = int(n)
    if p is None:
        p = n
    if not _is_int(p) or not 0 <= p <= n:
        raise ValueError(f"random_unitary: p must be an int with 0 ≤ p ≤ n = {n} (or None for p = n); got {p!r}")
    p = int(p)
    batch_shape = _batch_shape(batch_shape)
    xp, device = _namespace_and_device(like)
    dtype = _resolve_dtype(xp, dtype)
    probe = xp.zeros((0,), dtype=dtype, device=device)
    backend = backend_for(probe)
    Z = backend.normal(xp, batch_shape + (n, p), dtype, seed=seed, device=device)
    Q, R = xp.linalg.qr(Z)
    d = xp.linalg.diagonal(R)
    if is_complex(xp, R):
        phase = d / xp.astype(xp.abs(d), dtype)
    else:
        phase = xp.sign(d)
    phase = xp.where(d == 0, xp.ones_like(phase), phase)
    return backend.row_major(Q * phase[..., None, :])


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _batch_shape(batch_shape: Any) -> tuple[int, ...]:
    if _is_int(batch_shape):
        batch_shape = (batch_shape,)
    try:
        shape = tuple(batch_shape)
    except TypeError:
        shape = None
    if shape is None or not all(_is_int(b) and b >= 0 for b in shape):
        raise ValueError(
            f"random_unitary: batch_shape must be a non-negative int or a tuple of them; got {batch_shape!r}"
        )
    return tuple(int(b) for b in shape)


def _namespace_and_device(like: Any) -> tuple[Any, Any]:
    if like is None:
        import array_api_compat.numpy as xp

        return xp, None
    if array_api_compat.is_array_api_obj(like):
        return array_api_compat.array_namespace(like), array_api_compat.device(like)
    if hasattr(like, "asarray"):
        example = like.asarray(0.0)
        return array_api_compat.array_namespace(example), array_api_compat.device(example)
    raise TypeError(f"random_unitary: like must be an array or an array module; got {type(like).__name__}")


def _resolve_dtype(xp: Any, dtype: Any) -> Any:
    for name in SUPPORTED_DTYPES:
        if dtype == getattr(xp, name):
            return getattr(xp, name)
    found = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or getattr(dtype, "__name__", None)
    name = str(dtype if found is None else found).removeprefix("torch.")
    if name not in SUPPORTED_DTYPES:
        raise TypeError(f"random_unitary: dtype must be float32, float64, complex64 or complex128; got {dtype!r}")
    return getattr(xp, name)
