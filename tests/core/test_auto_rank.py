"""``rank="auto"``, the default rank: the shape's rule, and steps of it against dense references.

A rank-deficient update of rank r ≤ k is sketched exactly, so the default step of
such an update is the transport of the whole update: checked against
``expm(skew(Δ Uᴴ)) U`` computed here with SciPy in double precision, in every
dtype, for square, tall, wide and batched weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, EPS, dense_transport_left, gaussian, haar, tall

from unitary_lowrank._adapters import Options, basis_shape, check_rank, initial_basis, rank_of, step


@pytest.mark.parametrize(
    ("shape", "k"),
    [
        ((0, 0), 0),
        ((3, 0), 0),
        ((1, 1), 1),
        ((16, 16), 1),
        ((31, 31), 1),
        ((32, 32), 2),
        ((64, 64), 4),
        ((100, 40), 2),
        ((40, 100), 2),
        ((256, 256), 16),
        ((511, 511), 31),
        ((512, 512), 32),
        ((4096, 4096), 32),
        ((4096, 256), 16),
        ((7, 5, 64, 64), 4),
    ],
)
def test_auto_rank_is_the_shapes_rule(shape, k):
    assert rank_of("auto", shape) == k
    assert rank_of(3, shape) == 3  # an explicit rank is kept as given
    check_rank("here", "W", shape, "auto")  # "auto" always fits, an empty matrix included


def test_the_default_options_are_auto_and_refuse_other_words():
    assert Options().rank == "auto" and Options.checked("here").rank == "auto"
    for bad in ("Auto", "full", 2.0, None):
        with pytest.raises(ValueError, match="rank must be an int ≥ 1 or 'auto'"):
            Options.checked("here", rank=bad)
    # the dense step takes no rank: its default passes, an explicit one (1 included) is refused
    assert Options.checked("here", method="dense").rank == "auto"
    with pytest.raises(ValueError, match="method='dense' ignores rank=1"):
        Options.checked("here", method="dense", rank=1)


#: (n, p, batch, rank of the update) — the auto rank k is 4, 2, 3 and 2 here: the update's rank is ≤ k
CASES = [(64, 64, (), 3), (100, 40, (), 2), (40, 100, (), 1), (48, 48, (2,), 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "p", "batch", "r"), CASES)
@pytest.mark.parametrize("sketch", ["randomized", "svd"])
def test_default_step_of_a_rank_deficient_update_is_the_dense_transport(n, p, batch, r, sketch, dtype, rng):
    W = haar(max(n, p), dtype, rng, batch=batch, p=min(n, p))
    W = W if n >= p else np.swapaxes(W, -1, -2).conj().copy()
    delta = (gaussian(batch + (n, r), dtype, rng) @ gaussian(batch + (r, p), dtype, rng) * 0.05).astype(dtype)
    assert r <= rank_of("auto", W.shape)
    result = step(W, delta, Options.checked("here", sketch=sketch), key=5)
    tall_W, tall_delta = tall(W).astype(np.complex128), tall(delta).astype(np.complex128)
    # transport of the whole update: A Bᴴ = Δ, as A = Δ, B = I's columns (dense reference, double precision)
    identity = np.broadcast_to(np.eye(tall_W.shape[-1]), tall_delta.shape[:-2] + (tall_W.shape[-1],) * 2)
    expected = dense_transport_left(tall_W, tall_delta, identity)
    assert np.abs(tall(result.weight) - expected).max() <= 300 * EPS[dtype]
    assert bool(np.all(result.finite))


@pytest.mark.parametrize("dtype", ["float32", "complex128"])
def test_default_subspace_basis_has_the_auto_rank(dtype, rng):
    W = haar(64, dtype, rng, batch=(2,), p=40)  # (2, 64, 40): k = 2
    Q = initial_basis(W, "auto", 3)
    assert Q.shape == basis_shape(W.shape, "auto") == (2, 40, 2)
    result = step(W, gaussian(W.shape, dtype, rng, 0.1), Options.checked("here", sketch="subspace"), key=None, basis=Q)
    assert result.basis.shape == Q.shape


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_default_step_leaves_a_zero_update_inside_a_batch_exactly(dtype, rng):
    """A batch of three 48×48 weights (k = 3): rank-1 and repeated-column updates around a zero one. The zero one's
    weight comes back bit for bit; the others are the dense transport of their update."""
    W = haar(48, dtype, rng, batch=(3,))
    u, v = gaussian((3, 48, 1), dtype, rng), gaussian((3, 1, 48), dtype, rng)
    delta = (0.05 * u @ v).astype(dtype)  # rank 1
    delta[1] = 0
    delta[2] = np.repeat(delta[2][:, :1], 48, axis=1)  # 48 equal columns
    result = step(W, delta, Options.checked("here"), key=9)
    assert np.array_equal(result.weight[1], W[1])
    identity = np.broadcast_to(np.eye(48), (3, 48, 48))
    expected = dense_transport_left(W.astype(np.complex128), delta.astype(np.complex128), identity)
    assert np.abs(result.weight - expected)[[0, 2]].max() <= 300 * EPS[dtype]
    assert bool(np.all(result.finite))
