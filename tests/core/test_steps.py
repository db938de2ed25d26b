"""project and transport against dense SciPy references: dtypes, shapes, ranks, scales."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import (
    DTYPES,
    EPS,
    dense_cayley,
    dense_project,
    dense_transport,
    haar,
    relative_error,
    scaled_update,
    tolerance,
    unitarity,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul


def cayley(U, A, B, **kw):
    return ul.transport(U, A, B, retraction="cayley", **kw)


STEPS = {
    "project": (ul.project, dense_project),
    "transport": (ul.transport, dense_transport),
    "cayley": (cayley, dense_cayley),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(("n", "k"), [(2, 1), (3, 1), (16, 1), (16, 4), (16, 8), (16, 16), (33, 20), (64, 4)])
def test_matches_dense_reference(step, dtype, n, k, rng):
    U = haar(n, dtype, rng)
    A, B = scaled_update(n, k, dtype, rng, norm=0.5)
    function, reference = STEPS[step]
    result = function(U, A, B)
    assert result.dtype == np.dtype(dtype), "real input must stay real, precision must be kept"
    assert result.shape == (n, n)
    assert relative_error(result, reference(U, A, B)) <= tolerance(dtype)
    assert unitarity(result) <= 5 * n * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("norm", [1e-12, 1e-8, 1e-3, 1.0, 30.0, 1e3])
def test_update_norm_from_tiny_to_huge(step, dtype, norm, rng):
    n, k = 24, 3
    U = haar(n, dtype, rng)
    A, B = scaled_update(n, k, dtype, rng, norm)
    function, reference = STEPS[step]
    assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype, norm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_batched_equals_loop(step, dtype, rng):
    n, k = 10, 2
    U = haar(n, dtype, rng, batch=(2, 3))
    A, B = scaled_update(n, k, dtype, rng, 0.7, batch=(2, 3))
    function, reference = STEPS[step]
    result = function(U, A, B)
    assert result.shape == (2, 3, n, n)
    assert relative_error(result, reference(U, A, B)) <= tolerance(dtype)
    for i in range(2):
        for j in range(3):
            single = function(U[i, j], A[i, j], B[i, j])
            np.testing.assert_allclose(result[i, j], single, atol=10 * np.finfo(U.dtype).eps, rtol=0)


@pytest.mark.parametrize("step", STEPS)
def test_factors_broadcast_against_batch(step, rng):
    """One (A, B) applied to a batch of U, and a batch of (A, B) to one U."""
    n, k, dtype = 8, 2, "complex128"
    U = haar(n, dtype, rng, batch=(4,))
    A, B = scaled_update(n, k, dtype, rng, 0.5)
    function, reference = STEPS[step]
    assert function(U, A, B).shape == (4, n, n)
    assert relative_error(function(U, A, B), reference(U, A, B)) <= 1e-12
    A4, B4 = scaled_update(n, k, dtype, rng, 0.5, batch=(4,))
    assert relative_error(function(U[0], A4, B4), reference(U[0], A4, B4)) <= 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step", STEPS)
def test_n_equals_one(step, dtype, rng):
    U = haar(1, dtype, rng)
    A, B = scaled_update(1, 2, dtype, rng, 0.4)  # |A Bᴴ| = 0.4 < 1: never singular
    function, reference = STEPS[step]
    assert relative_error(function(U, A, B), reference(U, A, B)) <= tolerance(dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 12),
    k_fraction=st.floats(0.0, 1.0),
    dtype=st.sampled_from(DTYPES),
    step=st.sampled_from(sorted(STEPS)),
    batch=st.sampled_from([(), (2,), (1, 3)]),
    log_norm=st.floats(-10, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_dense(n, k_fraction, dtype, step, batch, log_norm, seed):
    rng = np.random.default_rng(seed)
    k = max(1, round(k_fraction * n))
    U = haar(n, dtype, rng, batch=batch)
    A, B = scaled_update(n, k, dtype, rng, 10.0**log_norm, batch=batch)
    function, reference = STEPS[step]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(U, A, B)
        expected = reference(U, A, B)
    assert result.shape == batch + (n, n) and result.dtype == np.dtype(dtype)
    singular = any(issubclass(w.category, ul.SingularUpdateWarning) for w in caught)
    if singular:  # closest unitary not unique: any polar factor is right; checked in test_hard_cases
        assert step == "project"
        assert unitarity(result) <= 1e-4
    else:
        assert relative_error(result, expected) <= tolerance(dtype, 10.0**log_norm)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm", [0.0, 1e-30, 1e-6, 1.0, 1e3, 1e30])
@pytest.mark.parametrize(("step", "reference"), [(ul.transport, dense_transport), (cayley, dense_cayley)])
def test_real_rank_one_takes_the_closed_form_rotation(step, reference, norm, dtype, rng, monkeypatch):
    """Real k = 1: the 2×2 core is a plane rotation computed in closed form, never through eigh."""
    import importlib

    module = importlib.import_module("unitary_lowrank.transport")  # the module; the package exports the function

    def no_eigh(*args, **kwargs):
        raise AssertionError("the real rank-2 core must not take the eigendecomposition")

    monkeypatch.setattr(module, "safe_eigh", no_eigh)
    U = haar(12, dtype, rng, batch=(3,))
    A, B = scaled_update(12, 1, dtype, rng, norm, batch=(3,))
    V = step(U, A, B)
    if norm <= 1e3:  # beyond, the dense reference itself is no longer accurate
        assert relative_error(V, reference(U, A, B)) <= tolerance(dtype, max(norm, 1.0))
    assert unitarity(V) <= 20 * EPS[dtype]
    if norm == 0.0:
        assert np.array_equal(V, U)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm", [0.0, 1e-30, 1e-6, 1.0, 1e3, 1e30])
def test_real_rank_one_project_takes_the_closed_form_polar(norm, dtype, rng, monkeypatch):
    """Real square U, k = 1: the 2×2 polar factor in closed form, never through an SVD."""
    import importlib

    module = importlib.import_module("unitary_lowrank.project")

    def no_svd(*args, **kwargs):
        raise AssertionError("the real 2×2 polar factor must not take the SVD")

    monkeypatch.setattr(module, "safe_svd", no_svd)
    U = haar(12, dtype, rng, batch=(3,))
    A, B = scaled_update(12, 1, dtype, rng, norm, batch=(3,))
    if norm >= 1e30:  # U + A Bᴴ is rank one to rounding: singular, as the SVD would say too
        with pytest.warns(ul.SingularUpdateWarning):
            V = ul.project(U, A, B)
    else:
        V = ul.project(U, A, B)
    if norm <= 1e3:
        assert relative_error(V, dense_project(U, A, B)) <= tolerance(dtype, max(norm, 1.0))
    assert unitarity(V) <= 20 * EPS[dtype]
    if norm == 0.0:
        assert np.array_equal(V, U)


def test_real_rank_one_singular_project_warns_at_the_caller(rng):
    U = haar(9, "float64", rng)
    x = rng.standard_normal((9, 1))
    x /= np.linalg.norm(x)
    with pytest.warns(ul.SingularUpdateWarning, match="not unique") as caught:
        V = ul.project(U, -U @ x, x)
    assert caught[0].filename == __file__
    assert unitarity(V) <= 20 * EPS["float64"]
