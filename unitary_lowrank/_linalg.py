"""The factorizations a step uses, guarded for rank-deficient, non-finite and badly scaled input.

Householder QR (:func:`qr`), thin SVD (:func:`safe_svd`) and Hermitian
eigendecomposition (:func:`safe_eigh`), each working from a call's
:class:`~unitary_lowrank._context.Context`: the backend's own LAPACK, or
Jacobi sweeps on the device when the call is resident
(:mod:`~unitary_lowrank._placement`).
"""

from __future__ import annotations

import math
from typing import Any

from ._arrays import (
    Array,
    finite_matrices,
    real_dtype,
    scale_exponent,
    times_power_of_two,
)
from ._context import Context
from ._jacobi import jacobi_eigh, jacobi_svd
from ._split import Axis
from .backends._base import add_to_top_rows

#: Batches of tall matrices up to this many elements are factored on the host when they live on a GPU.
HOST_QR_ELEMENTS = 1 << 22


def qr(ctx: Context, X: Array) -> tuple[Array, Array]:
    """Orthonormal ``Q`` (..., m, l) spanning tall ``X`` (..., m, l), and ``R = Qᴴ X``: ``X = Q R`` to rounding.

    ``Q`` is the backend's reduced Householder QR of ``X + Δ``, where ``Δ`` is
    a tiny fixed perturbation (:func:`generic_shift`: ε times each column's
    largest entry, in a few rows). On an exactly rank-deficient ``X`` (repeated
    columns, a rank-1 update sketched at rank 8) each Householder step leaves
    the next columns' residual at rounding of the last one's: ε, ε², ε³, ...
    until it is subnormal, where LAPACK builds (MKL's ``cgeqrf`` in torch,
    measured) return Inf and NaN. ``Δ`` keeps every residual near ε‖X_j‖,
    so the extra columns of ``Q`` are some orthonormal completion, and changes
    the span of ``X`` by no more than Householder's own rounding does
    (columnwise backward error ε‖X_j‖). ``R`` is then taken from ``X`` itself
    (``Qᴴ X``, not triangular), so a zero block of ``X`` has exactly zero
    coordinates.

    A batch of them on a GPU (up to :data:`HOST_QR_ELEMENTS` elements) goes to
    the host and back: cuSOLVER factors a batch matrix by matrix, about 60 µs
    each (measured on an H200: 512 matrices of 64×2 took 31 ms), where NumPy's
    stacked LAPACK calls take well under a millisecond.
    """
    xp, backend = ctx.xp, ctx.backend
    if ctx.transfer is not None and not ctx.resident:
        batch = math.prod(X.shape[:-2])
        if batch > 1 and batch * X.shape[-2] * X.shape[-1] <= HOST_QR_ELEMENTS:
            return ctx.small(qr, X)  # on the host, NumPy arrays go straight to the NumPy backend
    if X.shape[-1] == 0 or X.shape[-2] == 0:
        return backend.qr(xp, X)
    Q, _ = backend.qr(xp, X, shift=generic_shift(ctx, X))
    return Q, xp.matmul(ctx.adjoint(Q), X)


def generic_shift(ctx: Context, X: Array) -> Any:
    """The top rows of ``Δ``, a tiny fixed perturbation of ``X``: ``Δ_ij = δ_j E_ij`` for ``i < min(m, 2l)``, else 0.

    ``δ_j = ε · max(max_i |X_ij|, ε max_ij |X_ij|)``: ε times the column's
    largest entry, floored so that columns of negligible size do not sit at
    the bottom of the exponent range again. ``E`` (entries in [−½, ½), complex
    for complex ``X``) is a hash of the indices, ``frac(43758.5453 sin(12.9898 i
    + 78.233 j + ½)) − ½``: no random state, the same on every call, and well
    conditioned (κ < 600 in double precision for every m < 80, l ≤ min(m, 40),
    real and complex). Its 2l rows leave room for the l − 1 directions a
    rank-1 ``X`` lacks, whatever direction ``X`` has; the backend adds ``Δ``
    in the working copy its QR makes anyway.
    """
    xp = ctx.xp
    m, l = X.shape[-2], X.shape[-1]
    E = _hash_matrix(ctx, min(m, 2 * l), l, X)
    column = xp.max(xp.abs(X), axis=-2, keepdims=True)  # (..., 1, l); NaN or Inf in X make X + Δ non-finite anyway
    u = ctx.eps
    delta = u * xp.maximum(column, u * xp.max(column, axis=-1, keepdims=True))
    return E * (delta if delta.dtype == X.dtype else xp.astype(delta, X.dtype))


#: ``E`` of :func:`generic_shift` by (namespace, rows, columns, dtype, device): a constant, made once (eager)
_HASH_MATRICES: dict[tuple[Any, ...], Any] = {}


