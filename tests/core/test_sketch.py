"""sketch: exact on low-rank input, near-optimal on decaying spectra, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, EPS, RESIDENT, gaussian, haar

import unitary_lowrank as ul

METHODS = ("randomized", "column", "svd")


def low_rank(m, n, rank, dtype, rng, batch=()):
    return (gaussian(batch + (m, rank), dtype, rng) @ gaussian(batch + (rank, n), dtype, rng)).astype(dtype)


def reconstruct(A, B):
    return A.astype(np.complex128) @ np.swapaxes(B, -1, -2).conj().astype(np.complex128)


def decaying(n, spectrum, dtype, rng):
    return (
        (haar(n, "complex128" if dtype.startswith("c") else "float64", rng) * spectrum)
        @ haar(n, "complex128" if dtype.startswith("c") else "float64", rng)
    ).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("m", "n", "true_rank", "k"), [(40, 40, 3, 3), (40, 40, 2, 5), (50, 30, 4, 4), (30, 50, 1, 1)])
def test_exact_on_rank_at_most_k(method, dtype, m, n, true_rank, k, rng):
    G = low_rank(m, n, true_rank, dtype, rng)
    A, B = ul.sketch(G, k, kind=method, seed=1)
    assert A.shape == (m, k) and B.shape == (n, k) and A.dtype == B.dtype == np.dtype(dtype)
    error = np.linalg.norm(reconstruct(A, B) - G) / np.linalg.norm(G)
    assert error <= (1e-10 if EPS[dtype] < 1e-10 else 1e-5)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("decay", ["geometric", "polynomial", "slow"])
def test_near_optimal_on_decaying_spectrum(decay, k, dtype, rng):
    """Frobenius error ≤ 1.5 × the optimal rank-k error (Eckart–Young), defaults, 5 seeds."""
    n = 128
    j = np.arange(n)
    spectrum = {"geometric": 0.85**j, "polynomial": 1.0 / (1 + j) ** 2, "slow": 1.0 / np.sqrt(1 + j)}[decay]
    G = decaying(n, spectrum, dtype, rng)
    optimal = np.sqrt(np.sum(spectrum[k:] ** 2))
    for seed in range(5):
        A, B = ul.sketch(G, k, seed=seed)
        assert np.linalg.norm(reconstruct(A, B) - G) <= 1.5 * optimal


@pytest.mark.parametrize("method", METHODS)
def test_svd_method_is_optimal_and_others_are_close(method, rng):
    n, k = 60, 5
    spectrum = 0.7 ** np.arange(n)
    G = decaying(n, spectrum, "float64", rng)
    A, B = ul.sketch(G, k, kind=method, seed=0)
    optimal = np.sqrt(np.sum(spectrum[k:] ** 2))
    ratio = np.linalg.norm(reconstruct(A, B) - G) / optimal
    assert ratio <= (1 + 1e-10 if method == "svd" else 1.5)
    assert ratio >= 1 - 1e-10  # nothing beats Eckart–Young: a check on the test itself


@pytest.mark.parametrize("method", ["randomized", "column"])
def test_same_seed_same_sketch_different_seed_different(method, rng):
    G = gaussian((30, 30), "float64", rng)
    A1, B1 = ul.sketch(G, 3, kind=method, seed=7)
    A2, B2 = ul.sketch(G, 3, kind=method, seed=7)
    A3, _ = ul.sketch(G, 3, kind=method, seed=8)
    np.testing.assert_array_equal(A1, A2)
    np.testing.assert_array_equal(B1, B2)
    assert not np.array_equal(A1, A3)
    seq1, seq2 = ul.sketch(G, 3, kind=method, seed=(7, 0, 1)), ul.sketch(G, 3, kind=method, seed=(7, 0, 1))
    np.testing.assert_array_equal(seq1[0], seq2[0])


def test_seeded_sketch_is_identical_in_another_process(rng):
    """Data-parallel replicas must draw the same sketch: compare with a fresh interpreter."""
    import subprocess
    import sys

    G = gaussian((25, 25), "complex128", rng)
    A, B = ul.sketch(G, 2, seed=123)
    code = (
        "import sys, numpy as np, unitary_lowrank as ul;"
        "G = np.frombuffer(sys.stdin.buffer.read(), dtype=np.complex128).reshape(25, 25);"
        "A, B = ul.sketch(G, 2, seed=123); sys.stdout.buffer.write(A.tobytes() + B.tobytes())"
    )
    if RESIDENT:  # the child runs the same path as this process
        code = code.replace("A, B = ul.sketch", "ul._placement._FORCED_RESIDENT[0] = True; A, B = ul.sketch")
    out = subprocess.run([sys.executable, "-c", code], input=G.tobytes(), capture_output=True, check=True).stdout
    assert out == A.tobytes() + B.tobytes()


@pytest.mark.parametrize("method", METHODS)
def test_batched_sketch(method, rng):
    G = low_rank(20, 20, 2, "complex64", rng, batch=(3, 2))
    A, B = ul.sketch(G, 2, kind=method, seed=0)
    assert A.shape == (3, 2, 20, 2) and B.shape == (3, 2, 20, 2)
    assert np.linalg.norm(reconstruct(A, B) - G) / np.linalg.norm(G) <= 1e-5


def test_power_iterations_zero_and_more(rng):
    n, k = 80, 4
    spectrum = 1.0 / (1 + np.arange(n))
    G = decaying(n, spectrum, "float64", rng)
    optimal = np.sqrt(np.sum(spectrum[k:] ** 2))
    errors = [np.linalg.norm(reconstruct(*ul.sketch(G, k, power_iters=q, seed=0)) - G) / optimal for q in (0, 1, 3)]
    assert all(e >= 1 - 1e-12 for e in errors)
    assert errors[2] <= 1.05


def test_warm_start_reuses_subspace(rng):
    """init = last step's B: a correlated next update is captured without a fresh Ω."""
    n, k = 50, 3
    G = low_rank(n, n, k, "float64", rng)
    _, B = ul.sketch(G, k, seed=0)
    G_next = G + 1e-3 * low_rank(n, n, k, "float64", rng)
    A2, B2 = ul.sketch(G_next, k, init=B, power_iters=2)
    A_ref, B_ref = ul.sketch(G_next, k, kind="svd")
    assert np.linalg.norm(reconstruct(A2, B2) - G_next) <= 1.01 * np.linalg.norm(reconstruct(A_ref, B_ref) - G_next)


