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

This module holds no algebra of its own: :func:`step` is the optimizer
adapters' one step (:func:`unitary_lowrank._adapters.step`), with the layout
described by a :class:`~unitary_lowrank._split.Split` in the call's context,
through which the kernels (sketch, transport, project) reach the collectives.
A :class:`Collectives` object says how to reduce and gather; :class:`Local` is
the one-process case, and :mod:`unitary_lowrank.backends.torch.distributed`
has the ``torch.distributed`` one, which ``ProjUNN`` uses for FSDP2's
``DTensor`` parameters. Results equal the one-process steps to rounding (the
test suite holds them to 1e-12 in double precision), not bit for bit: a TSQR
rounds differently from one Householder QR.
"""

from __future__ import annotations

from typing import Any, Literal

from . import _adapters
from ._adapters import SPLIT_SKETCHES, Options, StepResult
from ._arrays import Array
from ._context import context_of
from ._linalg import tsqr
from ._split import Collectives, Local, Split

__all__ = [
    "Collectives",
    "Local",
    "initial_basis",
    "probe_weight",
    "shard_sizes",
    "split_of",
    "step",
    "tsqr",
    "unitarity_probe",
]

#: How the tall view ``U`` (n×p, n ≥ p) is laid out: its rows split over the processes, or its columns
Layout = Literal["rows", "columns"]
LAYOUTS: tuple[Layout, ...] = ("rows", "columns")


def shard_sizes(n: int, size: int) -> list[int]:
    """Rows per process when ``n`` rows are split over ``size`` processes by ``torch.chunk``'s rule, as FSDP2 shards.

    Chunks of ⌈n/size⌉ rows, the last ones shorter or empty (n = 6 on 4: 2, 2, 2, 0).
    """
    chunk = -(-n // size) if n else 0
    return [max(0, min(chunk, n - r * chunk)) for r in range(size)]


def split_of(comm: Collectives, layout: Layout | Literal["batch"], sizes: list[int]) -> Split:
    """The :class:`~unitary_lowrank._split.Split` of a tall view laid out by ``layout`` (or a batch split)."""
    if layout not in (*LAYOUTS, "batch"):
        raise ValueError(f"sharded: layout must be one of {(*LAYOUTS, 'batch')}; got {layout!r}")
    return Split(comm, {"rows": "n", "columns": "p", "batch": "batch"}[layout], tuple(sizes))  # type: ignore[arg-type]


def step(
    U: Array,
    delta: Array,
    comm: Collectives,
    *,
    layout: Layout,
    rank: int | str,
    method: str = "transport",
    retraction: str = "exp",
    sketch: str = "randomized",
    key: Any = None,
    basis: Array | None = None,
    error: Array | None = None,
    sizes: list[int] | None = None,
    out: Array | None = None,
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
    rank, method, retraction, sketch, key, basis, error, out, skip_nonfinite
        As in the one-process step of the optimizer adapters: ``method``
        ``"transport"`` (``retraction`` ``"exp"`` or ``"cayley"``) or
        ``"project"``; ``sketch`` ``"randomized"``
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
        finite — agreed on by all processes (one all-reduce), so that all skip
        together — and the next basis and error buffer.
    """
    options = check("sharded.step", rank=rank, method=method, retraction=retraction, sketch=sketch)
    if sizes is None:
        axis = -2 if layout == "rows" else -1
        ctx = context_of(U)
        counts = comm.all_gather(ctx.xp.asarray([float(U.shape[axis])], device=ctx.device))
        sizes = [int(float(c)) for c in counts[:, 0]]  # read on the host: shapes must be known
    split = split_of(comm, layout, sizes)
    return _adapters.step(
        U, delta, options, key=key, basis=basis, error=error, out=out, skip_nonfinite=skip_nonfinite, split=split
    )


def check(where: str, **values: Any) -> Options:
    """:meth:`~unitary_lowrank._adapters.Options.checked`, and a sketch that a split weight can take."""
    options = Options.checked(where, _adapters.LOW_RANK_METHODS, **values)
    if options.sketch not in SPLIT_SKETCHES:
        raise ValueError(f"{where}: sketch must be one of {SPLIT_SKETCHES} on sharded weights; got {options.sketch!r}")
    return options


def initial_basis(
    like: Array, shape: tuple[int, ...], rank: int | str, key: Any, comm: Collectives, layout: str, sizes: Any
) -> Array:
    """The first subspace basis of a sharded weight of (global) ``shape``: the one-process draw, this process's part.

    ``like``: this process's block of the weight (as laid out: rows of the
    weight for ``"rows"`` and ``"batch"``, or of its tall view for
    ``"columns"``). Rows layout: the whole (p×k) basis, replicated; columns
    layout: this process's rows of it; ``layout="batch"`` (a batch of matrices
    split on its first axis): this process's matrices of it.
    """
    return _adapters.initial_basis(like, rank, key, split_of(comm, layout, sizes))  # type: ignore[arg-type]


def unitarity_probe(U: Array, comm: Collectives, *, layout: Layout, sizes: list[int]) -> Array:
    """``max ‖Uᴴ U z − z‖ / ‖z‖`` over two fixed Gaussian vectors ``z``, for the sharded tall view ``U``: O(n p).

    The probe of ``check=True`` (:func:`unitary_lowrank.project`), with one
    all-reduce of p×2 (rows) or n×2 (columns) and a few numbers. A ``U`` with
    orthonormal columns gives rounding noise; ``E = Uᴴ U − I`` shows as
    ``‖E z‖``, whose mean square is ``‖E‖_F²``. Returns a replicated (1, 2) array.
    """
    return _probe(U, split_of(comm, layout, sizes))


def probe_weight(W: Array, split: Split) -> Array:
    """:func:`unitarity_probe` of a weight split over processes, from this process's block ``W`` (of any shape)."""
    n, p = split.shape(W)
    return _probe(W if p <= n else context_of(W).adjoint(W), split.tall(n, p))


def _probe(U: Array, split: Split) -> Array:
    ctx = context_of(U, split=split)
    xp = ctx.xp
    z = split.cut(ctx.backend.normal(xp, (split.shape(U)[1], 2), U.dtype, seed=0, device=ctx.device), "p")
    UhUz = split.sum(ctx.adjoint(ctx.stream(ctx.adjoint(split.sum(ctx.stream(U, z), "p")), U)), "n")
    squares = split.sum(xp.sum(xp.abs(UhUz - z) ** 2, axis=0, keepdims=True), "p")
    return xp.sqrt(squares / split.sum(xp.sum(xp.abs(z) ** 2, axis=0, keepdims=True), "p"))
