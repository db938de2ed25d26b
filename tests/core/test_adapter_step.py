"""The optimizer adapters' shared step (``unitary_lowrank._adapters``): the subspace sketch and error feedback.

References are computed here with NumPy in double precision: the projection
``P Pᴴ Δ`` with ``P`` an orthonormal basis of ``Δ Q`` from ``numpy.linalg.qr``,
and the dense steps of ``conftest``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, EPS, dense_transport_left, gaussian, haar, tall

from unitary_lowrank._adapters import Options, basis_shape, initial_basis, step

#: (n, p, k, batch) — square, tall, wide and batched weights
SHAPES = [(24, 24, 2, ()), (30, 8, 3, ()), (8, 30, 3, ()), (10, 10, 1, (3,))]


def _projection(delta: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``P Pᴴ Δ`` with ``P`` an orthonormal basis of ``Δ Q`` (tall orientation), in double precision."""
    wide = delta.astype(np.complex128)
    P, _ = np.linalg.qr(wide @ Q.astype(np.complex128))
    return P @ (np.swapaxes(P, -1, -2).conj() @ wide)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "p", "k", "batch"), SHAPES)
def test_subspace_step_is_the_transport_of_the_projected_update(n, p, k, batch, dtype, rng):
    """One step with ``sketch="subspace"`` is ``transport(W, ·)`` of ``P Pᴴ Δ``, ``P = orth(Δ Q)``: dense reference."""
    W = haar(max(n, p), dtype, rng, batch=batch, p=min(n, p))
    W = W if n >= p else np.swapaxes(W, -1, -2).conj().copy()
    delta = gaussian(batch + (n, p), dtype, rng, 0.1)
    Q = initial_basis(W, k, 7)
    assert Q.shape == basis_shape(W.shape, k)
    result = step(W, delta, Options(rank=k, method="transport", sketch="subspace"), key=None, basis=Q)
    tall_W, tall_delta = tall(W), tall(delta)
    update = _projection(tall_delta, Q)  # A Bᴴ, rank k
    if np.dtype(dtype).kind == "f":
        update = update.real
    U, S, Vh = np.linalg.svd(update)
    A, B = U[..., :k] * S[..., None, :k], np.swapaxes(Vh[..., :k, :], -1, -2).conj()
    expected = dense_transport_left(tall_W, A, B)
    error = np.abs(tall(result.weight) - expected).max()
    assert error <= 200 * EPS[dtype]
    # the next basis spans Δᴴ P, orthonormal
    Q_next = result.basis
    assert np.abs(np.swapaxes(Q_next, -1, -2).conj() @ Q_next - np.eye(k)).max() <= 50 * EPS[dtype]


def test_subspace_iteration_finds_the_dominant_subspace(rng):
    """Steps on a fixed Δ with a spectral gap are a block power iteration: the sketch becomes the best rank-k one."""
    n, k = 40, 3
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sigma = np.concatenate([[3.0, 2.0, 1.5], 0.5 * 0.9 ** np.arange(n - 3)])
    delta = (U * sigma) @ V.T
    W = haar(n, "float64", rng)
    Q = initial_basis(W, k, 0)
    for _ in range(40):
        Q = step(W, delta, Options(rank=k, method="transport", sketch="subspace"), key=None, basis=Q).basis
    best = (U[:, :k] * sigma[:k]) @ V[:, :k].T
    assert np.abs(_projection(delta, Q) - best).max() <= 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_deficient_zero_and_nonfinite_updates(dtype, rng):
    """A rank-1 Δ sketched at rank 4 gives finite factors; a zero or NaN Δ leaves weight, basis and buffer alone."""
    n, k = 16, 4
    W = haar(n, dtype, rng, batch=(3,))
    delta = gaussian((3, n, 1), dtype, rng) @ gaussian((3, 1, n), dtype, rng)
    delta[1] = 0  # a zero matrix inside the batch
    delta[2, 0, 0] = np.nan  # and a non-finite one
    Q = initial_basis(W, k, 1)
    E = gaussian((3, n, n), dtype, rng, 1e-3)
    result = step(
        W, delta, Options(rank=k, method="project", sketch="subspace"), key=None, basis=Q, error=E, skip_nonfinite=True
    )
    assert np.isfinite(result.weight).all() and np.isfinite(result.basis).all() and np.isfinite(result.error).all()
    assert not bool(result.finite)  # one matrix held NaN: the whole update is skipped, as the torch adapter counts it
    assert np.array_equal(result.weight, W) and np.array_equal(result.basis, Q) and np.array_equal(result.error, E)
    finite = step(
        W[:2],
        delta[:2],
        Options(rank=k, method="project", sketch="subspace"),
        key=None,
        basis=Q[:2],
        skip_nonfinite=True,
    )
    assert bool(finite.finite) and np.isfinite(finite.weight).all()
    assert np.array_equal(finite.weight[1], W[1]) and np.array_equal(finite.basis[1], Q[1])  # zero Δ: unchanged
    U = finite.weight[0]
    assert np.abs(U.conj().T @ U - np.eye(n)).max() <= 30 * EPS[dtype]


