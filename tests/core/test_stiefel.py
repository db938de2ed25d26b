"""Rectangular weights: U of shape (..., n, p), p ≤ n, with orthonormal columns (the Stiefel manifold).

References, in double precision and independent of the library:
``scipy.linalg.polar(U + A Bᴴ)`` for project, ``scipy.linalg.expm(S) @ U`` with
``S = skew(A (U B)ᴴ)`` (n×n) for transport, ``solve(I − S/2, I + S/2) @ U`` for Cayley.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from conftest import (
    DTYPES,
    EPS,
    _wide,
    dense_cayley_left,
    dense_project,
    dense_transport_left,
    gaussian,
    haar,
    relative_error,
    scaled_update,
    tolerance,
    unitarity,
)

import unitary_lowrank as ul


def stiefel(n: int, p: int, dtype: str, rng: np.random.Generator, batch: tuple[int, ...] = ()) -> np.ndarray:
    return haar(n, dtype, rng, batch=batch, p=p)


STEPS = {
    "project": (ul.project, dense_project),
    "transport": (ul.transport, dense_transport_left),
    "cayley": (lambda U, A, B, **kw: ul.transport(U, A, B, retraction="cayley", **kw), dense_cayley_left),
}


def scaled_factors(n, p, k, dtype, rng, norm, batch=()):
    """A (n×k), B (p×k) with ‖A Bᴴ‖₂ = norm per matrix."""
    return scaled_update(n, k, dtype, rng, norm, batch=batch, p=p)


def stiefel_error(X) -> float:
    """max |Xᴴ X − I_p| for tall X."""
    return unitarity(X)


SHAPES = [(32, 1, 1), (32, 2, 1), (32, 2, 2), (32, 8, 1), (32, 8, 4), (32, 8, 8), (32, 32, 3), (40, 10, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("n", "p", "k"), SHAPES)
def test_matches_dense_reference(step, dtype, n, p, k, rng):
    U = stiefel(n, p, dtype, rng)
    A, B = scaled_factors(n, p, k, dtype, rng, norm=0.5)
    function, reference = STEPS[step]
    result = function(U, A, B)
    assert result.shape == (n, p) and result.dtype == np.dtype(dtype)
    assert relative_error(result, reference(U, A, B)) <= tolerance(dtype)
    assert stiefel_error(result) <= 5 * n * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("norm", [1e-12, 1e-6, 1.0, 30.0, 1e3])
def test_update_norm_from_tiny_to_huge(step, dtype, norm, rng):
    n, p, k = 24, 6, 2
    U = stiefel(n, p, dtype, rng)
    A, B = scaled_factors(n, p, k, dtype, rng, norm)
    function, reference = STEPS[step]
    result = function(U, A, B)
    assert relative_error(result, reference(U, A, B)) <= tolerance(dtype, norm)
    assert stiefel_error(result) <= 5 * n * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_batched_and_broadcast(step, dtype, rng):
    n, p, k = 12, 4, 2
    U = stiefel(n, p, dtype, rng, batch=(2, 3))
    A, B = scaled_factors(n, p, k, dtype, rng, 0.7, batch=(3,))  # broadcast over the first axis
    function, reference = STEPS[step]
    result = function(U, A, B)
    assert result.shape == (2, 3, n, p)
    assert relative_error(result, reference(U, A, B)) <= tolerance(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", ["transport", "cayley"])
def test_left_form_equals_right_form_for_square_U(step, dtype, rng):
    """For square U, exp(skew(A (U B)ᴴ)) U = U exp(skew(Uᴴ A Bᴴ)): one definition for both shapes."""
    from conftest import dense_cayley, dense_transport

    n, k = 16, 3
    U = haar(n, dtype, rng)
    A, B = scaled_factors(n, n, k, dtype, rng, 2.0)
    right = {"transport": dense_transport, "cayley": dense_cayley}[step](U, A, B)
    left = STEPS[step][1](U, A, B)
    # equal to rounding of U itself (single-precision U is unitary only to ε₃₂)
    assert relative_error(left, right) <= tolerance(dtype)
    assert relative_error(STEPS[step][0](U, A, B), right) <= tolerance(dtype, 2.0)


def test_tangent_at_zero_is_the_canonical_metric_projection(rng):
    """d/dε transport(U, εA, B) at 0 = ½ (A Bᴴ − U B Aᴴ U) (Wen & Yin 2013)."""
    n, p = 20, 5
    U = stiefel(n, p, "float64", rng)
    A, B = gaussian((n, 2), "float64", rng), gaussian((p, 2), "float64", rng)
    h = 1e-6
    derivative = (ul.transport(U, h * A, B) - ul.transport(U, -h * A, B)) / (2 * h)
    expected = (A @ B.T - U @ B @ A.T @ U) / 2
    np.testing.assert_allclose(derivative, expected, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("which", ["A", "B"])
def test_zero_factor_returns_U_exactly(step, dtype, which, rng):
    n, p, k = 14, 5, 2
    U = stiefel(n, p, dtype, rng)
    A, B = gaussian((n, k), dtype, rng), gaussian((p, k), dtype, rng)
    if which == "A":
        A = np.zeros_like(A)
    else:
        B = np.zeros_like(B)
    assert np.array_equal(STEPS[step][0](U, A, B), U)


@pytest.mark.parametrize("dtype", DTYPES)
def test_A_outside_the_range_of_U(dtype, rng):
    """A ⟂ range(U): Uᴴ A = 0, all of the update lies in the new rows P of the embedding."""
    n, p = 16, 4
    full = stiefel(n, n, dtype, rng)
    U, outside = full[:, :p], full[:, p : p + 2]
    A = (outside @ gaussian((2, 2), dtype, rng)).astype(dtype)
    B = gaussian((p, 2), dtype, rng)
    for step in STEPS:
        function, reference = STEPS[step]
        assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype, 3.0), step


@pytest.mark.parametrize("dtype", DTYPES)
def test_singular_update_returns_a_valid_polar_factor(dtype, rng):
    """U + A Bᴴ = U (I − x xᴴ) has rank p − 1: warn, and return one closest matrix with orthonormal columns."""
    n, p = 12, 4
    U = stiefel(n, p, dtype, rng)
    x = gaussian((p, 1), dtype, rng)
    x = (x / np.linalg.norm(x)).astype(dtype)
    A, B = (-U @ x).astype(dtype), x
    with pytest.warns(ul.SingularUpdateWarning, match="not unique"):
        V = ul.project(U, A, B)
    eps = np.finfo(V.dtype).eps
    M = _wide(U) + _wide(A) @ _wide(B).conj().T
    wide = _wide(V)
    assert stiefel_error(V) <= 50 * eps
    P = scipy.linalg.polar(M)[0]
    assert abs(np.linalg.norm(wide - M) - np.linalg.norm(P - M)) <= 50 * eps * n
    H = wide.conj().T @ M  # Vᴴ M Hermitian positive semidefinite: V is a polar factor
    np.testing.assert_allclose(H, H.conj().T, atol=50 * eps)
    assert np.linalg.eigvalsh((H + H.conj().T) / 2).min() >= -50 * eps


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("dtype", ["float64", "complex64"])
def test_in_place_on_a_tall_matrix(step, dtype, rng):
    n, p, k = 300, 40, 3  # n ≥ 128: the row-blocked NumPy path
    U = stiefel(n, p, dtype, rng)
    A, B = scaled_factors(n, p, k, dtype, rng, 0.3)
    expected = STEPS[step][0](U, A, B)
    target = U.copy()
    assert STEPS[step][0](target, A, B, out=target) is target
    np.testing.assert_allclose(target, expected, atol=20 * np.finfo(U.dtype).eps, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_tools_accept_rectangular(dtype, rng):
    n, p = 30, 7
    U = ul.random_unitary(n, p, dtype=dtype, seed=3)
    assert U.shape == (n, p) and U.dtype == np.dtype(dtype) and U.flags.c_contiguous
    assert float(ul.unitarity_error(U)) <= 5 * n * EPS[dtype]
    assert float(ul.unitarity_error(U.conj().T)) <= 5 * n * EPS[dtype]  # wide: orthonormal rows
    drifted = (U + 1e-4 * gaussian((n, p), dtype, rng)).astype(dtype)
    for fixed in (ul.reorthonormalize(drifted), ul.reorthonormalize(drifted.conj().T).conj().T):
        assert relative_error(fixed, scipy.linalg.polar(_wide(drifted))[0]) <= tolerance(dtype)
    assert ul.polar(drifted).shape == (n, p)


def test_random_stiefel_is_haar():
    """Haar on the Stiefel manifold: E|U₁₁|² = 1/n and E|U₁₁|⁴ = 2/(n(n+1)) (real), as for the full group."""
    n, p, draws = 6, 2, 4000
    U = ul.random_unitary(n, p, dtype="float64", batch_shape=(draws,), seed=11)
    x = U[:, 0, 0] ** 2
    assert abs(x.mean() - 1 / n) < 4 * x.std() / np.sqrt(draws)
    fourth = 3 / (n * (n + 2))
    y = U[:, 0, 0] ** 4
    assert abs(y.mean() - fourth) < 4 * y.std() / np.sqrt(draws)
    # the columns are uniformly rotated: the last column's first entry has the same law
    z = U[:, 0, 1] ** 2
    assert abs(z.mean() - 1 / n) < 4 * z.std() / np.sqrt(draws)
