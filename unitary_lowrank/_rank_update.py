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

from typing import Any

from ._linalg import adjoint, batch_shape, orthonormal_basis
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
    expected = batch_shape(U, A, B) + tuple(U.shape[-2:])
    if namespace(func, out=out, U=U) is not xp or tuple(out.shape) != expected or out.dtype != U.dtype:
        raise ValueError(
            f"{func}: out must be an array of the same library as U, shape {expected} and dtype {U.dtype}; "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}"
        )


def reduce_to_subspace(xp: Any, U: Any, A: Any, B: Any) -> tuple[Any, Any]:
    """Return ``Q`` (..., N, r) and ``C`` (..., r, r) with ``Uᴴ A Bᴴ = Q C Qᴴ``."""
    # Uᴴ A as (Aᴴ U)ᴴ: reads U once in its own memory order, no conj(U) copy.
    A_hat = adjoint(xp, xp.matmul(adjoint(xp, A), U))
    batch = batch_shape(U, A, B)
    n, k = A.shape[-2], A.shape[-1]
    A_hat = xp.broadcast_to(A_hat, batch + (n, k))
    B = xp.broadcast_to(B, batch + (n, k))
    Q = orthonormal_basis(xp, xp.concat([A_hat, B], axis=-1))
    Qh = adjoint(xp, Q)
    C = xp.matmul(xp.matmul(Qh, A_hat), adjoint(xp, xp.matmul(Qh, B)))
    return Q, C


def is_zero(xp: Any, C: Any) -> Any:
    """Boolean mask over the batch: ``C`` is exactly zero (``A = 0`` or ``B = 0``)."""
    return xp.all(C == 0, axis=(-2, -1))


def apply_update(xp: Any, U: Any, Q: Any, F_minus_I: Any, out: Any) -> Any:
    """``U + (U Q)(F − I) Qᴴ``, into ``out`` when given (which may be ``U`` itself)."""
    X = xp.matmul(xp.matmul(U, Q), F_minus_I)
    Qh = adjoint(xp, Q)
    if out is None:
        return U + xp.matmul(X, Qh)
    from .backends import backend_for

    backend = backend_for(out)
    if not backend.supports_inplace:
        backend.add_product_(out, X, Qh)  # raises with the reason
    backend.copy_(out, U)
    return backend.add_product_(out, X, Qh)