def test_zero_update(rng):
    for method in METHODS:
        A, B = ul.sketch(np.zeros((10, 10)), 2, kind=method, seed=0)
        np.testing.assert_array_equal(reconstruct(A, B), 0)


def test_rank_bounds():
    G = np.ones((5, 4))
    with pytest.raises(ValueError, match="rank must be an int ≥ 1"):
        ul.sketch(G, 0)
    with pytest.raises(ValueError, match=r"rank must be ≤ min\(m, n\) = 4"):
        ul.sketch(G, 5)
    A, B = ul.sketch(G, 4)
    np.testing.assert_allclose(A @ B.T, G, atol=1e-14)


# -- counter keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_counter_key_draws_are_standard_normal(dtype):
    """Mean, variance, fourth moment and the split of a complex draw, within 6 standard errors of 200,000 draws."""
    import array_api_compat.numpy as xp

    from unitary_lowrank._counter import key_normal, key_uniform

    n = 200_000
    x = key_normal(xp, np.array([5, 1, 9]), (n,), getattr(np, dtype))
    assert x.dtype == getattr(np, dtype) and x.shape == (n,) and np.isfinite(x).all()
    if np.iscomplexobj(x):
        parts = [x.real.astype(np.float64) * np.sqrt(2), x.imag.astype(np.float64) * np.sqrt(2)]
        assert abs(np.mean(parts[0] * parts[1])) < 6 / np.sqrt(n)  # independent real and imaginary parts
    else:
        parts = [x.astype(np.float64)]
    for z in parts:
        assert abs(z.mean()) < 6 / np.sqrt(n)
        assert abs(z.var() - 1) < 6 * np.sqrt(2 / n)
        assert abs(np.mean(z**4) - 3) < 6 * np.sqrt(96 / n)
    u = key_uniform(xp, np.array([5, 1, 9]), (n,), np.float32)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
    # successive keys (optimizer steps) give uncorrelated draws
    y = key_normal(xp, np.array([5, 1, 10]), (n,), np.float64)
    assert abs(np.corrcoef(key_normal(xp, np.array([5, 1, 9]), (n,), np.float64), y)[0, 1]) < 6 / np.sqrt(n)


def test_counter_key_is_the_same_draw_in_numpy_and_torch():
    torch = pytest.importorskip("torch")
    import array_api_compat.numpy as xn
    import array_api_compat.torch as xt

    from unitary_lowrank._counter import key_normal

    a = key_normal(xn, np.array([3, 0, 7]), (64, 12), np.complex128)
    b = key_normal(xt, torch.tensor([3, 0, 7]), (64, 12), torch.complex128)
    assert np.max(np.abs(a - b.numpy())) < 1e-14


@pytest.mark.parametrize("method", ["randomized", "column"])
def test_sketch_with_a_counter_key(method, rng):
    """An integer array as seed: deterministic in its values, exact on low-rank input, and of G's own library."""
    G = low_rank(40, 30, 3, "float64", rng)
    key = np.array([11, 2], dtype=np.int64)
    A, B = ul.sketch(G, 3, kind=method, seed=key)
    assert np.linalg.norm(reconstruct(A, B) - G) < 1e-12 * np.linalg.norm(G)
    A2, B2 = ul.sketch(G, 3, kind=method, seed=key.copy())
    assert np.array_equal(A, A2) and np.array_equal(B, B2)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="different libraries"):
        ul.sketch(G, 3, kind=method, seed=torch.tensor([11, 2]))


def test_a_counter_key_must_live_on_the_device_of_g():
    torch = pytest.importorskip("torch")
    G = torch.randn(10, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="seed key must live on G's device"):
        ul.sketch(G, 2, seed=torch.tensor([1, 2], device="meta"))
