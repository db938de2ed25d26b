"""polar, unitarity_error, random_unitary and reorthonormalize against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from conftest import DTYPES, EPS, gaussian, haar, relative_error, unitarity

import unitary_lowrank as ul


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 6), (3, 5, 5), (8, 5), (5, 8)])
def test_polar_matches_scipy(dtype, shape, rng):
    M = gaussian(shape, dtype, rng)
    P = ul.polar(M)
    assert P.shape == shape and P.dtype == np.dtype(dtype)
    wide = M.astype(np.complex128)
    reference = np.stack([scipy.linalg.polar(m, side="right")[0] for m in wide.reshape((-1,) + shape[-2:])])
    assert relative_error(P, reference.reshape(shape)) <= (1e-5 if EPS[dtype] > 1e-10 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unitarity_error_matches_definition(dtype, rng):
    U = haar(7, dtype, rng, batch=(3,))
    U[1] *= 1.01
    error = ul.unitarity_error(U)
    assert error.shape == (3,)
    wide = U.astype(np.complex128)
    expected = np.abs(np.swapaxes(wide, -1, -2).conj() @ wide - np.eye(7)).max(axis=(-2, -1))
    np.testing.assert_allclose(error, expected, rtol=1e-3, atol=10 * EPS[dtype])
    assert error[1] == pytest.approx(1.01**2 - 1, rel=1e-3)
    assert float(ul.unitarity_error(U[0])) <= 10 * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_unitary_shape_dtype_and_unitarity(dtype):
    U = ul.random_unitary(9, dtype=dtype, batch_shape=(2, 3), seed=0)
    assert U.shape == (2, 3, 9, 9) and U.dtype == np.dtype(dtype)
    assert unitarity(U) <= 20 * EPS[dtype]


def test_random_unitary_seeded():
    np.testing.assert_array_equal(ul.random_unitary(5, seed=3), ul.random_unitary(5, seed=3))
    assert not np.array_equal(ul.random_unitary(5, seed=3), ul.random_unitary(5, seed=4))
    assert ul.random_unitary(4, dtype=np.complex64, seed=0).dtype == np.complex64


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_random_unitary_is_haar(dtype):
    """Moments of the Haar measure: E[tr U] = 0, E|tr U|² = 1, E|U_ij|² = 1/n.

    Plain QR without the phase fix fails the first two (its diagonal is biased).
    2,000 samples: standard errors ≈ 0.02; the bounds are 6 of them.
    """
    n, samples = 5, 2000
    U = ul.random_unitary(n, dtype=dtype, batch_shape=(samples,), seed=11)
    trace = np.trace(U, axis1=-2, axis2=-1)
    assert abs(trace.mean()) <= 0.15
    assert abs(np.mean(np.abs(trace) ** 2) - 1) <= 0.15
    np.testing.assert_allclose(np.mean(np.abs(U) ** 2, axis=0), 1 / n, atol=0.03)
    if dtype == "float64":
        determinants = np.linalg.det(U)
        assert 0.4 <= np.mean(determinants > 0) <= 0.6  # both components of O(n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("drift", [1e-6, 1e-3, 5e-2])
def test_reorthonormalize_reaches_polar_factor(dtype, drift, rng):
    n = 20
    U = haar(n, dtype, rng)
    drifted = (U + drift * gaussian((n, n), dtype, rng) / np.sqrt(n)).astype(dtype)
    for method in ("newton-schulz", "polar"):
        V = ul.reorthonormalize(drifted, method)
        assert V.dtype == np.dtype(dtype)
        assert unitarity(V) <= 10 * n * EPS[dtype]
        reference = scipy.linalg.polar(drifted.astype(np.complex128))[0]
        assert relative_error(V, reference) <= 10 * n * EPS[dtype] * max(1.0, drift * 100)


def test_reorthonormalize_single_step_is_newton_schulz(rng):
    U = haar(10, "float64", rng) + 1e-3 * gaussian((10, 10), "float64", rng)
    expected = U @ (3 * np.eye(10) - U.T @ U) / 2
    np.testing.assert_allclose(ul.reorthonormalize(U, steps=1), expected, atol=1e-15)
    np.testing.assert_array_equal(ul.reorthonormalize(U, steps=0), U)


def test_reorthonormalize_far_from_unitary_falls_back_to_polar(rng):
    M = gaussian((12, 12), "float64", rng)  # singular values spread over (0, 3): Newton–Schulz would diverge
    V = ul.reorthonormalize(M)
    np.testing.assert_allclose(V, scipy.linalg.polar(M)[0], atol=1e-12)
