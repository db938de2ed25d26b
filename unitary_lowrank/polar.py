"""Dense closest unitary by SVD: the O(N³) reference for :func:`project`."""

from __future__ import annotations

import warnings
from typing import Any

from ._arrays import eps
from ._validate import check_dtype, check_finite, check_matrix, is_concrete, namespace
from .errors import SingularUpdateWarning

__all__ = ["polar"]


def polar(M: Any) -> Any:
    """Unitary polar factor of ``M``: the closest unitary (orthogonal) matrix.

    Parameters
    ----------
    M : array, shape (..., m, n)
        Real or complex. For m ≠ n the factor has orthonormal columns (m ≥ n)
        or rows (m < n).

    Returns
    -------
    array, shape (..., m, n)
        ``W Vᴴ`` from the thin SVD ``M = W Σ Vᴴ``; it minimizes ``‖P − M‖_F``
        over matrices ``P`` with orthonormal columns (rows).

    Warns
    -----
    SingularUpdateWarning
        If ``M`` is numerically rank deficient: the closest unitary is then not
        unique, and one valid polar factor is returned.

    Notes
    -----
    O(N³) by a full SVD, backward stable. This is the dense reference that
    :func:`project` reproduces in O(k N²) for ``M = U + A Bᴴ``.

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> P = ul.polar(np.array([[2.0, 0.0], [0.0, -3.0]]))
    >>> P.tolist()
    [[1.0, 0.0], [0.0, -1.0]]
    """
    xp = namespace("polar", M=M)
    check_matrix("polar", "M", M)
    check_dtype(xp, "polar", "M", M)
    check_finite(xp, "polar", M=M)
    W, sigma, Vh = xp.linalg.svd(M, full_matrices=False)
    if is_concrete(sigma) and sigma.shape[-1] > 0:
        tolerance = max(M.shape[-2:]) * eps(xp, M.dtype) * sigma[..., 0]
        if bool(xp.any(sigma[..., -1] <= tolerance)):
            warnings.warn(
                "polar: M is numerically singular, so its closest unitary is not unique; "
                "returning one valid polar factor",
                SingularUpdateWarning,
                stacklevel=2,
            )
    return xp.matmul(W, Vh)
