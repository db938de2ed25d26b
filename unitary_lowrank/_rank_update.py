"""The structure shared by projUNN-D and projUNN-T.

With ``Â = Uᴴ A`` and ``Q`` (N×r, r ≤ 2k) orthonormal columns spanning ``[Â, B]``,
put ``C = (Qᴴ Â)(Qᴴ B)ᴴ`` (r×r). Then ``U + A Bᴴ = U (I + Q C Qᴴ)``, and any
function ``f`` with ``f(I + Q C Qᴴ) = I + Q (F − I) Qᴴ`` (polar factor,
exponential, Cayley transform) gives the new unitary

    U_new = U + (U Q)(F − I) Qᴴ.

Cost: ``Uᴴ A`` and ``U Q`` are one pass over ``U`` each, the update one read and
one write; everything else is O(N k²) or O(k³).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._linalg import adjoint, batch_shape, device_of
from ._validate import check_factors, check_finite, namespace


def prepare(func: str, U: Any, A: Any, B: Any, *, check: bool, check_finite_: bool, out: Any) -> Any:
    """Validate the operands of a step; returns the array namespace."""
    xp = namespace(func, U=U, A=A, B=B)
    check_factors(xp, func, U, A, B)
    if check_finite_:
        check_finite(xp, func, U=U, A=A, B=B)
    if check:
        from .unitarity import probe_unitarity

        probe_unitarity(xp, func, U)
    if out is not None:
        _check_out(xp, func, U, A, B, out)
    return xp


def _check_out(xp: Any, func: str, U: Any, A: Any, B: Any, out: Any) -> None:
    from .backends import backend_for

    expected = batch_shape(U, A, B) + tuple(U.shape[-2:])
    if namespace(func, out=out, U=U) is not xp or tuple(out.shape) != expected or out.dtype != U.dtype:
        raise ValueError(
            f"{func}: out must be an array of the same library as U, shape {expected} and dtype {U.dtype}; "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}"
        )
    if not backend_for(out).supports_inplace:
        raise TypeError(
            f"{func}: arrays of {type(out).__module__}.{type(out).__name__} cannot be updated in place; "
            "call without out= and use the returned array"
        )


def rank_update(xp: Any, U: Any, A: Any, B: Any, small_map: Callable[[Any], Any], out: Any) -> Any:
    """``U + (U Q)(F − I) Qᴴ`` with ``F − I = small_map(C)``; into ``out`` when given.

    Temporaries are dropped as soon as they are used, so that the in-place
    path holds at most ``U Q`` and ``(F − I) Qᴴ`` (2 N r elements) plus a row
    buffer of the backend while ``U`` is updated.
    """
    from .backends import backend_for

    backend = backend_for(U)
    Q, C = _reduce_to_subspace(xp, backend, U, A, B)
    F_minus_I = small_map(C)
    del C
    Z = xp.matmul(F_minus_I, adjoint(xp, Q))  # (F − I) Qᴴ, r×N; before U Q, so a conj(Q) copy is gone by then
    UQ = xp.matmul(U, Q)
    del Q
    if out is None:
        if not backend.supports_inplace:  # immutable arrays (JAX, array_api_strict)
            return U + xp.matmul(UQ, Z)
        # a fresh output, then the same accumulating update: one N×N array, not three
        out = xp.empty(tuple(UQ.shape[:-2]) + tuple(U.shape[-2:]), dtype=U.dtype, device=device_of(U))
    target = backend_for(out)
    target.copy_(out, U)
    return target.add_product_(out, UQ, Z)


def _reduce_to_subspace(xp: Any, backend: Any, U: Any, A: Any, B: Any) -> tuple[Any, Any]:
    """Return ``Q`` (..., N, r) and ``C`` (..., r, r) with ``Uᴴ A Bᴴ = Q C Qᴴ``.

    From the QR ``[Â, B] = Q R``: ``Qᴴ Â = R[:, :k]`` and ``Qᴴ B = R[:, k:]``, so
    ``C = R[:, :k] R[:, k:]ᴴ`` needs no further pass over N×k arrays.
    """
    batch = batch_shape(U, A, B)
    n, k = A.shape[-2], A.shape[-1]
    # Uᴴ A as (Aᴴ U)ᴴ: reads U once in its own memory order, no conj(U) copy.
    A_hat = xp.broadcast_to(adjoint(xp, xp.matmul(adjoint(xp, A), U)), batch + (n, k))
    stacked = xp.concat([A_hat, xp.broadcast_to(B, batch + (n, k))], axis=-1)
    del A_hat
    Q, R = backend.qr(xp, stacked)
    del stacked
    C = xp.matmul(R[..., :, :k], adjoint(xp, R[..., :, k:]))
    return Q, C


def is_zero(xp: Any, C: Any) -> Any:
    """Boolean mask over the batch: ``C`` is exactly zero (``A = 0`` or ``B = 0``)."""
    return xp.all(C == 0, axis=(-2, -1))
