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

__all__ = ["SYNCHRONIZING", "VIEWS", "operators"]

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
