"""projUNN-T: move along the manifold by the tangent projection of ``A Bᴴ``, in O(k n p)."""

from __future__ import annotations

from typing import Any

from ._arrays import Array, complex_dtype, power_of_two
from ._context import Context
from ._linalg import safe_eigh, safe_svd
from ._rank_update import add_update, copy_of_U, is_trivial, prepare, span, update_exponent

__all__ = ["transport"]

_RETRACTIONS = ("exp", "cayley")


def transport(
    U: Array,
    A: Array,
    B: Array,
    *,
    retraction: str = "exp",
    check: bool = False,
    check_finite: bool = True,
    out: Array = None,
) -> Array:
    """``exp(S) U`` with ``S = skew(A (U B)ᴴ)`` — the projUNN-T step.

    For square ``U`` this is ``U · exp(skew(Uᴴ A Bᴴ))``: the update ``A Bᴴ`` is
    projected onto the tangent space at ``U`` (``skew(X) = (X − Xᴴ)/2``) and
    followed along the manifold by the exponential map, or by the Cayley
    transform. The left form also holds for ``U`` with orthonormal columns
    (n×p): ``S`` is then an n×n skew-Hermitian matrix of rank ≤ 2k, and
    ``½ (A Bᴴ − U B Aᴴ U)`` is the step's tangent at zero, the canonical-metric
    projection of ``A Bᴴ`` onto the Stiefel manifold.

    Parameters
    ----------
    U : array, shape (..., n, p), p ≤ n
        Unitary (complex) or orthogonal (real) matrices, or matrices with
        orthonormal columns. For a wide matrix with orthonormal rows, step its
        adjoint: ``transport(Uᴴ, B, A)`` is the adjoint of the result.
    A : array, shape (..., n, k)
    B : array, shape (..., p, k)
        Factors of the rank-k update ``A Bᴴ``, same dtype as ``U``. Leading axes
        broadcast against ``U``'s. k = 0 (or any empty axis) returns ``U``.
    retraction : {"exp", "cayley"}, default "exp"
        ``"exp"``: ``exp(S) U``; ``"cayley"``: ``(I − S/2)⁻¹ (I + S/2) U``.
        Same structure and cost.
    check : bool, default False
        Probe, in O(n p), that ``U`` has orthonormal columns; raise
        :class:`~unitary_lowrank.NotUnitaryError` if it is far from it.
    check_finite : bool, default True
        Raise ``ValueError`` if an input holds NaN or Inf. ``False`` skips the
        check (non-finite input then gives NaN, never a hang). Skipped on
        traced arrays.
    out : array, optional
        Write the result here; ``out=U`` updates in place with O(n k) extra
        memory. NumPy, torch and CuPy only.

    Returns
    -------
    array, shape (..., n, p)
        Orthonormal columns (unitary for square ``U``); real input gives a
        real result.

    Notes
    -----
    With ``Q`` (n×r, r ≤ 2k) from a Householder QR ``[A, U B] = Q [R_A, R_B]``
    and ``C = R_A R_Bᴴ``, ``S = Q S_r Qᴴ`` with ``S_r = skew(C)`` (r×r), so

        exp(S) U = U + Q (F − I)(Qᴴ U),   F = exp(S_r).

    ``F − I`` comes from the Hermitian eigendecomposition ``i S_r = V Λ Vᴴ`` as
    ``V diag(φ(λ)) Vᴴ``, with ``φ(λ) = e^{−iλ} − 1 = −2 sin²(λ/2) − i sin λ``
    (exp) or ``φ(λ) = −iλ / (1 + iλ/2)`` (Cayley), evaluated so that tiny
    steps keep full relative accuracy, ``A = 0`` or ``B = 0`` gives exactly
    ``U``, and no λ overflows. For real input the result is real, and when
    ``‖S_r‖ > 1`` ``F`` is replaced by its r×r polar factor: the eigenvalues
    ±λ of a real skew matrix carry independent rounding errors of order
    ε ‖S_r‖, which would otherwise break orthogonality at large norms.
    Cost O(k n p): two passes over ``U`` and one read-and-write.
    Accuracy: error O(ε (1 + ‖A Bᴴ‖)); the test suite holds it to 1e-12
    (float64) against ``scipy.linalg.expm(S) @ U``.

    References
    ----------
    B. T. Kiani, R. Balestriero, Y. LeCun, S. Lloyd, "projUNN: efficient method
    for training deep networks with unitary matrices", NeurIPS 2022,
    arXiv:2203.05483.
    Z. Wen, W. Yin, "A feasible method for optimization with orthogonality
    constraints", Math. Program. 142 (2013) 397–434.

    Examples
    --------
    >>> import numpy as np, scipy.linalg, unitary_lowrank as ul
    >>> U = ul.random_unitary(5, dtype="complex128", seed=0)
    >>> rng = np.random.default_rng(2)
    >>> A = rng.standard_normal((5, 2)) + 1j * rng.standard_normal((5, 2))
    >>> B = rng.standard_normal((5, 2)) + 1j * rng.standard_normal((5, 2))
    >>> X = U.conj().T @ A @ B.conj().T
    >>> reference = U @ scipy.linalg.expm((X - X.conj().T) / 2)
    >>> bool(np.allclose(ul.transport(U, A, B), reference, atol=1e-13))
    True
    """
    if retraction not in _RETRACTIONS:
        raise ValueError(f"transport: retraction must be one of {_RETRACTIONS}; got {retraction!r}")
    ctx = prepare("transport", U, A, B, check=check, check_finite_=check_finite, out=out)
    return transport_step(ctx, U, A, B, retraction, out)


