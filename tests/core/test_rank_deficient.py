"""Exactly rank-deficient inputs: finite factors and weights in every dtype, batch shape and backend.

Gradients of exactly low rank are what convolutions with sparse heads, masked
losses and ReLU networks produce. On such input each Householder step of a QR
leaves the next columns' residual at the rounding of the last one's (ε, ε²,
ε³, ...) until it is subnormal, and MKL's complex single-precision QR (torch
on the CPU) then returned Inf and NaN: 816 of 2,240 matrices of the first case
below, every one of the second. The QR now factors ``X + Δ`` with a tiny fixed
shift (``_linalg.generic_shift``); these tests pin the cases that were found and
search for their siblings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import DTYPES, EPS, array_backends, gaussian, haar, to_backend, unitarity
from hypothesis import example, given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul
from unitary_lowrank._context import context_of
from unitary_lowrank._linalg import qr

STEPS = {
    "project": ul.project,
    "transport": ul.transport,
    "cayley": lambda U, A, B: ul.transport(U, A, B, retraction="cayley"),
}


def _finite(*arrays) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in arrays)


def _relative_residual(G, A, B) -> float:
    G, A, B = (np.asarray(x).astype(np.complex128) for x in (G, A, B))
    return float(np.linalg.norm(A @ B.conj().swapaxes(-1, -2) - G) / np.linalg.norm(G))


def test_torch_complex64_rank1_sketch_of_single_row_matrices():
    """The reported case: a batch (16, 7, 8, 8) of rank-1 matrices with one non-zero row (entries ~1e-3)."""
    torch = pytest.importorskip("torch")
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        G = torch.zeros(16, 7, 8, 8, dtype=torch.complex64)
        rows = torch.randint(0, 8, (16, 7), generator=g)
        values = 1e-3 * torch.randn(16, 7, 8, dtype=torch.complex64, generator=g)
        G.scatter_(-2, rows[..., None, None].expand(16, 7, 1, 8), values[..., None, :])
        A, B = ul.sketch(G, 1, seed=seed)
        assert _finite(A, B), f"seed {seed}: non-finite factors"
        assert _relative_residual(G, A, B) <= 1e-5  # rank(G) = 1 = k: the sketch is exact to rounding


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rank8_sketch_of_seventeen_equal_columns(backend, dtype):
    """A 17×17 matrix whose columns are one vector (true rank 1), sketched at rank 8."""
    rng = np.random.default_rng(3)
    for seed in range(10):
        G = np.repeat(gaussian((17, 1), dtype, rng), 17, axis=1)
        if backend == "torch":
            torch = pytest.importorskip("torch")
            G = torch.from_numpy(G)
        for method in ("randomized", "column", "svd"):
            A, B = ul.sketch(G, 8, kind=method, seed=seed)
            assert _finite(A, B), f"{method}, seed {seed}: non-finite factors"
            assert _relative_residual(G, A, B) <= 50 * EPS[dtype]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_steps_with_repeated_columns_stay_unitary(backend, dtype, step):
    """A and B of rank 1 spread over k = 8 equal columns (2k = 16 columns in the QR), batched."""
    rng = np.random.default_rng(7)
    U = haar(17, dtype, rng, batch=(3,))
    A = np.repeat(gaussian((3, 17, 1), dtype, rng), 8, axis=-1)
    B = np.repeat(gaussian((3, 17, 1), dtype, rng), 8, axis=-1)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        U, A, B = (torch.from_numpy(x) for x in (U, A, B))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ul.SingularUpdateWarning)
        V = STEPS[step](U, A, B)
    assert _finite(V)
    assert unitarity(np.asarray(V)) <= 100 * 17 * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_qr_of_a_rank_deficient_block_spans_it_and_keeps_zero_blocks_zero(dtype):
    """Q is orthonormal and spans X to rounding; R = Qᴴ X has exactly zero columns where X does."""
    rng = np.random.default_rng(11)
    X = np.concatenate([np.zeros((40, 3), dtype), np.repeat(gaussian((40, 1), dtype, rng), 5, axis=1)], axis=1)
    Q, R = qr(context_of(X), X)
    assert _finite(Q, R)
    assert np.abs(Q.conj().T @ Q - np.eye(8)).max() <= 20 * EPS[dtype]
    assert np.linalg.norm(Q @ R - X) <= 20 * EPS[dtype] * np.linalg.norm(X)
    assert np.all(R[:, :3] == 0)


def test_a_zero_factor_still_returns_U_bit_for_bit():
    rng = np.random.default_rng(2)
    U = haar(9, "complex64", rng)
    B = np.repeat(gaussian((9, 1), "complex64", rng), 4, axis=1)
    for step in STEPS.values():
        assert np.array_equal(step(U, np.zeros((9, 4), np.complex64), B), U)
        assert np.array_equal(step(U, B, np.zeros((9, 4), np.complex64)), U)


def test_unitary_conv_stack_with_a_ten_logit_head_stays_finite():
    """The reported network: ten UnitaryConv2d(8, 16×16) with MaxMin between, a head keeping 10 coordinates.

    The last layer's gradient has one non-zero row per frequency (rank 1); with ProjUNN(Adam, rank 1) its
    weights were NaN after the first step where it was reported. On this project's CI machine the network
    stayed finite before the fix too (MKL's kernels differ between processors): the sketch and step tests
    above are the ones that failed here; this one guards the whole path.
    """
    torch = pytest.importorskip("torch")
    from torch import nn
    from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d

    class MaxMin(nn.Module):
        def forward(self, x):
            a, b = x[:, 0::2], x[:, 1::2]
            return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)

    g = torch.Generator().manual_seed(0)
    layers = [UnitaryConv2d(8, (16, 16), init="haar", generator=g)]
    for _ in range(9):
        layers += [MaxMin(), UnitaryConv2d(8, (16, 16), init="haar", generator=g)]
    model = nn.Sequential(*layers, nn.Flatten())  # the head reads 10 coordinates of the last convolution's channel 0
    weights = [p for layer in model if isinstance(layer, UnitaryConv2d) for p in layer.unitary_parameters()]
    opt = ProjUNN(torch.optim.Adam([{"params": weights, "unitary": True}], lr=1e-3), rank=1)
    x = torch.randn(16, 8, 16, 16, generator=g)
    labels = torch.randint(0, 10, (16,), generator=g)
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x)[:, :10], labels)
        loss.backward()
        opt.step()
        assert all(bool(torch.isfinite(w).all()) for w in weights)
    y = model(x)
    assert torch.allclose(y.norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-4)  # still norm-preserving


# -- the search for siblings: exactly rank-deficient inputs, every method ----------------------------


def _rank_deficient(shape: tuple[int, ...], structure: str, dtype: str, rng) -> np.ndarray:
    """A batch of (m, l) matrices of exactly low rank, in one of the shapes real gradients take."""
    *batch, m, l = shape
    batch = tuple(batch)
    if structure == "equal_columns":
        return np.repeat(gaussian(batch + (m, 1), dtype, rng), l, axis=-1)
    if structure == "single_row":
        X = np.zeros(shape, dtype)
        X[..., rng.integers(m), :] = gaussian(batch + (l,), dtype, rng)
        return X
    if structure == "rank_two":
        return (gaussian(batch + (m, 2), dtype, rng) @ gaussian(batch + (2, l), dtype, rng)).astype(dtype)
    if structure == "masked":  # a rank-1 product with half the rows zeroed (a mask, a ReLU)
        X = gaussian(batch + (m, 1), dtype, rng) * gaussian(batch + (1, l), dtype, rng)
        X[..., : m // 2, :] = 0
        return X
    return np.zeros(shape, dtype)


#: Examples per run of the search; `UL_RANK_DEFICIENT_EXAMPLES=20000 python -m pytest tests/core/test_rank_deficient.py`
#: runs the long search (its closing note: 20,000 examples, no failure).
_EXAMPLES = int(__import__("os").environ.get("UL_RANK_DEFICIENT_EXAMPLES", "300"))


@settings(max_examples=_EXAMPLES, deadline=None)
@given(
    n=st.integers(1, 24),
    k=st.integers(1, 10),
    batch=st.sampled_from([(), (3,), (2, 3)]),
    dtype=st.sampled_from(["complex64", "complex64", "float32", "complex128", "float64"]),
    structure=st.sampled_from(["equal_columns", "single_row", "rank_two", "masked", "zero"]),
    log_scale=st.floats(-30, 30),
    backend=st.sampled_from(array_backends()),
    method=st.sampled_from(["project", "transport", "cayley", "randomized", "column", "svd"]),
    seed=st.integers(0, 2**16),
)
@example(  # found by the long search: MKL's cgesdd did not converge on the 20×11 sampled columns
    n=20, k=1, batch=(), dtype="complex64", structure="equal_columns", log_scale=0.0, backend="torch",
    method="column", seed=0,
)  # fmt: skip
def test_property_rank_deficient_inputs_give_finite_results(
    n, k, batch, dtype, structure, log_scale, backend, method, seed
):
    if backend not in array_backends():  # an explicit example may name a library this environment lacks
        return
    rng = np.random.default_rng(seed)
    k = min(k, n)
    scale = np.asarray(10.0**log_scale).astype(dtype)
    if method in STEPS:
        U = haar(n, dtype, rng, batch=batch)
        A = _rank_deficient(batch + (n, k), structure, dtype, rng) * scale
        B = _rank_deficient(batch + (n, k), structure, dtype, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ul.SingularUpdateWarning)
            V = STEPS[method](*(to_backend(x, backend) for x in (U, A, B)))
        V = np.asarray(V)
        assert np.all(np.isfinite(V)), "finite rank-deficient factors must give a finite weight"
        assert unitarity(V) <= 100 * n * EPS[dtype]
        return
    G = _rank_deficient(batch + (n, n), structure, dtype, rng) * scale
    A, B = ul.sketch(to_backend(G, backend), k, kind=method, seed=seed)
    A, B = np.asarray(A), np.asarray(B)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B)), "finite G must give finite factors"
    if structure != "rank_two" or k >= 2:  # rank(G) ≤ k: every method is exact to rounding
        norm = np.linalg.norm(G.astype(np.complex128))
        residual = np.linalg.norm(A.astype(np.complex128) @ B.astype(np.complex128).conj().swapaxes(-1, -2) - G)
        assert residual <= 100 * n * EPS[dtype] * norm


@pytest.mark.parametrize("dtype", ["complex64", "float32"])
def test_zero_matrix_inside_a_batch_of_rank_deficient_ones(dtype):
    """A zero gradient beside rank-1 ones in one batch: its factors are zero, its weight comes back bit for bit."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    G = np.zeros((3, 12, 12), dtype)
    v = gaussian((12, 1), dtype, rng)
    G[1] = v @ gaussian((1, 12), dtype, rng)
    G[2] = np.repeat(v, 12, axis=1)
    U = torch.from_numpy(haar(12, dtype, rng, batch=(3,)))
    for method in ("randomized", "column", "svd"):
        A, B = ul.sketch(torch.from_numpy(G), 4, kind=method, seed=0)
        assert _finite(A, B) and not bool((A[0] @ B[0].mH).any())
        for step in STEPS.values():
            V = step(U, A, B)
            assert _finite(V) and torch.equal(V[0], U[0])
