"""Measuring and restoring unitarity: ``unitarity_error``, ``reorthonormalize`` and an O(N²) probe."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ._arrays import adjoint, device_of, eps, eye, real_dtype, scale_exponent, times_power_of_two
from ._validate import check_dtype, check_finite, check_matrix, is_concrete, namespace
from .backends import backend_for
from .errors import NotUnitaryError, SingularUpdateWarning
from .polar import polar

__all__ = ["reorthonormalize", "unitarity_error"]

_METHODS = ("newton-schulz", "polar")
_MAX_NEWTON_SCHULZ_STEPS = 50
#: Newton–Schulz runs only where ‖Uᴴ U − I‖_F is below this: all singular values in (0.94, 1.05).
_NEWTON_SCHULZ_REGION = 0.1


def unitarity_error(U: Any) -> Any:
    """``max |Uᴴ U − I|`` over the last two axes (``max |U Uᴴ − I|`` for a wide ``U``).

    Parameters
    ----------
    U : array, shape (..., n, p)
        Square: unitary (orthogonal) candidates. Tall (p < n): orthonormal
        columns are measured; wide (p > n): orthonormal rows.

    Returns
    -------
    array, shape (...)
        Real, one value per matrix (0-d for a single matrix; ``float(...)``
        gives a Python number). ``inf`` when ``Uᴴ U`` overflows; 0 for empty
        matrices.

    Raises
    ------
    ValueError
        If ``U`` holds NaN or Inf (skipped on traced arrays).

    Notes
    -----
    Costs one O(n p²) product: a diagnostic, not something to run every step
    (see ``check=True`` of :func:`project` for an O(n p) probe). ``U`` is
    scaled by a power of two ``2^−e`` to entries of order 1 before the product,
    and the Gram matrix by ``2^(2e)`` after, so that huge entries give ``inf``,
    never NaN.

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> float(ul.unitarity_error(ul.random_unitary(8, dtype="float64", seed=0))) < 1e-14
    True
    """
    func = "unitarity_error"
    xp = namespace(func, U=U)
    check_matrix(func, "U", U)
    check_dtype(xp, func, "U", U)
    check_finite(xp, func, U=U)
    if U.shape[-1] > U.shape[-2]:
        U = adjoint(xp, U)
    if U.shape[-1] == 0 or U.shape[-2] == 0:
        return xp.zeros(tuple(U.shape[:-2]), dtype=real_dtype(xp, U.dtype), device=device_of(U))
    e = scale_exponent(xp, U)
    V = times_power_of_two(xp, U, -e)
    gram = xp.matmul(adjoint(xp, V), V)
    # Uᴴ U = 2^(2e) Vᴴ V; past the largest exponent it overflows, and the error is inf
    overflow = 2 * e >= math.log2(float(xp.finfo(real_dtype(xp, U.dtype)).max))
    residual = times_power_of_two(xp, gram, xp.where(overflow, 0.0 * e, 2 * e)) - eye(xp, U.shape[-1], U)
    error = xp.max(xp.abs(residual), axis=(-2, -1))
    return xp.where(overflow[..., 0, 0], xp.full_like(error, float("inf")), error)


def reorthonormalize(U: Any, method: str = "newton-schulz", *, steps: int | None = None) -> Any:
    """Pull a drifted ``U`` back onto the unitary (orthogonal, Stiefel) manifold: its polar factor.

    Parameters
    ----------
    U : array, shape (..., n, p)
        Nearly unitary matrices (e.g. after many rounded update steps), or,
        for p ≠ n, matrices with nearly orthonormal columns (p < n) or rows
        (p > n).
    method : {"newton-schulz", "polar"}, default "newton-schulz"
        ``"newton-schulz"``: iterate ``U ← U (3I − Uᴴ U)/2`` (O(n p²) matrix
        products, GPU friendly), which converges to the polar factor of ``U``
        while its singular values lie in (0, √3). ``"polar"``: the polar factor
        by SVD, exact for any ``U`` of full rank.
    steps : int, optional
        Newton–Schulz steps to take, as given (the optimizers' one step every
        m steps). ``None`` (default): the polar factor to rounding, whatever
        ``U``: Newton–Schulz only inside the region where it surely converges
        (``‖Uᴴ U − I‖_F < 0.1``), and only while each step at least halves
        the error; else, or when ``Uᴴ U`` overflows, the SVD polar factor.
        Traced arrays (inside ``jax.jit``) cannot be inspected, so there
        ``None`` means 3 steps (enough to bring a drift of 1e-3 down to
        double-precision rounding).

    Returns
    -------
    array, shape (..., n, p)
        The same dtype as ``U``.

    Notes
    -----
    Write ``E = Uᴴ U − I``; one step is ``U ← U − U E / 2`` and maps a singular
    value ``1 + δ`` to ``1 − 3δ²/2 + O(δ³)``; a singular value above √3
    would change sign, one near 0 barely moves: both are left to the SVD.

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> U = ul.random_unitary(16, dtype="float64", seed=0)
    >>> drifted = U + 1e-4 * np.random.default_rng(0).standard_normal((16, 16))
    >>> bool(ul.unitarity_error(ul.reorthonormalize(drifted)) < 1e-14)
    True
    """
    func = "reorthonormalize"
    xp = namespace(func, U=U)
    check_matrix(func, "U", U)
    check_dtype(xp, func, "U", U)
    check_finite(xp, func, U=U)
    if method not in _METHODS:
        raise ValueError(f"{func}: method must be one of {_METHODS}; got {method!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
        raise ValueError(f"{func}: steps must be a non-negative int or None; got {steps!r}")
    if 0 in tuple(U.shape):
        return U + xp.zeros(tuple(U.shape), dtype=U.dtype, device=device_of(U))
    if U.shape[-1] > U.shape[-2]:  # orthonormal rows: the same iteration on Uᴴ
        return adjoint(xp, reorthonormalize(adjoint(xp, U), method, steps=steps))
    if method == "polar":
        return _polar(U)
    identity = eye(xp, U.shape[-1], U)
    if steps is not None or not is_concrete(U):
        for _ in range(3 if steps is None else steps):
            U = U - xp.matmul(U, xp.matmul(adjoint(xp, U), U) - identity) / 2
        return U
    return _newton_schulz_until_converged(xp, U, identity)


def _polar(U: Any) -> Any:
    with warnings.catch_warnings():
        # a singular U has many closest unitaries; reorthonormalize returns one, as documented
        warnings.simplefilter("ignore", SingularUpdateWarning)
        return polar(U)


def _newton_schulz_until_converged(xp: Any, U: Any, identity: Any) -> Any:
    # Frobenius norms: ‖E‖_F < 0.1 bounds every singular value (max |entry| does not: a singular
    # value of 2 spread over a 64×64 matrix shows as 3/64 in each entry).
    floor = 4 * U.shape[-1] * eps(xp, U.dtype)
    if not float(xp.max(xp.abs(U))) <= 1.5:
        return _polar(U)  # an entry above 1.5 means a singular value above 1.5: far outside the region
    previous = math.inf
    for _ in range(_MAX_NEWTON_SCHULZ_STEPS):
        E = xp.matmul(adjoint(xp, U), U) - identity
        error = float(xp.max(xp.linalg.matrix_norm(E)))  # NaN or inf when Uᴴ U overflows
        if error <= floor:
            return U
        if not (error < _NEWTON_SCHULZ_REGION and error <= previous / 2):
            # outside the region where it surely converges, or stalled: the exact polar factor
            return _polar(U)
        U = U - xp.matmul(U, E) / 2
        previous = error
    return _polar(U)


def probe_unitarity(xp: Any, func: str, U: Any) -> None:
    """Raise ``NotUnitaryError`` if ``U`` is far from unitary; O(N²).

    Uses ``‖Uᴴ (U z) − z‖ / ‖z‖`` for two Gaussian vectors ``z`` (fixed seed):
    with ``E = Uᴴ U − I``, ``E‖E z‖² = ‖E‖_F²``, so a non-unitary ``U`` cannot
    hide behind cancellation. The threshold is ``10 √ε`` of the dtype
    (3e-3 for single, 1.5e-7 for double precision): drift from rounding passes,
    a matrix that is not unitary does not.
    """
    if not is_concrete(U):
        return
    n = U.shape[-1]
    if 0 in tuple(U.shape):
        return
    backend = backend_for(U)
    z = backend.normal(xp, tuple(U.shape[:-2]) + (n, 2), U.dtype, seed=0, device=backend.device(U))
    Uz = xp.matmul(U, z)
    residual = adjoint(xp, xp.matmul(adjoint(xp, Uz), U)) - z
    ratio = xp.linalg.vector_norm(residual, axis=-2) / xp.linalg.vector_norm(z, axis=-2)
    worst = float(xp.max(ratio))
    threshold = 10 * math.sqrt(eps(xp, U.dtype))
    if not worst <= threshold:
        raise NotUnitaryError(
            f"{func}: U is not unitary (probe ‖Uᴴ U z − z‖/‖z‖ = {worst:.3g} > {threshold:.3g}, p = {n}); "
            "pull it back with unitary_lowrank.reorthonormalize(U) or start from unitary_lowrank.random_unitary"
        )