def _hash_matrix(ctx: Context, top: int, l: int, like: Array) -> Any:
    """``E`` (top×l) of :func:`generic_shift`, in ``like``'s dtype (complex: a second hash as imaginary part)."""
    xp, device = ctx.xp, ctx.device
    cache = ctx.backend.can_keep(like)
    key = (id(xp), top, l, like.dtype, device)
    if cache and key in _HASH_MATRICES:
        return _HASH_MATRICES[key]
    real = real_dtype(xp, like.dtype)
    i = xp.reshape(xp.arange(top, dtype=real, device=device), (top, 1))
    j = xp.reshape(xp.arange(l, dtype=real, device=device), (1, l))

    def hashed(a: float, b: float) -> Any:
        h = xp.sin(i * a + j * b + 0.5) * 43758.5453
        return h - xp.floor(h) - 0.5

    E = hashed(12.9898, 78.233)
    if ctx.complex:
        E = xp.astype(E, like.dtype) + 1j * xp.astype(hashed(39.3468, 11.135), like.dtype)
    if cache:
        if len(_HASH_MATRICES) >= 256:
            _HASH_MATRICES.clear()
        _HASH_MATRICES[key] = E
    return E


def orthonormal_basis(ctx: Context, X: Array, rows: Axis | None = None) -> Any:
    """Orthonormal columns spanning ``X``: the ``Q`` of the backend's reduced Householder QR.

    ``X`` is first scaled by a power of two to entries of order 1: ``Q`` does
    not change, and subnormal or huge columns (whose squared norms would
    underflow or overflow inside the QR) cannot turn into NaN. ``rows``: the
    axis of ``U`` that ``X``'s rows follow; where the call's split divides it
    over processes, this process's rows of the basis of the whole ``X``
    (scaled by the largest entry of all blocks, then a TSQR).
    """
    xp = ctx.xp
    if rows is None or rows != ctx.split.axis:
        return qr(ctx, times_power_of_two(xp, X, -scale_exponent(xp, X)))[0]
    return qr_along(ctx, times_power_of_two(xp, X, -ctx.split.exponent(ctx, X, rows)), rows)[0]


def qr_along(ctx: Context, X: Array, rows: Axis) -> tuple[Array, Array]:
    """Reduced QR of ``X``, whose rows follow ``U``'s axis ``rows``: a TSQR where the call's split divides it.

    Returns this process's rows of ``Q`` and the (replicated) ``R``; on one process, :func:`qr`.
    """
    split = ctx.split
    return tsqr(ctx, X, split.comm, list(split.sizes)) if rows == split.axis else qr(ctx, X)


def tsqr(ctx: Context, X: Array, comm: Any, sizes: list[int]) -> tuple[Array, Array]:
    """Orthonormal ``Q_r`` (n_r×m) spanning the row-split tall ``X`` (n×l), and the replicated ``R = Qᴴ X`` (m×l).

    Each process factors its block with the library's QR (its generic shift
    keeps rank-deficient blocks finite), the processes all-gather their R
    factors (padded to l×l, so that all have one shape), and every process
    factors the stack of the real rows; ``Q_r`` is the local Q times its rows
    of the stack's Q. As stable as Householder QR. ``sizes``: the row counts
    of all processes (m = min(n, l)). Communication: one all-gather of
    ``comm.size`` blocks of l×l.
    """
    xp = ctx.xp
    l = X.shape[-1]
    Q_local, R_local = qr(ctx, X)  # (n_r, m_r), (m_r, l) with m_r = min(n_r, l)
    m_local = Q_local.shape[-1]
    padded = xp.concat([R_local, xp.zeros((l - m_local, l), dtype=X.dtype, device=ctx.device)], axis=0)
    blocks = comm.all_gather(padded)
    heights = [min(n, l) for n in sizes]
    stacked = xp.concat([blocks[r, : heights[r], :] for r in range(comm.size) if heights[r]], axis=0)
    Q_stack, R = qr(ctx, stacked)
    start = sum(heights[: comm.index])
    return xp.matmul(Q_local, Q_stack[start : start + m_local, :]), R


def leading(ctx: Context, Y: Array, rank: int) -> tuple[Array, Array]:
    """``(W_k Σ_k, V_kᴴ)`` of the thin SVD ``Y = W Σ Vᴴ`` of the tall ``Y`` (rows following ``U``'s ``n``).

    Split rows: a TSQR of ``Y`` (scaled by a power of two) and the SVD of its
    replicated l×l ``R``. Otherwise the thin SVD of ``Y`` itself; on a GPU as
    ``Y = Q R`` there and the l×l SVD of ``R`` on the host (LAPACK's SVD of a
    tall matrix takes the same QR first; cuSOLVER's waits for the device and
    runs latency-bound at small l).
    """
    xp = ctx.xp
    if ctx.split.axis == "n":
        e = ctx.split.exponent(ctx, Y, "n")
        Q, R = qr_along(ctx, times_power_of_two(xp, Y, -e), "n")
        W, sigma, Vh = safe_svd(ctx, R)
        sigma = times_power_of_two(xp, sigma[..., :rank], e[..., 0])
        return xp.matmul(Q, W[..., :rank] * xp.astype(sigma[..., None, :], Y.dtype)), Vh[..., :rank, :]
    if ctx.transfer is None:
        W, sigma, Vh = safe_svd(ctx, Y)
    else:
        Q, R = qr(ctx, Y)
        W, sigma, Vh = ctx.small(safe_svd, R)
        W = xp.matmul(Q, W)
    return W[..., :rank] * xp.astype(sigma[..., None, :rank], Y.dtype), Vh[..., :rank, :]