def transport_step(ctx: Context, U: Array, A: Array, B: Array, retraction: str, out: Array) -> Array:
    """:func:`transport` on validated operands, from their call's context."""
    if is_trivial(ctx, U, A):
        return copy_of_U(ctx, U, out)
    xp, split = ctx.xp, ctx.split
    UB = split.sum(ctx.stream(U, B), "p")
    Q, R_A, R_UB, e_A, e_UB = span(ctx, A, UB, "n")  # A = 2^e_A Q R_A, U B = 2^e_UB Q R_UB
    del UB
    # a real rank-2 core is a plane rotation in closed form: elementwise, no round trip to the host
    closed_form = R_A.shape[-2] == 2 and not ctx.complex
    (F_minus_I,) = ctx.small(_core, R_A, R_UB, e_A, e_UB, here=closed_form, retraction=retraction)
    Y = xp.matmul(F_minus_I, split.sum(ctx.stream(ctx.adjoint(Q), U), "n"))  # (F − I)(Qᴴ U): the second pass
    return add_update(ctx, U, Q, Y, out)


def _core(ctx: Context, R_A: Array, R_UB: Array, e_A: Array, e_UB: Array, *, retraction: str) -> tuple[Any]:
    """``F − I`` (r×r) from the coordinates ``R_A``, ``R_UB`` and their exponents (see :func:`transport`)."""
    xp = ctx.xp
    C = xp.matmul(R_A, ctx.adjoint(R_UB))
    t = power_of_two(xp, update_exponent(xp, e_A + e_UB, R_A.dtype))
    return (skew_function_minus_identity(ctx, (C - ctx.adjoint(C)) / 2, t, retraction),)


