"""The core runs on array_api_strict arrays: proof that it uses only the Array API."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, dense_cayley, dense_project, dense_transport, gaussian, haar, relative_error, tolerance

import unitary_lowrank as ul

xs = pytest.importorskip("array_api_strict")


def to_strict(x):
    return xs.asarray(x)


def to_numpy(x):
    return np.from_dlpack(x)


@pytest.fixture(autouse=True)
def latest_standard():
    with xs.ArrayAPIStrictFlags(api_version="2024.12"):
        yield


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "reference"),
    [("project", dense_project), ("transport", dense_transport), ("cayley", dense_cayley)],
)
def test_steps_on_strict_arrays(name, reference, dtype, rng):
    n, k = 12, 3
    U, A, B = (
        haar(n, dtype, rng, batch=(2,)),
        gaussian((2, n, k), dtype, rng, 0.3),
        gaussian((2, n, k), dtype, rng, 0.3),
    )
    if name == "project":
        result = ul.project(to_strict(U), to_strict(A), to_strict(B), check=True)
    else:
        retraction = "exp" if name == "transport" else "cayley"
        result = ul.transport(to_strict(U), to_strict(A), to_strict(B), retraction=retraction, check=True)
    assert isinstance(result, type(to_strict(U)))
    assert str(result.dtype).endswith(dtype)
    assert relative_error(to_numpy(result), reference(U, A, B)) <= tolerance(dtype, 2.0)


@pytest.mark.parametrize("method", ["randomized", "column", "svd"])
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_sketch_on_strict_arrays(method, dtype, rng):
    G = gaussian((20, 2), dtype, rng) @ gaussian((2, 16), dtype, rng)
    A, B = ul.sketch(to_strict(G), 2, kind=method, seed=0)
    reconstructed = to_numpy(A) @ to_numpy(B).conj().T
    assert np.linalg.norm(reconstructed - G) <= 1e-10 * np.linalg.norm(G)
    # same seed, same draws as on NumPy (the portable backend draws with NumPy)
    if method != "svd":
        A_np, _ = ul.sketch(G, 2, kind=method, seed=0)
        np.testing.assert_allclose(to_numpy(A), A_np, atol=1e-12)


def test_dense_tools_on_strict_arrays(rng):
    U = ul.random_unitary(6, dtype="complex128", seed=0, like=xs)
    assert isinstance(U, type(to_strict(np.zeros(1))))
    assert float(ul.unitarity_error(U)) < 1e-14
    drifted = to_strict(to_numpy(U) + 1e-5 * gaussian((6, 6), "complex128", rng))
    assert float(ul.unitarity_error(ul.reorthonormalize(drifted))) < 1e-14
    assert float(ul.unitarity_error(ul.polar(drifted))) < 1e-14
    with pytest.raises(ul.NotUnitaryError):
        ul.transport(2 * U, U[:, :1], U[:, :1], check=True)


def test_zero_update_is_exact_on_strict(rng):
    U = to_strict(haar(5, "float64", rng))
    zeros = xs.zeros((5, 2), dtype=xs.float64)
    for step in (ul.project, ul.transport):
        assert bool(xs.all(step(U, zeros, zeros) == U))


def test_out_on_immutable_arrays_is_refused(rng):
    U = to_strict(haar(5, "float64", rng))
    A = xs.ones((5, 1), dtype=xs.float64)
    with pytest.raises(TypeError, match="cannot be updated in place"):
        ul.transport(U, A, A, out=U)
