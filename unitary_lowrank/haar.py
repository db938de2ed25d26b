"""Haar-distributed random unitary and orthogonal matrices."""

from __future__ import annotations

from typing import Any

from ._linalg import is_complex
from ._validate import SUPPORTED_DTYPES

__all__ = ["random_unitary"]


def random_unitary(
    n: int,
    *,
    dtype: Any = "float64",
    batch_shape: tuple[int, ...] = (),
    seed: Any = None,
    like: Any = None,
) -> Any:
    """Draw Haar-distributed unitary (complex) or orthogonal (real) matrices.

    Parameters
    ----------
    n : int
        Matrix size N ≥ 1.
    dtype : str or dtype, default "float64"
        ``"float32"``/``"float64"`` give orthogonal, ``"complex64"``/``"complex128"``
        unitary matrices. A dtype object of the target library works too.
    batch_shape : tuple of int, default ()
        Leading axes: the result has shape ``batch_shape + (n, n)``.
    seed : int, sequence of int, None, or a generator of the target library
        Same seed, same matrices, on every process. ``None`` draws fresh entropy.
    like : array or array module, optional
        Picks the array library (and device, for an array): e.g. a torch
        tensor on a GPU, ``torch``, ``jax.numpy`` or ``array_api_strict``.
        NumPy by default.

    Returns
    -------
    array, shape batch_shape + (n, n)

    Notes
    -----
    QR of a Gaussian matrix ``Z = Q R`` gives the Haar measure once the columns
    of ``Q`` are multiplied by the phases of ``diag(R)`` (Mezzadri 2007).
    Unitary to machine precision: ``max|Uᴴ U − I|`` = O(√N ε).

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
    """
    from .backends import backend_for

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"random_unitary: n must be a positive int; got {n!r}")
    batch_shape = tuple(batch_shape)
    if not all(isinstance(b, int) and b >= 0 for b in batch_shape):
        raise ValueError(f"random_unitary: batch_shape must be a tuple of non-negative ints; got {batch_shape!r}")
    xp, device = _namespace_and_device(like)
    dtype = _resolve_dtype(xp, dtype)
    probe = xp.zeros((0,), dtype=dtype, device=device)
    backend = backend_for(probe)
    Z = backend.normal(xp, batch_shape + (n, n), dtype, seed=seed, device=device)
    Q, R = xp.linalg.qr(Z)
    d = xp.linalg.diagonal(R)
    if is_complex(xp, R):
        phase = d / xp.astype(xp.abs(d), dtype)
    else:
        phase = xp.sign(d)
    phase = xp.where(d == 0, xp.ones_like(phase), phase)
    return Q * phase[..., None, :]


def _namespace_and_device(like: Any) -> tuple[Any, Any]:
    import array_api_compat

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
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or getattr(dtype, "__name__", None)
    if name is None:
        name = str(dtype)
    name = str(name).removeprefix("torch.")
    if name not in SUPPORTED_DTYPES:
        raise TypeError(f"random_unitary: dtype must be float32, float64, complex64 or complex128; got {dtype!r}")
    return getattr(xp, name)
