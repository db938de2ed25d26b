"""Which aten operators a call issues: the check that a step stays on the device.

A GPU step stalls wherever it reads a value back to the host (``.item()``, a
value-dependent branch) or calls a factorization that checks its status there
(cuSOLVER's ``eigh``/``svd``). Those show as particular aten operators, on the
CPU as on a GPU, so a ``TorchDispatchMode`` log of one eager call tells, without
a GPU, whether the call would synchronize. Used by ``tests/core/test_resident.py`` and
``benchmarks/fixed_cost.py``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SYNCHRONIZING", "VIEWS", "CollectiveLog", "operators"]

#: Operators that read a value back to the host, or run a LAPACK-style factorization that checks its status there
#: (``linalg_matrix_exp``: only the dense reference step may).
SYNCHRONIZING = frozenset(
    {
        "_local_scalar_dense",
        "is_nonzero",
        "item",
        "equal",
        "nonzero",
        "_linalg_check_errors",
        "_linalg_eigh",
        "_linalg_svd",
        "linalg_eig",
        "linalg_matrix_exp",
    }
)

#: Operators that make views (no kernel, no copy): left out of the operator counts.
VIEWS = frozenset(
    {
        "view",
        "t",
        "transpose",
        "expand",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "permute",
        "alias",
        "as_strided",
        "_unsafe_view",
        "detach",
        "_reshape_alias",
        "unbind",
        "split",
        "diagonal",
        "view_as_real",
        "view_as_complex",
        "_conj",
        "conj",
        "_neg_view",
        "real",
        "imag",
        "lift_fresh",
    }
)


class _Log(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def operators(function: Callable[[], object]) -> collections.Counter[str]:
    """The aten operators (by name, with counts) of one call of ``function``, after a warm-up call.

    The warm-up fills what the first call builds once (buffers, caches), so the
    log shows the steady state.
    """
    function()
    log = _Log()
    with log:
        function()
    return log.counts


class CollectiveLog(TorchDispatchMode):
    """Every collective issued inside the block, with its tensors' sizes: ``calls``, a list of (name, numels, bytes).

    ``bytes`` is what this process puts in: the smallest of the call's tensors
    (an all-gather's input, not its output). Collectives that ``DTensor``
    issues on its own are seen too: the log steps aside for ``DTensor``
    operators (returns ``NotImplemented``), which then run as plain tensor
    operations and collectives and come back through it.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch.oplog import CollectiveLog
    >>> with CollectiveLog() as log:
    ...     _ = torch.ones(3) + 1
    >>> log.calls
    []
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[int], int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import sys

        distributed = sys.modules.get("torch.distributed.tensor")
        if distributed is not None and any(issubclass(t, distributed.DTensor) for t in types):
            return NotImplemented
        name = str(func)
        if name.startswith(("c10d", "_c10d_functional", "c10d_functional")):
            tensors = list(_tensors(args))
            sent = min((t.numel() * t.element_size() for t in tensors), default=0)
            self.calls.append((name, [t.numel() for t in tensors], sent))
        return func(*args, **(kwargs or {}))


def _tensors(args):
    import torch

    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, list | tuple):
            yield from _tensors(a)
