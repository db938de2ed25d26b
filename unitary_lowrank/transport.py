"""projUNN-T: move along the manifold by the tangent projection of ``A Bᴴ``, in O(k N²)."""

from __future__ import annotations

from typing import Any

from ._linalg import adjoint, complex_dtype, eye, is_complex, real_part
from ._rank_update import prepare, rank_update

__all__ = ["transport"]

_RETRACTIONS = ("exp", "cayley")


def transport(
    U: Any,
    A: Any,
    B: Any,
    *,
    retraction: str = "exp",
    check: bool = False,
    check_finite: bool = True,
    out: Any = None,
) -> Any:
    """``U · exp(skew(Uᴴ A Bᴴ))`` — the projUNN-T step.

    The update ``A Bᴴ`` is projected onto the tangent space at ``U``
    (``U · skew(Uᴴ A Bᴴ)``, ``skew(X) = (X − Xᴴ)/2``) and followed along the
    manifold by the exponential map, or by the Cayley transform.

    Parameters
    ----------
    U : array, shape (..., N, N)
        Unitary (complex) or orthogonal (real) matrices.
    A, B : arrays, shape (..., N, k)
        Factors of the rank-k update ``A Bᴴ``, same dtype as ``U``. Leading axes
        broadcast against ``U``'s.
    retraction : {"exp", "cayley"}, default "exp"
        ``"exp"``: ``U exp(S)``; ``"cayley"``: ``U (I − S/2)⁻¹ (I + S/2)``, with
        ``S = skew(Uᴴ A Bᴴ)``. Same structure and cost.
    check : bool, default False
        Probe, in O(N²), that ``U`` is unitary; raise
        :class:`~unitary_lowrank.NotUnitaryError` if it is far from it.
    check_finite : bool, default True
        Raise ``ValueError`` if an input holds NaN or Inf. Skipped on traced arrays.
    out : array, optional
        Write the result here; ``out=U`` updates in place with O(N k) extra
        memory. NumPy, torch and CuPy only.

    Returns
    -------
    array, shape (..., N, N)
        Unitary (orthogonal for real input; the result stays real).

    Notes
    -----
    With ``Q`` (N×r, r ≤ 2k) orthonormal columns spanning ``[Uᴴ A, B]`` and
    ``C = (Qᴴ Uᴴ A)(Qᴴ B)ᴴ``, ``skew(Uᴴ A Bᴴ) = Q S Qᴴ`` with ``S = skew(C)``, so

        U exp(skew(Uᴴ A Bᴴ)) = U + (U Q)(F − I) Qᴴ,   F = exp(S).

    ``F − I`` comes from the Hermitian eigendecomposition ``i S = V Λ Vᴴ`` as
    ``V diag(e^{−iλ} − 1) Vᴴ`` with ``e^{−iλ} − 1 = −2 sin²(λ/2) − i sin λ``,
    which keeps full relative accuracy for tiny steps and is exactly zero for
    ``A = 0`` or ``B = 0``. For Cayley, ``F − I = (I − S/2)⁻¹ S``.
    Cost O(k N²): two passes over ``U`` and one read-and-write.
    Accuracy: error O(ε (1 + ‖A Bᴴ‖)); the test suite holds it to 1e-12
    (float64) against ``U @ scipy.linalg.expm(skew(Uᴴ A Bᴴ))``.

    References
    ----------
    B. T. Kiani, R. Balestriero, Y. LeCun, S. Lloyd, "projUNN: efficient method
    for training deep networks with unitary matrices", NeurIPS 2022,
    arXiv:2203.05483.

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
    xp = prepare("transport", U, A, B, check=check, check_finite_=check_finite, out=out)

    def retraction_minus_identity(C: Any) -> Any:
        S = (C - adjoint(xp, C)) / 2
        if retraction == "exp":
            return expm1_skew(xp, S)
        identity = eye(xp, S.shape[-1], S)
        return xp.linalg.solve(identity - S / 2, S)

    return rank_update(xp, U, A, B, retraction_minus_identity, out)


def expm1_skew(xp: Any, S: Any) -> Any:
    """``exp(S) − I`` for skew-Hermitian (real: skew-symmetric) ``S`` of shape (..., r, r).

    Through the eigendecomposition of the Hermitian ``i S``; real ``S`` gives a
    real result (complex arithmetic stays on r×r arrays).
    """
    H = xp.astype(S, complex_dtype(xp, S.dtype)) * 1j
    lam, V = xp.linalg.eigh(H)
    half = xp.sin(lam / 2)
    phase_minus_one = xp.astype(-2 * half * half, V.dtype) - 1j * xp.astype(xp.sin(lam), V.dtype)
    E = xp.matmul(V * phase_minus_one[..., None, :], adjoint(xp, V))
    return E if is_complex(xp, S) else xp.astype(real_part(xp, E), S.dtype)