def safe_svd(ctx: Context, X: Array) -> tuple[Array, Array, Array]:
    """Thin SVD of ``X + Δ`` (:func:`generic_shift`), with NaN factors for a matrix holding NaN or Inf.

    LAPACK's complex SVD can loop forever on an Inf entry, so such a matrix is
    not passed to it: the mask costs one elementwise pass over ``X``, which
    the callers only use on small (r×r, N×l) matrices or inside O(N³) work.
    The shift ``Δ`` (ε times each column's largest entry) keeps an exactly
    rank-deficient ``X`` from driving the bidiagonalization into subnormals:
    MKL's ``cgesdd`` (torch, complex64) failed to converge on a 20×11 matrix
    of equal columns. It moves singular values by at most ``‖Δ‖₂ ≤ ε ‖X‖_F``,
    as the SVD's own rounding does.
    """
    xp = ctx.xp
    finite = _finite_mask(ctx, X)
    if finite is not None:
        X = xp.where(finite, X, xp.zeros_like(X))
    if X.shape[-1] and X.shape[-2]:
        X = add_to_top_rows(xp, X, generic_shift(ctx, X))
    if ctx.resident and X.shape[-1] and X.shape[-2]:
        W, sigma, Vh = _resident_svd(ctx, X)
    else:
        W, sigma, Vh = xp.linalg.svd(X, full_matrices=False)
    if finite is None:
        return W, sigma, Vh
    nan = float("nan")
    return (
        xp.where(finite, W, xp.full_like(W, nan)),
        xp.where(finite[..., 0], sigma, xp.full_like(sigma, nan)),
        xp.where(finite, Vh, xp.full_like(Vh, nan)),
    )


def safe_eigh(ctx: Context, H: Array) -> tuple[Array, Array]:
    """Hermitian eigendecomposition with the same NaN guard as :func:`safe_svd`."""
    xp = ctx.xp
    finite = _finite_mask(ctx, H)
    if finite is not None:
        H = xp.where(finite, H, xp.zeros_like(H))
    if ctx.resident and H.shape[-1]:
        e = scale_exponent(xp, H)  # Jacobi's rotations expect entries of order one
        lam, V = jacobi_eigh(xp, times_power_of_two(xp, H, -e))
        lam = times_power_of_two(xp, lam, e[..., 0])
    else:
        lam, V = xp.linalg.eigh(H)
    if finite is None:
        return lam, V
    nan = float("nan")
    return xp.where(finite[..., 0], lam, xp.full_like(lam, nan)), xp.where(finite, V, xp.full_like(V, nan))


def _finite_mask(ctx: Context, X: Array) -> Any:
    """Per matrix, whether ``X`` is finite (shape (..., 1, 1)); ``None`` when all of it is, known for free.

    Where values can be read without a device sync (NumPy, a CPU tensor
    outside ``torch.compile``), one reduction tells the common case, and the
    masking around the factorization is skipped: it would change nothing.
    """
    xp = ctx.xp
    if ctx.readable and bool(xp.all(xp.isfinite(X))):
        return None
    return finite_matrices(xp, X)


def _resident_svd(ctx: Context, X: Array) -> tuple[Array, Array, Array]:
    """Thin SVD by Jacobi sweeps on the device (:mod:`~unitary_lowrank._jacobi`), for any (..., m, n).

    Scaled to entries of order one by a power of two; a tall matrix is first
    reduced by a Householder QR (``X = Q R``, the SVD of the n×n ``R``), a wide
    one through its adjoint.
    """
    xp = ctx.xp
    m, n = X.shape[-2], X.shape[-1]
    if m < n:
        W, sigma, Vh = _resident_svd(ctx, ctx.adjoint(X))
        return ctx.adjoint(Vh), sigma, ctx.adjoint(W)
    e = scale_exponent(xp, X)
    X = times_power_of_two(xp, X, -e)
    if m > n:
        Q, R = ctx.backend.qr(xp, X)
        W, sigma, Vh = jacobi_svd(xp, R)
        W = xp.matmul(Q, W)
    else:
        W, sigma, Vh = jacobi_svd(xp, X)
    return W, times_power_of_two(xp, sigma, e[..., 0]), Vh