@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
@pytest.mark.parametrize(("n", "p"), [(20, 20), (20, 6), (6, 20)])
def test_error_feedback_keeps_what_the_step_left_out(sketch, n, p, rng):
    """``E ← Δ + E − A Bᴴ``: with the step's own factors, the buffer plus A Bᴴ is exactly what was sketched."""
    k = 2
    W = haar(max(n, p), "complex128", rng, p=min(n, p))
    W = W if n >= p else W.conj().T.copy()
    delta, E = gaussian((n, p), "complex128", rng, 0.1), gaussian((n, p), "complex128", rng, 0.01)
    Q = initial_basis(W, k, 2) if sketch == "subspace" else None
    result = step(W, delta, Options(rank=k, method="transport", sketch=sketch), key=3, basis=Q, error=E)
    sketched = tall(delta + E)
    kept = sketched - tall(result.error)  # = A Bᴴ, of rank k
    assert np.linalg.matrix_rank(kept, tol=1e-10) == k
    if sketch == "subspace":
        assert np.abs(kept - _projection(sketched, Q)).max() <= 1e-13
    # the weight moved along exactly that rank-k part: the step without feedback on Δ' = A Bᴴ gives the same W
    again = step(
        W, tall(kept) if n >= p else tall(kept).conj().T, Options(rank=k, method="transport", sketch="svd"), key=0
    )
    assert np.abs(again.weight - result.weight).max() <= 1e-13


# -- the options every adapter shares ---------------------------------------------------------


def test_options_refuse_bad_values_and_what_a_method_would_ignore():
    assert Options.checked("here") == Options()
    with pytest.warns(DeprecationWarning, match="method='cayley' is now method='transport', retraction='cayley'"):
        old = Options.checked("here", method="cayley")
    assert old == Options(method="transport", retraction="cayley")
    for bad, message in [
        ({"rank": 0}, "rank must be an int ≥ 1"),
        ({"rank": True}, "rank must be an int ≥ 1"),
        ({"method": "qr"}, "method must be one of"),
        ({"sketch": "qr"}, "sketch must be one of"),
        ({"reorthonormalize_every": -1}, "reorthonormalize_every must be an int ≥ 0 or None"),
        ({"error_feedback": 1}, "error_feedback must be True or False"),
        ({"method": "dense", "rank": 4}, "method='dense' ignores rank=4; leave it at the default"),
        ({"method": "dense", "error_feedback": True}, "method='dense' ignores error_feedback=True"),
        ({"method": "project", "retraction": "cayley"}, "method='project' ignores retraction='cayley'"),
        ({"retraction": "polar"}, "retraction must be one of"),
    ]:
        with pytest.raises(ValueError, match=f"^here: {message}"):
            Options.checked("here", **bad)
    with pytest.raises(TypeError, match="unknown option"):
        Options.checked("here", ranks=2)
    with pytest.raises(ValueError, match="method must be one of"):
        Options.checked("here", ("transport", "project"), method="dense")


def test_sharded_step_refuses_the_sketches_that_need_a_whole_matrix(rng):
    from unitary_lowrank import sharded

    U = haar(8, "float64", rng)
    with pytest.raises(ValueError, match=r"sketch must be one of .* on sharded weights; got 'column'"):
        sharded.step(U, U, sharded.Local(), layout="rows", rank=1, sketch="column", sizes=[8])
    with pytest.raises(ValueError, match="layout must be one of"):
        sharded.step(U, U, sharded.Local(), layout="diagonal", rank=1, sizes=[8])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "p", "k"), [(n, p, k) for n, p, k, batch in SHAPES if not batch])
def test_sharded_step_on_one_process_equals_the_adapter_step(n, p, k, dtype, rng):
    """``sharded.step`` on one process (``Local``), both layouts: the adapters' step, to rounding (a one-block TSQR)."""
    from unitary_lowrank import sharded

    W = haar(max(n, p), dtype, rng, p=min(n, p))  # the tall view
    delta = gaussian(W.shape, dtype, rng, 0.1)
    key = np.array([4, 2])
    for method in ("transport", "project"):
        expected = step(W, delta, Options(rank=k, method=method), key=key)
        for layout, size in (("rows", W.shape[0]), ("columns", W.shape[1])):
            result = sharded.step(
                W, delta, sharded.Local(), layout=layout, rank=k, method=method, key=key, sizes=[size]
            )
            assert np.abs(result.weight - expected.weight).max() <= 100 * EPS[dtype]
