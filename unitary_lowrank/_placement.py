"""Where a step's small r×r work runs, decided once per call: :func:`place`.

A step reduces an n×p problem to r×r cores (r ≤ 2k): an eigendecomposition or
SVD and a few dozen elementwise operations. They can run

- *here*, with the arrays' own library (NumPy, a CPU tensor, JAX, ...);
- *on the host*, in NumPy, when the arrays live on a GPU: one round trip
  instead of dozens of kernel launches and small cuSOLVER calls that wait for
  the device (:meth:`~unitary_lowrank.backends.Backend.host_transfer`);
- *resident*: on the device as a fixed number of Jacobi sweeps, with no host
  round trip and no LAPACK-style eigh/svd (:mod:`~unitary_lowrank._jacobi`),
  while a CUDA graph is being captured or inside :func:`device_resident`.

Whether a value may be read on the host to choose a branch (a NumPy array, a
CPU tensor outside ``torch.compile``) is decided here too. Closed forms for
tiny cores (a real 2×2 rotation or polar factor) always run where the arrays
are: the callers say so with ``here=True``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

#: Set by :func:`device_resident`: run every step as a captured GPU step runs.
_FORCED_RESIDENT = [False]


@contextlib.contextmanager
def device_resident() -> Iterator[None]:
    """Within this block, steps run as they run inside a compiled or captured GPU step: nothing goes to the host.

    The r×r cores of :func:`~unitary_lowrank.project`,
    :func:`~unitary_lowrank.transport` and :func:`~unitary_lowrank.sketch`
    run as a fixed number of Jacobi sweeps in
    array operations on the arrays' device instead of LAPACK/cuSOLVER ``eigh``
    and ``svd`` (which check their status on the host), batched QRs stay on the
    device, and no branch reads a value. This is chosen automatically while
    torch tensors are captured into a CUDA graph; the block makes it testable
    anywhere (CPU included: same operations), lets a GPU user opt into it
    eagerly, and makes a ``torch.compile``-d step sync-free (compile inside
    the block; Inductor then takes minutes: the sweeps are unrolled).

    Accuracy is that of the LAPACK path (the test suite holds both to the
    same dense references). Cost: the sweeps are thousands of small array
    operations (r = 8: 7 rounds of ~25 operations, 10 sweeps in single and 14
    in double precision), for a captured graph rather than eager use. The
    value checks asked for with ``check_finite=True`` still read back to the
    host (the optimizer adapters pass ``False``), and so do the dense tools
    (:func:`~unitary_lowrank.polar`'s singular warning,
    :func:`~unitary_lowrank.reorthonormalize`'s convergence loop).

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> U = ul.random_unitary(16, dtype="float64", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((16, 4)), rng.standard_normal((16, 4))
    >>> with ul.device_resident():
    ...     V = ul.transport(U, A, B)
    >>> bool(np.allclose(V, ul.transport(U, A, B), atol=1e-12))
    True
    """
    previous = _FORCED_RESIDENT[0]
    _FORCED_RESIDENT[0] = True
    try:
        yield
    finally:
        _FORCED_RESIDENT[0] = previous


def place(backend: Any, like: Any, operands: Sequence[Any]) -> tuple[bool, Any, bool]:
    """``(resident, transfer, readable)`` for a call on ``operands`` (arrays of ``backend``, like ``like``).

    resident
        The cores stay on the device as Jacobi sweeps and no branch reads a
        value: inside :func:`device_resident`, or while ``like``'s device
        records a graph (a CUDA-graph capture, where cuSOLVER's status checks
        would read back to the host). Not chosen by itself under
        ``torch.compile``: the unrolled sweeps make a graph of thousands of
        operators, which Inductor takes many minutes to compile (measured on
        the CPU: 7.5 minutes for one k = 4 ``transport``).
    transfer
        ``(to_numpy, back)`` when the backend would rather run small cores on
        the host (arrays on a GPU, no autograd graph through them), else
        ``None``. A resident call ignores it for the cores themselves.
    readable
        A value can be read on the host to pick a branch without stalling a
        device or breaking a trace (NumPy; a CPU tensor outside
        ``torch.compile``); never in a resident call.
    """
    if _FORCED_RESIDENT[0]:
        return True, backend.host_transfer(operands), False
    resident = backend.is_capturing(like)
    return resident, backend.host_transfer(operands), not resident and backend.reads_values(like)