def skew_function_minus_identity(ctx: Context, S: Array, t: Array, retraction: str = "exp") -> Array:
    """``f(t S) − I`` for skew-Hermitian (real: skew-symmetric) ``S`` (..., r, r), ``t`` ≥ 0 (..., 1, 1).

    ``f`` is ``exp`` or the Cayley transform ``(I − X/2)⁻¹ (I + X/2)``. Through
    the eigendecomposition of the Hermitian ``i S``; real ``S`` gives a real
    result (complex arithmetic stays on r×r arrays). The scale ``t`` multiplies
    the eigenvalues, never the matrix, so that no entry overflows; it is capped
    (:func:`~unitary_lowrank._rank_update.update_exponent`) where angles carry no
    information any more.
    """
    xp = ctx.xp
    if S.shape[-1] == 2 and not ctx.complex:
        return _rotation_minus_identity(xp, S, t, retraction)
    H = xp.astype(S, complex_dtype(xp, S.dtype)) * 1j
    lam, V = safe_eigh(ctx, H)
    lam = lam * xp.astype(t[..., 0], lam.dtype)  # t is capped: finite angles, whatever the norm
    if retraction == "exp":
        half = xp.sin(lam / 2)
        re, im = -2 * half * half, -xp.sin(lam)
    else:
        re, im = _cayley_phase_minus_one(xp, lam / 2)
    phi = xp.astype(re, V.dtype) + 1j * xp.astype(im, V.dtype)
    E = xp.matmul(V * phi[..., None, :], xp.conj(xp.matrix_transpose(V)))
    if ctx.complex:
        return E
    E = xp.astype(xp.real(E), S.dtype)
    # ±λ pairs of a real skew matrix are rounded independently: at large norms
    # I + E drifts off the orthogonal group by ~ε‖tS‖. Its polar factor does not.
    large = xp.max(xp.abs(lam), axis=-1, keepdims=True)[..., None] > 1
    if ctx.readable and not bool(xp.any(large)):
        return E  # the common case, decided without a device synchronization: no SVD needed
    identity = xp.eye(S.shape[-1], dtype=S.dtype, device=ctx.device)
    W, _, Vh = safe_svd(ctx, identity + E)
    return xp.where(large, xp.matmul(W, Vh) - identity, E)


def _rotation_minus_identity(xp: Any, S: Array, t: Array, retraction: str) -> Array:
    """``f(t S) − I`` for a real 2×2 skew ``S = [[0, −a], [a, 0]]``: a rotation by θ, in closed form.

    ``exp``: θ = t a; Cayley: tan(θ/2) = t a / 2. ``cos θ − 1`` is computed as
    ``−2 sin²(θ/2)`` (full relative accuracy for small steps). Cosine and sine
    come from one angle, so ``I + E`` is orthogonal to rounding at any θ — the
    polar correction of the general path is not needed. k = 1 on real weights
    (rank-1 sketches of orthogonal RNNs) always lands here.
    """
    theta = S[..., 1:2, 0:1] * xp.astype(t, S.dtype)
    if retraction == "exp":
        half = xp.sin(theta / 2)
        cos_minus_one, sin = -2 * half * half, xp.sin(theta)
    else:
        cos_minus_one, minus_sin = _cayley_phase_minus_one(xp, theta / 2)
        sin = -minus_sin
    top = xp.concat([cos_minus_one, -sin], axis=-1)
    bottom = xp.concat([sin, cos_minus_one], axis=-1)
    return xp.concat([top, bottom], axis=-2)


def _cayley_phase_minus_one(xp: Any, w: Array) -> tuple[Array, Array]:
    """Real and imaginary parts of ``(1 − i w)/(1 + i w) − 1 = −2 w² / (1 + w²) − 2 i w / (1 + w²)``.

    Written in ``1/w`` for ``|w| > 1`` so that ``w²`` never overflows.
    """
    small = xp.abs(w) <= 1
    w_small = xp.where(small, w, xp.zeros_like(w))
    w_large = xp.where(small, xp.ones_like(w), w)
    inv = 1 / w_large
    denominator = 1 + w_small * w_small
    re = xp.where(small, -2 * w_small * w_small / denominator, -2 / (1 + inv * inv))
    im = xp.where(small, -2 * w_small / denominator, -2 / (w_large + inv))
    return re, im
