"""Where a step's operands live: whole on one process, or split over processes by the rows or columns of ``U``.

Every step works on the tall view ``U`` (n×p, n ≥ p) of a weight, and every
operand of it follows one of ``U``'s two axes with its rows: ``A``, ``U B``,
the transport's basis ``Q``, a sketch's range ``Y`` follow ``n``; ``B``, the
test matrix ``Ω``, the subspace basis, ``Uᴴ A`` follow ``p``. When the
processes that share a weight each hold a block of ``U``'s rows (FSDP2's
``Shard(0)`` of a square or tall weight) or of its columns (of a wide one:
its adjoint's rows), every operand that follows the split axis is split the
same way and every other one is replicated. The step's algebra then needs
four things from the layout, and only these (:class:`Split`):

- a product that contracts the split axis (``Aᴴ U`` over ``n`` when the rows
  are split) is a partial sum on each process: :meth:`Split.sum` all-reduces it;
- a QR of a matrix whose rows are split is a TSQR
  (:func:`~unitary_lowrank._linalg.qr_along`, with the factorizations);
- the power-of-two scale of such a matrix, and its largest entry, are maxima
  over all processes (one scalar all-reduce);
- a Gaussian draw that follows the split axis is drawn whole and cut, so that
  every layout draws the same matrix.

On one process (:data:`ONE`) each of these is the plain operation: the step
is the same code, and its results are bit for bit those of the one-process
kernels. Communication stays O(N k): no collective carries more than
max(n, p)·(k + 10) numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._arrays import Array, real_dtype, scale_exponent
from ._counter import is_key, key_normal

#: One of ``U``'s axes (``U`` is n×p, n ≥ p): the one an operand's rows follow, or the one split over processes
Axis = Literal["n", "p"]


class Context(Protocol):
    """What these operations read of a call's :class:`~unitary_lowrank._context.Context` (which holds the split)."""

    xp: Any
    backend: Any
    device: Any


class Collectives(Protocol):
    """How the processes that share a weight reduce and gather (one process group)."""

    index: int  #: this process's position in the group, 0 … size − 1
    size: int  #: the number of processes

    def all_reduce(self, x: Array, op: str = "sum") -> Array:
        """``x`` summed (``op="sum"``) or maximized (``"max"``) over the processes; every process gets it."""
        ...

    def all_gather(self, x: Array) -> Array:
        """The processes' ``x`` (equal shapes), stacked on a new leading axis in process order."""
        ...


class Local:
    """The collectives of one process: reductions and gathers that change nothing."""

    index, size = 0, 1

    def all_reduce(self, x: Array, op: str = "sum") -> Array:
        return x

    def all_gather(self, x: Array) -> Array:
        return x[None, ...]


