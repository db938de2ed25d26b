"""Measuring and restoring unitarity: ``unitarity_error``, ``reorthonormalize`` and an O(N²) probe."""

from __future__ import annotations

import math
from typing import Any

from ._linalg import adjoint, eps, eye
from ._validate import check_dtype, check_finite, check_matrix, is_concrete, namespace
from .errors import NotUnitaryError

__all__ = ["reorthonormalize", "unitarity_error"]

_METHODS = ("newton-schulz", "polar")
_MAX_NEWTON_SCHULZ_STEPS = 50


def unitarity_error(U: Any) -> Any:
    """``max |Uᴴ U − I|`` over the last two axes.

    Parameters
    ----------
    U : array, shape (..., N, N)

    Returns
    -------
    array, shape (...)
        Real, one value per matrix (0-d for a single matrix; ``float(...)``
        gives a Python number).

    Notes
    -----
    Costs one O(N³) product ``Uᴴ U``: a diagnostic, not something to run every
    step (see ``check=True`` of :func:`project` for an O(N²) probe).

    Examples
    --------
    >>> import unitary_lowrank as ul
    >>> float(ul.unitarity_error(ul.random_unitary(8, dtype="float64", seed=0))) < 1e-14
    True
    """
    xp = namespace("unitarity_error", U=U)
    check_matrix("unitarity_error", "U", U, square=True)
    check_dtype(xp, "unitarity_error", "U", U)
    residual = xp.matmul(adjoint(xp, U), U) - eye(xp, U.shape[-1], U)
    return xp.max(xp.abs(residual), axis=(-2, -1))


def reorthonormalize(U: Any, method: str = "newton-schulz", *, steps: int | None = None) -> Any:
    """Pull a drifted ``U`` back onto the unitary (orthogonal) manifold.

    Parameters
    ----------
    U : array, shape (..., N, N)
        Nearly unitary matrices (e.g. after many rounded update steps).
    method : {"newton-schulz", "polar"}, default "newton-schulz"
        ``"newton-schulz"``: iterate ``U ← U (3I − Uᴴ U)/2``, which converges
        to the polar factor of ``U`` and roughly squares a small error each
        step (O(N³) matrix products, GPU friendly). ``"polar"``: the dense
        polar factor by SVD, exact for any non-singular ``U``.
    steps : int, optional
        Newton–Schulz steps to take. ``None`` (default) iterates until the
        error stops shrinking, falling back to ``"polar"`` when ``U`` is too
        far from unitary for the iteration to converge. Traced arrays (inside
        ``jax.jit``) cannot be inspected, so there ``None`` means 3 steps (enough
        to bring a drift of 1e-3 down to double-precision rounding).

    Returns
    -------
    array, shape (..., N, N)
        The same dtype as ``U``.

    Notes
    -----
    Write ``E = Uᴴ U − I``; one step is ``U ← U − U E / 2`` and maps a singular
    value ``1 + δ`` to ``1 − 3δ²/2 + O(δ³)``. It converges when every singular
    value of ``U`` lies in (0, √3).

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
    check_matrix(func, "U", U, square=True)
    check_dtype(xp, func, "U", U)
    check_finite(xp, func, U=U)
    if method not in _METHODS:
        raise ValueError(f"{func}: method must be one of {_METHODS}; got {method!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 0):
        raise ValueError(f"{func}: steps must be a non-negative int or None; got {steps!r}")
    if method == "polar":
        from .polar import polar

        return polar(U)
    identity = eye(xp, U.shape[-1], U)
    if steps is not None or not is_concrete(U):
        for _ in range(3 if steps is None else steps):
            U = U - xp.matmul(U, xp.matmul(adjoint(xp, U), U) - identity) / 2
        return U
    return _newton_schulz_until_converged(xp, U, identity)


def _newton_schulz_until_converged(xp: Any, U: Any, identity: Any) -> Any:
    previous = math.inf
    floor = 4 * U.shape[-1] * eps(xp, U.dtype)
    for _ in range(_MAX_NEWTON_SCHULZ_STEPS):
        E = xp.matmul(adjoint(xp, U), U) - identity
        error = float(xp.max(xp.abs(E)))
        if error <= floor or (error > previous / 2 and error < 1e-2):
            return U  # at rounding level, or no longer improving
        if error >= 0.5 or error > previous:
            from .polar import polar  # outside the basin where Newton–Schulz surely converges

            return polar(U)
        U = U - xp.matmul(U, E) / 2
        previous = error
    return U


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
    from array_api_compat import device

    from .backends import backend_for

    n = U.shape[-1]
    z = backend_for(U).normal(xp, tuple(U.shape[:-1]) + (2,), U.dtype, seed=0, device=device(U))
    Uz = xp.matmul(U, z)
    residual = adjoint(xp, xp.matmul(adjoint(xp, Uz), U)) - z
    ratio = xp.linalg.vector_norm(residual, axis=-2) / xp.linalg.vector_norm(z, axis=-2)
    worst = float(xp.max(ratio))
    threshold = 10 * math.sqrt(eps(xp, U.dtype))
    if not worst <= threshold:
        raise NotUnitaryError(
            f"{func}: U is not unitary (probe ‖Uᴴ U z − z‖/‖z‖ = {worst:.3g} > {threshold:.3g}, N = {n}); "
            "pull it back with unitary_lowrank.reorthonormalize(U) or start from unitary_lowrank.random_unitary"
        )
