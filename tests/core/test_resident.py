"""``ul.device_resident()``: the steps a compiled or captured GPU step runs, checked on the CPU.

Inside the block the r×r cores are Jacobi sweeps and nothing is read back to the
host. These tests hold that path to the dense references of the LAPACK path, and
check with an operator log that one eager step issues none of the operations
that synchronize a GPU. (The whole accuracy suite runs in this mode with
``UL_DEVICE_RESIDENT=1 python -m pytest tests/core/test_steps.py ...``.)
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    dense_project,
    dense_transport,
    dense_transport_left,
    gaussian,
    haar,
    relative_error,
    tolerance,
    unitarity,
)

import unitary_lowrank as ul


@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32", "complex64"])
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_resident_steps_match_dense_references(dtype, k, batch, rng):
    n = 24
    U = haar(n, dtype, rng, batch)
    A, B = gaussian(batch + (n, k), dtype, rng), gaussian(batch + (n, k), dtype, rng)
    A[..., -1] = A[..., 0]  # a repeated column: the rank-deficient core that converges slowest
    with ul.device_resident():
        V_t = ul.transport(U, A, B)
        V_p = ul.project(U, A, B)
        a, b = ul.sketch(A @ np.conj(np.swapaxes(B, -1, -2)), k, seed=0)
    norm = float(np.abs(A).max() * np.abs(B).max() * n)
    for V, reference in ((V_t, dense_transport(U, A, B)), (V_p, dense_project(U, A, B))):
        assert relative_error(V, reference) <= tolerance(dtype, norm)
        assert unitarity(V) <= tolerance(dtype)
    G = A @ np.conj(np.swapaxes(B, -1, -2))  # rank ≤ k: the sketch is exact
    assert relative_error(a @ np.conj(np.swapaxes(b, -1, -2)), G) <= tolerance(dtype)


def test_resident_tall_weights_and_zero_update(rng):
    U = haar(30, "complex128", rng, p=12)
    A, B = gaussian((30, 4), "complex128", rng), gaussian((12, 4), "complex128", rng)
    with ul.device_resident():
        V = ul.transport(U, A, B)
        same = ul.project(U, np.zeros_like(A), B)
    assert relative_error(V, dense_transport_left(U, A, B)) <= 1e-12 and np.array_equal(same, U)


# -- no synchronizing operation -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
@pytest.mark.parametrize("k", [1, 4])
def test_resident_eager_step_issues_no_synchronizing_operation(dtype, k):
    torch = pytest.importorskip("torch")
    from unitary_lowrank.backends.torch import ProjUNN, haar_
    from unitary_lowrank.backends.torch.oplog import SYNCHRONIZING, operators

    t = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    U = haar_(torch.empty(32, 32, dtype=t), generator=generator)
    A, B = torch.randn(32, k, dtype=t, generator=generator), torch.randn(32, k, dtype=t, generator=generator)
    G, key = torch.randn(32, 32, dtype=t, generator=generator), torch.tensor([1, 2, 3])
    W = torch.nn.Parameter(U.clone())
    W.grad = G.clone()
    opt = ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=1e-2, momentum=0.9), rank=k)
    assert "_local_scalar_dense" in SYNCHRONIZING & set(operators(lambda: float(U.abs().sum())))  # the log sees a read
    for name, function in [
        ("transport", lambda: ul.transport(U, A, B, check_finite=False)),
        ("project", lambda: ul.project(U, A, B, check_finite=False)),
        ("sketch", lambda: ul.sketch(G, k, seed=key, check_finite=False)),
        ("ProjUNN(SGD).step", opt.step),
    ]:
        with ul.device_resident():
            found = SYNCHRONIZING & set(operators(function))
        assert not found, f"{name}: {found}"


@pytest.mark.parametrize("dtype", ["float32", "complex64", "complex128"])
def test_resident_step_compiles_and_equals_eager(dtype):
    """Rank-deficient operands (a repeated column of A; A = 0 for one batch member): compiled as eager."""
    torch = pytest.importorskip("torch")
    t = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(3, 20, 20, dtype=t, generator=generator))[0]
    A = torch.randn(3, 20, 2, dtype=t, generator=generator)
    B = torch.randn(3, 20, 2, dtype=t, generator=generator)
    A[..., 1] = A[..., 0]
    A[1] = 0

    def step(U, A, B):
        return ul.transport(U, A, B), ul.project(U, A, B)

    torch._dynamo.reset()
    with ul.device_resident():
        compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(U, A, B)
        eager = step(U, A, B)
    tolerance = 1e-12 if dtype == "complex128" else 1e-5
    for c, e in zip(compiled, eager, strict=True):
        assert bool(torch.isfinite(c).all()) and float((c - e).abs().max()) <= tolerance
        assert torch.equal(c[1], U[1])  # A = 0: U back bit for bit
        assert float(ul.unitarity_error(c).max()) <= 10 * tolerance
