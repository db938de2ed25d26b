"""projUNN steps on weights spread over processes by rows, with O(N k) communication and no gather.

A weight ``W`` sharded by rows, as FSDP2 shards parameters: process r holds the
rows ``W_r`` and the same rows ``Δ_r`` of the update. The step works on the tall
view ``U`` (n×p, n ≥ p) of the weight — ``W`` itself when it is square or tall
(``layout="rows"``: ``U``'s rows are sharded), its adjoint when it is wide
(``layout="columns"``: ``U``'s columns are sharded). Every pass over a large
operand is then local to the process (``Δ Ω``, ``U Q``, ``U B``, the rank-r
write) or a sum over processes of a small result (``Uᴴ A``, ``Δᴴ P``: one
all-reduce of p×k or n×k); a QR of a tall matrix whose rows are sharded is a
TSQR (:func:`tsqr`: each process factors its block, one all-gather of the small
R factors). The r×r work runs on every process alike, on identical inputs.

    U_r, A_r sharded, B replicated (rows)        U_c, B_c sharded, A replicated (columns)

Communication per step, for k = rank and l = k + 10:

| | rows | columns |
|---|---|---|
| randomized sketch | 2 TSQR (size·l² each) + 1 all-reduce p·l | 2 all-reduces n·l + 1 TSQR |
| subspace sketch | 1 TSQR + 1 all-reduce p·k | 1 all-reduce n·k + 1 TSQR |
| transport | 1 TSQR (2k columns) + 1 all-reduce 2k·p | 1 all-reduce n·k |
| project | 1 all-reduce p·k (square) | 1 TSQR + 1 all-reduce n·2k (+ 1 n·k) |

plus a few scalar all-reduces (the global maxima that scale factors exactly by
powers of two). No collective has more than max(n, p)·l elements.

A :class:`Collectives` object says how to reduce and gather; :class:`Local` is
the one-process case, and :mod:`unitary_lowrank.backends.torch.distributed`
has the ``torch.distributed`` one, which ``ProjUNN`` uses for FSDP2's
``DTensor`` parameters. Results equal the one-process steps to rounding (the
test suite holds them to 1e-12 in double precision), not bit for bit: a TSQR
rounds differently from one Householder QR.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._adapters import StepResult
from ._arrays import real_dtype, scale_exponent, times_power_of_two
from ._context import Context, context_of
from ._counter import is_key, key_normal
from ._linalg import orthonormal_basis, qr, safe_svd
from ._rank_update import add_update, span
from .project import _core as project_core
from .transport import _core as transport_core

__all__ = ["Collectives", "Local", "initial_basis", "shard_sizes", "step", "tsqr", "unitarity_probe"]

LAYOUTS = ("rows", "columns")
SKETCHES = ("randomized", "subspace")


class Collectives(Protocol):
    """How the processes that share a weight reduce and gather (one process group)."""

    rank: int
    size: int

    def all_reduce(self, x: Any, op: str = "sum") -> Any:
        """``x`` summed (``op="sum"``) or maximized (``"max"``) over the processes; every process gets it."""
        ...

    def all_gather(self, x: Any) -> Any:
        """The processes' ``x`` (equal shapes), stacked on a new leading axis in rank order."""
        ...


class Local:
    """The collectives of one process: reductions and gathers that change nothing."""

    rank, size = 0, 1

    def all_reduce(self, x: Any, op: str = "sum") -> Any:
        return x

    def all_gather(self, x: Any) -> Any:
        return x[None, ...]


