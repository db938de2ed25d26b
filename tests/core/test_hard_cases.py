"""Edge cases: vanishing factors, parallel factors, singular U + A Bᴴ, tiny sizes, in place."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from conftest import DTYPES, dense_cayley, dense_project, dense_transport, gaussian, haar, relative_error, tolerance

import unitary_lowrank as ul

STEPS = {
    "project": (ul.project, dense_project),
    "transport": (ul.transport, dense_transport),
    "cayley": (lambda U, A, B, **kw: ul.transport(U, A, B, retraction="cayley", **kw), dense_cayley),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("which", ["A", "B", "both"])
def test_zero_factor_returns_U_exactly(step, dtype, which, rng):
    n, k = 12, 3
    U = haar(n, dtype, rng, batch=(2,))
    A, B = gaussian((n, k), dtype, rng), gaussian((n, k), dtype, rng)
    if which in ("A", "both"):
        A = np.zeros_like(A)
    if which in ("B", "both"):
        B = np.zeros_like(B)
    result = STEPS[step][0](U, A, B)
    assert np.array_equal(result, U)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_B_parallel_to_UhA(step, dtype, rng):
    """[Uᴴ A, B] has rank k, not 2k: Q must still be orthonormal (Householder)."""
    n, k = 20, 3
    U = haar(n, dtype, rng)
    A = gaussian((n, k), dtype, rng, scale=0.3)
    mix = gaussian((k, k), dtype, rng)
    B = (U.conj().T @ A @ mix).astype(dtype)
    function, reference = STEPS[step]
    assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_A_parallel_to_U_B(step, dtype, rng):
    """A = U B c: the update is U·(B c Bᴴ), skew part only from c's skew part."""
    n = 15
    U = haar(n, dtype, rng)
    B = gaussian((n, 2), dtype, rng, scale=0.5)
    A = (U @ B @ gaussian((2, 2), dtype, rng)).astype(dtype)
    function, reference = STEPS[step]
    assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype, 3.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_singular_update_returns_a_valid_closest_unitary(dtype, rng):
    """U + A Bᴴ = U (I − x xᴴ) is singular: any polar factor is a right answer."""
    n = 9
    U = haar(n, dtype, rng, batch=(2,))
    x = gaussian((n, 1), dtype, rng)
    x = (x / np.linalg.norm(x)).astype(dtype)
    A, B = (-U @ x).astype(dtype), x
    with pytest.warns(ul.SingularUpdateWarning, match="not unique"):
        V = ul.project(U, A, B)
    assert np.all(np.isfinite(V))
    M = (U + A @ B.conj().T).astype(np.complex128)
    wide = V.astype(np.complex128)
    eps = np.finfo(V.dtype).eps
    for i in range(2):
        # unitary
        np.testing.assert_allclose(wide[i].conj().T @ wide[i], np.eye(n), atol=50 * eps)
        # as close to M as SciPy's polar factor: ‖V − M‖_F = ‖P − M‖_F (the minimum)
        P = scipy.linalg.polar(M[i])[0]
        assert abs(np.linalg.norm(wide[i] - M[i]) - np.linalg.norm(P - M[i])) <= 50 * eps * n
        # a polar factor: Vᴴ M is Hermitian positive semidefinite
        H = wide[i].conj().T @ M[i]
        np.testing.assert_allclose(H, H.conj().T, atol=50 * eps)
        assert np.linalg.eigvalsh((H + H.conj().T) / 2).min() >= -50 * eps


def test_polar_warns_on_singular_input():
    with pytest.warns(ul.SingularUpdateWarning):
        P = ul.polar(np.diag([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(P.T @ P, np.eye(3), atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_rank_equal_to_n(step, dtype, rng):
    """k = N: Q is square, C is the whole N×N update: still exact."""
    n = 7
    U = haar(n, dtype, rng)
    A, B = gaussian((n, n), dtype, rng, scale=0.2), gaussian((n, n), dtype, rng, scale=0.2)
    function, reference = STEPS[step]
    assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype, 2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("n", [130, 200])
def test_in_place_equals_functional(step, dtype, n, rng):
    """out=U adds the rank-r correction into U's own memory (C or Fortran order)."""
    k = 3
    U = haar(n, dtype, rng, batch=(2,))
    A, B = gaussian((n, k), dtype, rng, scale=0.2), gaussian((n, k), dtype, rng, scale=0.2)
    function, _ = STEPS[step]
    expected = function(U, A, B)
    for order in ("C", "F"):
        target = np.array(U, order=order) if U.ndim == 2 else np.array(U)
        if order == "F":
            target = np.asfortranarray(target.transpose(1, 2, 0)).transpose(2, 0, 1)  # each matrix F-ordered
        address = target.__array_interface__["data"][0]
        result = function(target, A, B, out=target)
        assert result is target and target.__array_interface__["data"][0] == address
        np.testing.assert_allclose(target, expected, atol=20 * np.finfo(U.dtype).eps, rtol=0)


def test_out_into_a_different_array(rng):
    U = haar(140, "float64", rng)
    A, B = gaussian((140, 2), "float64", rng), gaussian((140, 2), "float64", rng)
    out = np.empty_like(U)
    before = U.copy()
    assert ul.project(U, A, B, out=out) is out
    np.testing.assert_array_equal(U, before)
    np.testing.assert_allclose(out, ul.project(U, A, B), atol=1e-14, rtol=0)


def test_mpmath_reference_at_large_norm(rng):
    """A third, high-precision reference (40 digits) where SciPy's real expm is weakest."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    n = 6
    U = haar(n, "float64", rng)
    A, B = gaussian((n, 2), "float64", rng), gaussian((n, 2), "float64", rng)
    A *= 1e3 / np.linalg.norm(A @ B.T, 2)
    X = U.T @ A @ B.T
    exact = U @ np.array(mpmath.expm(mpmath.matrix(((X - X.T) / 2).tolist())).tolist(), dtype=float)
    assert relative_error(ul.transport(U, A, B), exact) <= 1e-12


@pytest.mark.parametrize("step", STEPS)
def test_new_output_keeps_the_layout_of_U(step, rng):
    """A column-major U (LAPACK output, a .T view) gets a column-major result: the copy of U streams."""
    U = np.asfortranarray(haar(140, "float64", rng))
    A, B = gaussian((140, 2), "float64", rng, 0.2), gaussian((140, 2), "float64", rng, 0.2)
    result = STEPS[step][0](U, A, B)
    assert result.flags.f_contiguous
    np.testing.assert_allclose(result, STEPS[step][0](np.ascontiguousarray(U), A, B), atol=1e-14, rtol=0)
