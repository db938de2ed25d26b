"""One call's working context: namespace, backend, device, batch shape and placement, found once and passed down.

Each primitive validates its inputs at the public boundary, then builds one
:class:`Context` from them; everything below (QR, small cores, the rank-r
update) works from it instead of asking again which library, backend, device
or placement its arrays have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._arrays import batch_shape, eps
from ._placement import place
from ._split import ONE, Split
from ._validate import namespace
from .backends import backend_for


class Context:
    """What one call of a primitive works from.

    Attributes
    ----------
    xp : the Array API namespace of the operands
    backend : :class:`~unitary_lowrank.backends.Backend` of the operands
    device : their device
    batch : tuple of int, the broadcast shape of their leading (batch) axes
    complex : bool, the operands are complex
    eps : float, the machine epsilon of their precision
    resident, transfer, readable : where the small cores run and whether a
        value may be read on the host (:func:`~unitary_lowrank._placement.place`)
    split : :class:`~unitary_lowrank._split.Split`, how the operands are spread over
        processes (:data:`~unitary_lowrank._split.ONE`: whole, on this one)
    """

    __slots__ = ("backend", "batch", "complex", "device", "eps", "readable", "resident", "split", "transfer", "xp")

    def __init__(
        self,
        xp: Any,
        backend: Any,
        device: Any,
        batch: tuple[int, ...],
        dtype_facts: tuple[bool, float],
        placement: tuple[bool, Any, bool],
    ) -> None:
        self.xp, self.backend, self.device, self.batch = xp, backend, device, batch
        self.complex, self.eps = dtype_facts
        self.resident, self.transfer, self.readable = placement
        self.split: Split = ONE  # set by context_of for operands split over processes

    def adjoint(self, x: Any) -> Any:
        """``xᴴ`` of an array of the operands' dtype (a transpose for real ones)."""
        t = self.backend.matrix_transpose(self.xp, x)
        return self.xp.conj(t) if self.complex else t

    def stream(self, X: Any, Y: Any) -> Any:
        """``X @ Y`` with one large operand (U, G): the backend may reorient it to its memory order."""
        return self.backend.stream_product(self.xp, X, Y)

    def small(self, function: Any, *arrays: Any, here: bool = False, **options: Any) -> Any:
        """``function(context, *arrays, **options)`` — on the host, in NumPy, where the placement says so.

        For the r×r core of a step: the arrays go to NumPy, ``function`` runs
        there in the same dtype, and the arrays it returns (a tuple) come back.
        ``here=True`` keeps it where the arrays are (a closed form of a few
        elementwise operations).
        """
        if here or self.resident or self.transfer is None:
            return function(self, *arrays, **options)
        to_host, back = self.transfer
        return tuple(back(x) for x in function(self.on_host(), *(to_host(a) for a in arrays), **options))

    def on_host(self) -> Context:
        """The context of this call's small cores moved to the host: NumPy arrays of the same dtype, read freely."""
        import array_api_compat.numpy as host

        from .backends.numpy import BACKEND

        return Context(host, BACKEND, "cpu", self.batch, (self.complex, self.eps), (False, None, True))


#: (namespace id, dtype) → (complex, eps), found once per dtype
_DTYPE_FACTS: dict[Any, tuple[bool, float]] = {}


def context(xp: Any, like: Any, operands: Sequence[Any], batch: tuple[int, ...]) -> Context:
    """The context of a call on ``operands`` (arrays of namespace ``xp``, like ``like``) with batch shape ``batch``."""
    backend = backend_for(like)
    key = (id(xp), like.dtype)  # the namespace first: dtypes of two libraries are never compared
    facts = _DTYPE_FACTS.get(key)
    if facts is None:
        facts = _DTYPE_FACTS[key] = (xp.isdtype(like.dtype, "complex floating"), eps(xp, like.dtype))
    return Context(xp, backend, backend.device(like), batch, facts, place(backend, like, operands))


def context_of(*operands: Any, split: Split = ONE) -> Context:
    """The context of a call on operands validated already (an optimizer adapter's own step, a test).

    ``split``: how they are spread over processes (the operands are then this process's blocks).
    """
    ctx = context(namespace("step", operand=operands[0]), operands[0], operands, batch_shape(*operands))
    ctx.split = split
    return ctx