def shard_sizes(n: int, size: int) -> list[int]:
    """How many of n rows each of ``size`` processes holds: ``torch.chunk``'s rule, as FSDP2 shards.

    Chunks of ⌈n/size⌉ rows, the last ones shorter or empty (n = 6 on 4: 2, 2, 2, 0).
    """
    chunk = -(-n // size) if n else 0
    return [max(0, min(chunk, n - r * chunk)) for r in range(size)]


# -- building blocks ----------------------------------------------------------------------------------


def _global_exponent(ctx: Context, X: Any, comm: Collectives) -> Any:
    """:func:`~unitary_lowrank._arrays.scale_exponent` of the whole sharded ``X``: one scalar all-reduce (max)."""
    xp = ctx.xp
    if X.shape[-2] and X.shape[-1]:
        largest = xp.max(xp.abs(X), axis=(-2, -1), keepdims=True)
    else:  # an empty block holds no entry
        largest = xp.zeros((1, 1), dtype=real_dtype(xp, X.dtype), device=ctx.device)
    largest = comm.all_reduce(largest, "max")
    positive = largest > 0
    return xp.where(positive, xp.floor(xp.log2(xp.where(positive, largest, xp.ones_like(largest)))), 0.0 * largest)


def tsqr(ctx: Context, X: Any, comm: Collectives, sizes: list[int]) -> tuple[Any, Any]:
    """Orthonormal ``Q_r`` (n_r×m) spanning the row-sharded tall ``X`` (n×l), and the replicated ``R = Qᴴ X`` (m×l).

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
    start = sum(heights[: comm.rank])
    return xp.matmul(Q_local, Q_stack[start : start + m_local, :]), R


def _orth_sharded(ctx: Context, X: Any, comm: Collectives, sizes: list[int]) -> Any:
    """Orthonormal columns spanning the row-sharded ``X``: scaled by a global power of two, then TSQR."""
    return tsqr(ctx, times_power_of_two(ctx.xp, X, -_global_exponent(ctx, X, comm)), comm, sizes)[0]


def _informative(ctx: Context, R: Any, comm: Collectives | None) -> Any:
    """Whether ``R`` (replicated, or sharded when ``comm`` is given) holds a direction: finite and not all zero."""
    xp = ctx.xp
    if R.shape[-2]:
        largest = xp.max(xp.abs(R), axis=(-2, -1), keepdims=True)
    else:
        largest = xp.zeros((1, 1), dtype=real_dtype(xp, R.dtype), device=ctx.device)
    if comm is not None:
        largest = comm.all_reduce(largest, "max")
    return xp.isfinite(largest) & (largest > 0)


def _key_draws(ctx: Context, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Gaussian draws from ``key``: a counter key of the array library, or a key of its own (``jax.random``)."""
    if is_key(key):
        return key_normal(ctx.xp, key, shape, dtype)
    return ctx.backend.normal(ctx.xp, shape, dtype, seed=key, device=ctx.device)


# -- the sketch ---------------------------------------------------------------------------------------


def _sketch_rows(
    ctx: Context, delta: Any, rank: int, comm: Collectives, sizes: list[int], sketch: str, key: Any, basis: Any
) -> tuple[Any, Any, Any]:
    """Rows layout: ``A_r`` sharded like ``Δ_r`` (n_r×p), ``B`` (p×k) and the next basis replicated."""
    xp = ctx.xp
    p = delta.shape[-1]
    if sketch == "subspace":
        P = _orth_sharded(ctx, ctx.stream(delta, basis), comm, sizes)
        R = comm.all_reduce(ctx.adjoint(ctx.stream(ctx.adjoint(P), delta)))  # Δᴴ P: p×k
        return P, R, xp.where(_informative(ctx, R, None), orthonormal_basis(ctx, R), basis)
    width = min(rank + 10, sum(sizes), p)
    omega = _key_draws(ctx, key, (p, width), delta.dtype)
    P = _orth_sharded(ctx, ctx.stream(delta, omega), comm, sizes)
    Z = orthonormal_basis(ctx, comm.all_reduce(ctx.adjoint(ctx.stream(ctx.adjoint(P), delta))))
    Y = ctx.stream(delta, Z)
    e = _global_exponent(ctx, Y, comm)
    Q, R = tsqr(ctx, times_power_of_two(xp, Y, -e), comm, sizes)
    W, sigma, Vh = safe_svd(ctx, R)
    sigma = times_power_of_two(xp, sigma[..., :rank], e[..., 0])
    A = xp.matmul(Q, W[..., :rank] * xp.astype(sigma[..., None, :], delta.dtype))
    return A, xp.matmul(Z, ctx.adjoint(Vh[..., :rank, :])), None


def _sketch_columns(
    ctx: Context, delta: Any, rank: int, comm: Collectives, sizes: list[int], sketch: str, key: Any, basis: Any
) -> tuple[Any, Any, Any]:
    """Columns layout: ``Δ_c`` is n×p_c; ``A`` (n×k) replicated, ``B_c`` (p_c×k) and the next basis sharded."""
    xp = ctx.xp
    n = delta.shape[-2]
    if sketch == "subspace":
        P = orthonormal_basis(ctx, comm.all_reduce(ctx.stream(delta, basis)))  # Δ Q: n×k
        R = ctx.adjoint(ctx.stream(ctx.adjoint(P), delta))  # Δᴴ P, this process's rows: p_c×k
        next_basis = xp.where(_informative(ctx, R, comm), _orth_sharded(ctx, R, comm, sizes), basis)
        return P, R, next_basis
    width = min(rank + 10, n, sum(sizes))
    start = sum(sizes[: comm.rank])
    omega = _key_draws(ctx, key, (sum(sizes), width), delta.dtype)[start : start + delta.shape[-1], :]
    P = orthonormal_basis(ctx, comm.all_reduce(ctx.stream(delta, omega)))
    Z = _orth_sharded(ctx, ctx.adjoint(ctx.stream(ctx.adjoint(P), delta)), comm, sizes)  # p_c×l
    Y = comm.all_reduce(ctx.stream(delta, Z))  # n×l, replicated
    W, sigma, Vh = safe_svd(ctx, Y)
    A = W[..., :rank] * xp.astype(sigma[..., None, :rank], delta.dtype)
    return A, xp.matmul(Z, ctx.adjoint(Vh[..., :rank, :])), None


# -- the steps ----------------------------------------------------------------------------------------


def _transport_rows(ctx: Context, U: Any, A: Any, B: Any, comm: Collectives, sizes: list[int], retraction, out):
    xp = ctx.xp
    k = A.shape[-1]
    UB = ctx.stream(U, B)
    e_A, e_UB = _global_exponent(ctx, A, comm), _global_exponent(ctx, UB, comm)
    stacked = xp.concat([times_power_of_two(xp, A, -e_A), times_power_of_two(xp, UB, -e_UB)], axis=-1)
    Q, R = tsqr(ctx, stacked, comm, sizes)
    (F_minus_I,) = ctx.small(transport_core, R[..., :k], R[..., k:], e_A, e_UB, retraction=retraction)
    Y = xp.matmul(F_minus_I, comm.all_reduce(ctx.stream(ctx.adjoint(Q), U)))  # (F − I)(Qᴴ U): r×p
    return add_update(ctx, U, Q, Y, out)


def _transport_columns(ctx: Context, U: Any, A: Any, B: Any, comm: Collectives, retraction, out):
    xp = ctx.xp
    UB = comm.all_reduce(ctx.stream(U, B))  # n×k, replicated
    Q, R_A, R_UB, e_A, e_UB = span(ctx, A, UB)
    (F_minus_I,) = ctx.small(transport_core, R_A, R_UB, e_A, e_UB, retraction=retraction)
    return add_update(ctx, U, Q, xp.matmul(F_minus_I, ctx.stream(ctx.adjoint(Q), U)), out)


def _project_rows(ctx: Context, U: Any, A: Any, B: Any, comm: Collectives, sizes: list[int], out):
    xp = ctx.xp
    n, p = sum(sizes), U.shape[-1]
    A_hat = comm.all_reduce(ctx.adjoint(ctx.stream(ctx.adjoint(A), U)))  # Uᴴ A: p×k
    Q, R_A, R_B, e_A, e_B = span(ctx, A_hat, B)  # replicated, p×r
    UQ = ctx.stream(U, Q)
    outside = ()
    if p < n:  # A⊥ = A − U Uᴴ A, orthogonalized twice (see project), and its TSQR
        e_a = _global_exponent(ctx, A, comm)
        A_perp = times_power_of_two(xp, A, -e_a) - times_power_of_two(xp, xp.matmul(UQ, R_A), e_A - e_a)
        A_perp = A_perp - ctx.stream(U, comm.all_reduce(ctx.adjoint(ctx.stream(ctx.adjoint(A_perp), U))))
        e_P = _global_exponent(ctx, A_perp, comm)
        P, R_P = tsqr(ctx, times_power_of_two(xp, A_perp, -e_P), comm, sizes)
        outside = (R_P, e_a + e_P)
    F_minus_I, F_2 = ctx.small(project_core, R_A, R_B, e_A, e_B, *outside, warn=False)
    X = xp.matmul(UQ, F_minus_I)
    if p < n:
        X = X + xp.matmul(P, F_2)
    return add_update(ctx, U, X, ctx.adjoint(Q), out)


def _project_columns(ctx: Context, U: Any, A: Any, B: Any, comm: Collectives, sizes: list[int], out):
    xp = ctx.xp
    n, k = U.shape[-2], A.shape[-1]
    A_hat = ctx.adjoint(ctx.stream(ctx.adjoint(A), U))  # Uᴴ A, this process's rows: p_c×k
    e_A, e_B = _global_exponent(ctx, A_hat, comm), _global_exponent(ctx, B, comm)
    stacked = xp.concat([times_power_of_two(xp, A_hat, -e_A), times_power_of_two(xp, B, -e_B)], axis=-1)
    Q, R = tsqr(ctx, stacked, comm, sizes)  # Q_c: p_c×r
    R_A, R_B = R[..., :k], R[..., k:]
    UQ = comm.all_reduce(ctx.stream(U, Q))  # n×r, replicated
    outside = ()
    if sum(sizes) < n:
        e_a = scale_exponent(xp, A)
        A_perp = times_power_of_two(xp, A, -e_a) - times_power_of_two(xp, xp.matmul(UQ, R_A), e_A - e_a)
        A_perp = A_perp - comm.all_reduce(ctx.stream(U, ctx.adjoint(ctx.stream(ctx.adjoint(A_perp), U))))
        e_P = scale_exponent(xp, A_perp)
        P, R_P = qr(ctx, times_power_of_two(xp, A_perp, -e_P))
        outside = (R_P, e_a + e_P)
    F_minus_I, F_2 = ctx.small(project_core, R_A, R_B, e_A, e_B, *outside, warn=False)
    X = xp.matmul(UQ, F_minus_I)
    if outside:
        X = X + xp.matmul(P, F_2)
    return add_update(ctx, U, X, ctx.adjoint(Q), out)


def step(
    U: Any,
    delta: Any,
    comm: Collectives,
    *,
    layout: str,
    rank: int,
    method: str = "transport",
    sketch: str = "randomized",
    key: Any = None,
    basis: Any = None,
    error: Any = None,
    sizes: list[int] | None = None,
    out: Any = None,
    skip_nonfinite: bool = False,
) -> StepResult:
    """One projUNN step of a sharded weight: this process's part of the tall view ``U`` (n×p, n ≥ p) moves along ``Δ``.

    Parameters
    ----------
    U, delta : arrays
        ``layout="rows"``: this process's rows of ``U`` and ``Δ`` (n_r×p);
        ``layout="columns"``: its columns (n×p_c), the adjoint of a wide weight's rows.
    comm : Collectives
        The processes that share the weight.
    rank, method, sketch, key, basis, error, out, skip_nonfinite
        As in the one-process step of the optimizer adapters: ``method`` one of
        ``"transport"``, ``"project"``, ``"cayley"``; ``sketch`` ``"randomized"``
        (drawn from the counter ``key``, the same on every process) or
        ``"subspace"`` (``basis``: p×k replicated for rows, this process's
        p_c×k for columns); ``error`` sharded like ``Δ``.
    sizes : list of int, optional
        The sharded axis's length on every process (rows: n_r; columns: p_c).
        Default: gathered (one all-gather of one number).

    Returns
    -------
    StepResult
        The new local block (``out`` when given), whether the update was
        finite — decided on replicated factors, so every process decides alike
        and skips together — and the next basis and error buffer.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"sharded.step: layout must be one of {LAYOUTS}; got {layout!r}")
    if sketch not in SKETCHES:
        raise ValueError(f"sharded.step: sketch must be one of {SKETCHES} on sharded weights; got {sketch!r}")
    ctx = context_of(U, delta)
    xp = ctx.xp
    axis = -2 if layout == "rows" else -1
    if sizes is None:
        counts = comm.all_gather(xp.asarray([float(U.shape[axis])], device=ctx.device))
        sizes = [int(float(c)) for c in counts[:, 0]]  # read on the host: shapes must be known
    if error is not None:
        delta = delta + error
    sketcher = _sketch_rows if layout == "rows" else _sketch_columns
    A, B, next_basis = sketcher(ctx, delta, rank, comm, sizes, sketch, key, basis)
    replicated = B if layout == "rows" else A  # NaN anywhere reaches it through the reductions
    finite = xp.all(xp.isfinite(replicated))
    if skip_nonfinite:
        A, B = xp.where(finite, A, xp.zeros_like(A)), xp.where(finite, B, xp.zeros_like(B))
        if next_basis is not None:
            next_basis = xp.where(finite, next_basis, basis)
    next_error = None
    if error is not None:
        left_out = delta - xp.matmul(A, ctx.adjoint(B))
        next_error = xp.where(finite, left_out, error) if skip_nonfinite else left_out
    if method == "project":
        W = (_project_rows(ctx, U, A, B, comm, sizes, out) if layout == "rows"
             else _project_columns(ctx, U, A, B, comm, sizes, out))  # fmt: skip
    else:
        retraction = "exp" if method == "transport" else "cayley"
        W = (_transport_rows(ctx, U, A, B, comm, sizes, retraction, out) if layout == "rows"
             else _transport_columns(ctx, U, A, B, comm, retraction, out))  # fmt: skip
    return StepResult(W, finite, next_basis, next_error)


def initial_basis(like: Any, shape: tuple[int, ...], rank: int, key: Any, comm: Collectives, layout: str, sizes):
    """The first subspace basis of a sharded weight of (global) ``shape``: the one-process draw, this process's part.

    ``like``: an array of the weight's library, dtype and device. Rows layout:
    the whole (p×k) basis, replicated; columns layout: this process's rows of
    it; ``layout="batch"`` (a batch of matrices split on its first axis): this
    process's matrices of it.
    """
    ctx = context_of(like)
    full = orthonormal_basis(ctx, _key_draws(ctx, key, (*shape[:-2], min(shape[-2:]), rank), like.dtype))
    if layout == "rows":
        return full
    start = sum(sizes[: comm.rank])
    return full[start : start + sizes[comm.rank], ...]  # columns: rows of the basis; batch: matrices of it


def unitarity_probe(U: Any, comm: Collectives, *, layout: str, sizes: list[int]) -> Any:
    """``max ‖Uᴴ U z − z‖ / ‖z‖`` over two fixed Gaussian vectors ``z``, for the sharded tall view ``U``: O(n p).

    The probe of ``check=True`` (:func:`unitary_lowrank.project`), with one
    all-reduce of p×2 (rows) or n×2 (columns) and a few numbers. A ``U`` with
    orthonormal columns gives rounding noise; ``E = Uᴴ U − I`` shows as
    ``‖E z‖``, whose mean square is ``‖E‖_F²``. Returns a replicated (1, 2) array.
    """
    ctx = context_of(U)
    xp = ctx.xp
    p = U.shape[-1] if layout == "rows" else sum(sizes)
    z = ctx.backend.normal(xp, (p, 2), U.dtype, seed=0, device=ctx.device)
    if layout == "rows":
        residual = comm.all_reduce(ctx.adjoint(ctx.stream(ctx.adjoint(ctx.stream(U, z)), U))) - z
        squares = xp.sum(xp.abs(residual) ** 2, axis=0, keepdims=True)
    else:
        start = sum(sizes[: comm.rank])
        z_local = z[start : start + U.shape[-1], :]
        Uz = comm.all_reduce(ctx.stream(U, z_local))
        residual = ctx.adjoint(ctx.stream(ctx.adjoint(Uz), U)) - z_local
        squares = comm.all_reduce(xp.sum(xp.abs(residual) ** 2, axis=0, keepdims=True))
    return xp.sqrt(squares / xp.sum(xp.abs(z) ** 2, axis=0, keepdims=True))
