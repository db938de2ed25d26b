"""Low-rank sketches ``G ≈ A Bᴴ`` of a dense update, in O(k N²)."""

from __future__ import annotations

import warnings
from typing import Any

from ._arrays import Array, real_dtype, scale_exponent, times_power_of_two
from ._context import Context, context
from ._counter import is_key, key_uniform
from ._linalg import leading, orthonormal_basis, safe_svd
from ._validate import check_dtype, check_matrix, namespace
from ._validate import check_finite as _check_finite

__all__ = ["sketch"]

_KINDS = ("randomized", "column", "svd")


def sketch(
    G: Array,
    rank: int,
    *,
    kind: str = "randomized",
    oversample: int = 10,
    power_iters: int = 1,
    seed: Any = None,
    init: Array = None,
    check_finite: bool = True,
    method: str | None = None,
) -> tuple[Array, Array]:
    """Rank-``rank`` factors ``(A, B)`` with ``G ≈ A Bᴴ``.

    Parameters
    ----------
    G : array, shape (..., m, n)
        The dense update (e.g. an optimizer's step), real or complex.
    rank : int
        k, with 1 ≤ k ≤ min(m, n).
    kind : {"randomized", "column", "svd"}, default "randomized"
        ``"randomized"``: range finder with oversampling and power iterations
        (Halko, Martinsson, Tropp 2011). ``"column"``: norm-weighted column
        sampling (Drineas, Kannan, Mahoney 2006). ``"svd"``: dense truncated
        SVD, the optimal rank-k factors, O(N³) — the reference.
    oversample : int, default 10
        p: extra directions drawn beyond k (randomized, column).
    power_iters : int, default 1
        q: power iterations of the randomized sketch; each costs two passes over
        ``G`` and sharpens a slowly decaying spectrum.
    seed : int, sequence of int, None, a generator of ``G``'s library, or an integer array (a key)
        Same seed, same sketch, on every process (data-parallel replicas stay
        identical). ``None`` draws fresh entropy. An integer array of ``G``'s
        library (e.g. a torch int64 tensor ``[seed, step]`` on ``G``'s device)
        is a *counter key*: the draws are a hash of its values and of each
        element's index (SplitMix64, Box–Muller), computed with array
        operations where ``G`` lives. That is the seed to use under
        ``torch.compile`` (which cannot pass a ``torch.Generator`` into a
        graph) and in CUDA graphs: advance the key in place between steps.
        (JAX's integer arrays are ``jax.random`` keys and are used as such.)
    init : array, shape (..., n, l), optional
        Warm start for ``"randomized"``: a test matrix used instead of the
        Gaussian ``Ω``, e.g. the last step's ``B`` (successive updates are
        correlated). Its column count l replaces ``rank + oversample``.
    check_finite : bool, default True
        Raise ``ValueError`` if ``G`` holds NaN or Inf. Reading the answer back
        synchronizes a GPU with the host; optimizer adapters pass ``False``.
        Then a non-finite ``G`` gives NaN factors (never a hang: LAPACK's
        complex SVD can loop forever on Inf, so no SVD is run on such input).

    method : str, optional
        The old name of ``kind`` (deprecated: ``method`` names the update rule
        of the optimizer adapters).

    Returns
    -------
    A : array, shape (..., m, k)
    B : array, shape (..., n, k)
        ``B`` has orthonormal columns; ``A Bᴴ`` is the sketch.

    Notes
    -----
    Randomized, with ``l = k + p``: ``Y = G Ω``; then q times
    ``Z = orth(Gᴴ orth(Y))``, ``Y = G Z``; the best rank-k approximation of
    ``G Z Zᴴ = Y Zᴴ`` comes from the SVD of the m×l matrix ``Y``. Passes over
    ``G``: 1 + 2q (3 with the defaults). With q = 0 a final ``orth(Y)ᴴ G`` is
    taken (2 passes). Exact (to rounding) when rank(G) ≤ k; on a decaying
    spectrum within a small factor of the optimal error ``(Σ_{j>k} σ_j²)^{1/2}``.

    Column: ``l`` columns drawn with probability ∝ their squared norm
    (Gumbel top-l, without replacement), ``P`` = their top-k left singular
    vectors, and the best rank-k factors of ``P Pᴴ G`` (two passes).

    References
    ----------
    N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
    SIAM Review 53 (2011) 217–288.
    P. Drineas, R. Kannan, M. W. Mahoney, "Fast Monte Carlo algorithms for
    matrices II", SIAM J. Comput. 36 (2006) 158–183.

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 40))
    >>> A, B = ul.sketch(G, 3, seed=0)
    >>> bool(np.linalg.norm(A @ B.T - G) < 1e-10 * np.linalg.norm(G))
    True
    """
    func = "sketch"
    if method is not None:
        warnings.warn("sketch: method= is now kind=", DeprecationWarning, stacklevel=2)
        kind = method
    xp = namespace(func, G=G)
    check_matrix(func, "G", G)
    check_dtype(xp, func, "G", G)
    if check_finite:
        _check_finite(xp, func, G=G)
    m, n = G.shape[-2], G.shape[-1]
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"{func}: rank must be an int ≥ 1; got {rank!r}")
    if rank > min(m, n):
        raise ValueError(f"{func}: rank must be ≤ min(m, n) = {min(m, n)} for G of shape {tuple(G.shape)}; got {rank}")
    if kind not in _KINDS:
        raise ValueError(f"{func}: kind must be one of {_KINDS}; got {kind!r}")
    for name, value in (("oversample", oversample), ("power_iters", power_iters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{func}: {name} must be an int ≥ 0; got {value!r}")
    ctx = context(xp, G, (G,), tuple(G.shape[:-2]))
    keyed = is_key(seed)
    if keyed:
        namespace(func, G=G, seed=seed)  # a key of G's own library, on G's device
        if ctx.backend.device(seed) != ctx.device:
            raise ValueError(
                f"{func}: a seed key must live on G's device ({ctx.device}); got {ctx.backend.device(seed)}"
            )
    if init is not None:
        if kind != "randomized":
            raise ValueError(f"{func}: init is a warm start for kind='randomized'; got kind={kind!r}")
        namespace(func, G=G, init=init)
        check_matrix(func, "init", init)
        if init.shape[-2] != n or init.dtype != G.dtype or init.shape[-1] < rank:
            raise ValueError(
                f"{func}: init must have shape (..., {n}, l) with l ≥ rank = {rank} and dtype {G.dtype}; "
                f"got shape {tuple(init.shape)} and dtype {init.dtype}"
            )
    return sketch_step(ctx, G, rank, kind, oversample, power_iters, seed, keyed, init)


def sketch_step(
    ctx: Context,
    G: Array,
    rank: int,
    kind: str,
    oversample: int,
    power_iters: int,
    seed: Any,
    keyed: bool,
    init: Array = None,
) -> tuple[Array, Array]:
    """:func:`sketch` on validated arguments, from the call's context.

    ``keyed``: ``seed`` is a counter key (an integer array of ``G``'s library,
    on its device), drawn from with array operations; otherwise the backend
    draws from it (an int, a sequence of them, a generator, a ``jax.random`` key).
    """
    if kind == "svd":
        return _truncated_svd(ctx, G, rank)
    if kind == "column":
        return _column_sample(ctx, G, rank, oversample, seed, keyed)
    return _range_finder(ctx, G, rank, oversample, power_iters, seed, init)


def _truncated_svd(ctx: Context, G: Array, rank: int) -> tuple[Array, Array]:
    xp = ctx.xp
    W, sigma, Vh = safe_svd(ctx, G)
    A = W[..., :rank] * xp.astype(sigma[..., None, :rank], G.dtype)
    return A, ctx.adjoint(Vh[..., :rank, :])


def _range_finder(
    ctx: Context, G: Array, rank: int, oversample: int, power_iters: int, seed: Any, init: Array
) -> tuple[Array, Array]:
    # G is n×p in the orientation of the step's U (rows following "n"), split over processes as U is
    split = ctx.split
    m, n = split.shape(G)
    if init is None:
        omega = split.normal(ctx, seed, (*G.shape[:-2], n, min(rank + oversample, m, n)), G.dtype, "p")
    else:
        omega = init
    Y = split.sum(ctx.stream(G, omega), "p")
    if power_iters == 0:
        return _lift(ctx, orthonormal_basis(ctx, Y), G, rank)
    for _ in range(power_iters):
        P = orthonormal_basis(ctx, Y, "n")
        # Gᴴ P as (Pᴴ G)ᴴ: streams G in its own memory order, no conj(G) copy.
        Z = orthonormal_basis(ctx, split.sum(ctx.adjoint(ctx.stream(ctx.adjoint(P), G)), "n"), "p")
        Y = split.sum(ctx.stream(G, Z), "p")
    A, Vh = leading(ctx, Y, rank)
    return A, ctx.xp.matmul(Z, ctx.adjoint(Vh))


def _lift(ctx: Context, P: Array, G: Array, rank: int) -> tuple[Array, Array]:
    """Best rank-k factors of ``P Pᴴ G`` for orthonormal ``P``: one more pass over ``G``."""
    xp = ctx.xp
    W, sigma, Vh = safe_svd(ctx, ctx.stream(ctx.adjoint(P), G))
    A = xp.matmul(P, W[..., :rank] * xp.astype(sigma[..., None, :rank], G.dtype))
    return A, ctx.adjoint(Vh[..., :rank, :])


def _column_sample(ctx: Context, G: Array, rank: int, oversample: int, seed: Any, keyed: bool) -> tuple[Array, Array]:
    xp = ctx.xp
    m, n = G.shape[-2], G.shape[-1]
    batch = tuple(G.shape[:-2])
    width = min(rank + oversample, n)
    real = real_dtype(xp, G.dtype)
    scaled = times_power_of_two(xp, G, -scale_exponent(xp, G))  # squares above 1e19 (single) would overflow
    weights = xp.sum(xp.abs(scaled) ** 2, axis=-2) if ctx.complex else xp.sum(scaled * scaled, axis=-2)
    del scaled
    total = xp.sum(weights, axis=-1, keepdims=True)
    probability = weights / xp.where(total > 0, total, xp.ones_like(total))
    tiny = float(xp.finfo(real).smallest_normal)
    if keyed:
        u = key_uniform(xp, seed, batch + (n,), real)
    else:
        u = ctx.backend.uniform(xp, batch + (n,), real, seed=seed, device=ctx.device)
    # Gumbel top-l: argsort of log p + Gumbel noise draws l columns without
    # replacement with probabilities ∝ p; zero columns come last.
    keys = xp.log(probability + tiny) - xp.log(-xp.log(u))
    chosen = xp.argsort(-keys, axis=-1)[..., :width]
    columns = xp.take_along_axis(G, xp.broadcast_to(chosen[..., None, :], batch + (m, width)), axis=-1)
    scale = 1 / xp.sqrt(width * xp.take_along_axis(probability, chosen, axis=-1) + tiny)
    W, _, _ = safe_svd(ctx, columns * xp.astype(scale[..., None, :], G.dtype))
    return _lift(ctx, W[..., :rank], G, rank)