@dataclass(frozen=True)
class Split:
    """How ``U`` (n×p, n ≥ p) is spread over the processes of ``comm``.

    ``axis``: ``"n"`` (each process holds some of ``U``'s rows), ``"p"`` (some
    of its columns), ``"batch"`` (a batch of matrices split on its first axis:
    each process steps its own matrices, and the processes agree only on
    whether an update was finite) or ``None`` (one process). ``sizes``: the
    split axis's length on every process.
    """

    comm: Any = field(default_factory=Local)  # a Collectives
    axis: Axis | Literal["batch"] | None = None
    sizes: tuple[int, ...] = ()

    def adjoint(self) -> Split:
        """The split of ``Uᴴ``: its rows are ``U``'s columns."""
        swapped = {"n": "p", "p": "n"}
        return Split(self.comm, swapped.get(self.axis, self.axis), self.sizes)  # type: ignore[arg-type]

    def tall(self, n: int, p: int) -> Split:
        """The split of the tall view of a weight of whole shape (n, p): of ``Wᴴ`` when the weight is wide."""
        return self.adjoint() if p > n else self

    def whole_batch(self, X: Array) -> tuple[int, ...]:
        """The batch shape of the whole weight whose block is ``X``."""
        if self.axis == "batch":
            return (sum(self.sizes), *X.shape[1:-2])
        return tuple(X.shape[:-2])

    def cut(self, x: Array, rows: Axis) -> Array:
        """This process's part of the whole ``x``, whose rows follow ``U``'s axis ``rows``: its rows, or matrices."""
        start = sum(self.sizes[: self.comm.index])
        if self.axis == "batch":
            return x[start : start + self.sizes[self.comm.index], ...]
        if rows == self.axis:
            return x[..., start : start + self.sizes[self.comm.index], :]
        return x

    def shape(self, X: Array) -> tuple[int, int]:
        """The whole (n, p) of the local block ``X`` of ``U`` (or of an update shaped like it)."""
        n, p = int(X.shape[-2]), int(X.shape[-1])
        if self.axis == "n":
            return sum(self.sizes), p
        if self.axis == "p":
            return n, sum(self.sizes)
        return n, p

    def sum(self, x: Array, over: Axis) -> Array:
        """The total of ``x``, a product that contracted ``U``'s axis ``over`` on this process's block."""
        return self.comm.all_reduce(x) if over == self.axis else x

    def finite(self, ctx: Context, A: Array, B: Array) -> Array:
        """Whether the factors ``A``, ``B`` of an update are finite, as every process sees it (a boolean scalar).

        Split rows (columns): a NaN or Inf anywhere reaches the replicated ``B``
        (``A``) through the reductions of the sketch, so every process decides
        alike from it, with no communication. A batch split over processes: one
        all-reduce of one number.
        """
        xp = ctx.xp
        if self.axis == "n":
            return xp.all(xp.isfinite(B))
        if self.axis == "p":
            return xp.all(xp.isfinite(A))
        finite = xp.all(xp.isfinite(A)) & xp.all(xp.isfinite(B))
        if self.axis is None:
            return finite
        raised = self.comm.all_reduce(xp.reshape(xp.astype(~finite, xp.int32), (1,)))
        return xp.reshape(raised, ()) == 0

    def largest(self, ctx: Context, X: Array, rows: Axis) -> Array:
        """``max |X|`` over the last two axes, shape (..., 1, 1), of ``X`` whose rows follow ``rows``; 0 if empty."""
        xp = ctx.xp
        if X.shape[-2] and X.shape[-1]:
            largest = xp.max(xp.abs(X), axis=(-2, -1), keepdims=True)
        else:  # an empty block holds no entry
            largest = xp.zeros((*X.shape[:-2], 1, 1), dtype=real_dtype(xp, X.dtype), device=ctx.device)
        return self.comm.all_reduce(largest, "max") if rows == self.axis else largest

    def exponent(self, ctx: Context, X: Array, rows: Axis) -> Array:
        """:func:`~unitary_lowrank._arrays.scale_exponent` of the whole ``X`` (rows following ``rows``)."""
        if rows != self.axis:
            return scale_exponent(ctx.xp, X)
        xp = ctx.xp
        largest = self.largest(ctx, X, rows)
        positive = largest > 0
        return xp.where(positive, xp.floor(xp.log2(xp.where(positive, largest, xp.ones_like(largest)))), 0.0 * largest)

    def normal(self, ctx: Context, key: Any, shape: tuple[int, ...], dtype: Any, rows: Axis) -> Array:
        """Gaussian draws of the whole ``shape`` keyed by ``key``: this process's rows of them.

        The same draw on every process and in every layout: a split draw is
        drawn whole and cut.
        """
        if rows != self.axis:
            return key_draws(ctx, key, shape, dtype)
        return self.cut(key_draws(ctx, key, (*shape[:-2], sum(self.sizes), shape[-1]), dtype), rows)


#: Whole matrices on one process: every operation of :class:`Split` is the plain one
ONE = Split()


def key_draws(ctx: Context, key: Any, shape: tuple[int, ...], dtype: Any) -> Array:
    """Gaussian draws of ``shape`` keyed by ``key``: a counter key of the array library, or a key of its own."""
    if is_key(key):
        return key_normal(ctx.xp, key, shape, dtype)
    return ctx.backend.normal(ctx.xp, shape, dtype, seed=key, device=ctx.device)
