"""The structure shared by projUNN-D and projUNN-T: a rank-r correction ``U + X Y``.

Both steps reduce the n×n (or n×p) problem to an r×r one (r ≤ 2k) on a small
orthonormal basis ``Q`` and come back with one rank-r update:

    project   (Q spans [Uᴴ A, B], p×r):   U_new = U + X Qᴴ,           X = (U Q)(F − I) [+ P F₂]
    transport (Q spans [A, U B], n×r):    U_new = U + Q (F − I)(Qᴴ U)

with ``F`` the polar factor, exponential or Cayley transform of an r×r matrix
(see :mod:`~unitary_lowrank.project` and :mod:`~unitary_lowrank.transport`).
For square ``U`` the two bases are related by ``U``, and ``U exp(skew(Uᴴ A Bᴴ))
= exp(skew(A (U B)ᴴ)) U``, so one definition serves square and rectangular
weights.

Cost: two passes over ``U`` to reduce, one read and one write to update;
everything else is O(n k²) or O(k³).

The factors are scaled before the QR (each by a power of two, to entries of
order 1: exact), so that subnormal or huge updates neither underflow to NaN
in the QR nor overflow in ``C = R_A R_Bᴴ``: :func:`span` returns the
exponents, and the r×r work runs on ``C`` with the scale ``t = 2^(e_A + e_B)``
kept apart (:func:`update_exponent`).
"""

from __future__ import annotations

import math
from typing import Any

from ._arrays import Array, eps, times_power_of_two
from ._context import Context, context
from ._linalg import qr_along
from ._split import Axis
from ._validate import check_factors, check_finite, namespace
from .unitarity import probe_unitarity


def prepare(func: str, U: Array, A: Array, B: Array, *, check: bool, check_finite_: bool, out: Array) -> Context:
    """Validate the operands of a step (once, at the public boundary); returns the call's context."""
    xp = namespace(func, U=U, A=A, B=B)
    batch = check_factors(xp, func, U, A, B)
    if check_finite_:
        check_finite(xp, func, U=U, A=A, B=B)
    if check:
        probe_unitarity(xp, func, U)
    ctx = context(xp, U, (U, A, B), batch)
    if out is not None:
        _check_out(ctx, func, U, out)
    return ctx


def _check_out(ctx: Context, func: str, U: Array, out: Array) -> None:
    expected = ctx.batch + tuple(U.shape[-2:])
    if namespace(func, out=out, U=U) is not ctx.xp or tuple(out.shape) != expected or out.dtype != U.dtype:
        raise ValueError(
            f"{func}: out must be an array of the same library as U, shape {expected} and dtype {U.dtype}; "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}"
        )
    backend = ctx.backend
    if not backend.supports_inplace:
        raise TypeError(
            f"{func}: arrays of {type(out).__module__}.{type(out).__name__} cannot be updated in place; "
            "call without out= and use the returned array"
        )
    # A and B are read only before the first write; U is read again by the copy into out.
    problem = backend.out_problem(out, U)
    if problem is not None:
        raise ValueError(f"{func}: out {problem}")


def is_trivial(ctx: Context, U: Array, A: Array) -> bool:
    """An empty batch, an empty (whole) matrix or k = 0: the result is ``U`` itself.

    Decided on whole shapes, so that the processes sharing a split ``U`` decide alike (an empty block is no
    reason to leave the others' collectives waiting).
    """
    return 0 in ctx.batch or 0 in ctx.split.shape(U) or A.shape[-1] == 0


def copy_of_U(ctx: Context, U: Array, out: Array) -> Array:
    """``U`` (broadcast to the batch shape of the step) as a new array, or written into ``out``."""
    xp = ctx.xp
    shape = ctx.batch + tuple(U.shape[-2:])
    if out is not None:
        return ctx.backend.copy_(out, xp.broadcast_to(U, shape))
    return U + xp.zeros(shape, dtype=U.dtype, device=ctx.device)


def span(ctx: Context, left: Array, right: Array, rows: Axis) -> tuple[Array, Array, Array, Array, Array]:
    """Orthonormal basis of ``[left, right]`` (..., m, k each; rows following ``U``'s axis ``rows``) and coordinates.

    Returns ``Q`` (..., m, r), ``R_left`` and ``R_right`` (..., r, k) and the
    exponents ``e_left``, ``e_right`` (..., 1, 1) with ``left = 2^e_left Q
    R_left`` and ``right = 2^e_right Q R_right``. Householder QR keeps ``Q``
    orthonormal even when ``[left, right]`` is rank deficient. Both broadcast
    to the step's batch shape. Split rows: this process's rows of ``Q``, from a
    TSQR, and the exponents of the whole matrices.
    """
    xp, split = ctx.xp, ctx.split
    shape = ctx.batch + tuple(left.shape[-2:])
    e_left, e_right = split.exponent(ctx, left, rows), split.exponent(ctx, right, rows)
    parts = [times_power_of_two(xp, x, -e) for x, e in ((left, e_left), (right, e_right))]
    stacked = xp.concat([x if tuple(x.shape) == shape else xp.broadcast_to(x, shape) for x in parts], axis=-1)
    del parts
    Q, R = qr_along(ctx, stacked, rows)
    k = shape[-1]
    return Q, R[..., :, :k], R[..., :, k:], e_left, e_right


def update_exponent(xp: Any, e: Array, dtype: Any) -> Array:
    """The exponent of the update's scale ``t = 2^e``, capped at ``⌈log2(1000/ε)⌉``.

    Beyond the cap the r×r problem is already decided to rounding: the
    identity (or an angle's rounding error, ε t ≥ 1000 radians) is below the
    precision of ``t C``. The cap keeps ``t``, and angles ``t λ``, finite; a
    very negative exponent lets ``t`` underflow to 0, which is as exact.
    """
    cap = math.ceil(math.log2(1000 / eps(xp, dtype)))
    return xp.minimum(e, xp.full_like(e, float(cap)))


def scaled_identity_plus(ctx: Context, C: Array, t: Array) -> Array:
    """``(I + t C) / max(t, 1)``: a positive multiple of ``I + t C`` that cannot overflow.

    Polar factors are unchanged by a positive scale; ``t`` may be 0 (a vanishing
    update) or ``inf`` (an update whose product overflows: then ``C`` alone).
    """
    xp = ctx.xp
    one = xp.ones_like(t)
    identity = xp.eye(C.shape[-1], dtype=C.dtype, device=ctx.device)
    return identity * xp.astype(one / xp.maximum(t, one), C.dtype) + C * xp.astype(xp.minimum(t, one), C.dtype)


def add_update(ctx: Context, U: Array, X: Array, Y: Array, out: Array) -> Array:
    """``U + X Y`` (X: (..., n, r), Y: (..., r, p)); into ``out`` when given.

    On libraries with mutable arrays the product is accumulated into a fresh
    (or the given) output by the backend, without an n×p temporary.
    """
    backend = ctx.backend
    if out is None:
        if not backend.supports_inplace:  # immutable arrays (JAX, array_api_strict)
            return U + ctx.xp.matmul(X, Y)
        out = backend.empty_like(ctx.xp, U, ctx.batch + tuple(U.shape[-2:]))  # in U's layout: the copy streams
    backend.copy_(out, U)
    return backend.add_product_(out, X, Y)
