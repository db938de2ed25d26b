"""Bad input gets a clear error naming the argument, what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian, haar

import unitary_lowrank as ul

STEPS = [ul.project, ul.transport]


@pytest.fixture
def operands(rng):
    return haar(6, "float64", rng), gaussian((6, 2), "float64", rng), gaussian((6, 2), "float64", rng)


@pytest.mark.parametrize("step", STEPS)
def test_wide_U_is_refused_with_the_adjoint_as_fix(step, operands):
    _, A, B = operands
    with pytest.raises(
        ValueError, match=r"U must have shape \(\.\.\., n, p\) with p ≤ n .*got shape \(5, 6\).*adjoint"
    ):
        step(np.ones((5, 6)), A[:5], B)


@pytest.mark.parametrize("step", STEPS)
def test_wrong_number_of_rows(step, operands):
    U, A, B = operands
    with pytest.raises(ValueError, match=r"A must have shape \(\.\.\., n, k\) with n = 6 rows.*got shape \(5, 2\)"):
        step(U, A[:5], B)
    with pytest.raises(ValueError, match=r"B must have shape"):
        step(U, A, B[:4])


@pytest.mark.parametrize("step", STEPS)
def test_column_mismatch(step, operands):
    U, A, B = operands
    with pytest.raises(ValueError, match="same number of columns k"):
        step(U, A, B[:, :1])


@pytest.mark.parametrize("step", STEPS)
def test_vector_instead_of_matrix(step, operands):
    U, A, B = operands
    with pytest.raises(ValueError, match=r"A must have shape \(\.\.\., m, n\); got shape \(6,\)"):
        step(U, A[:, 0], B)


@pytest.mark.parametrize("step", STEPS)
def test_dtype_mismatch(step, operands):
    U, A, B = operands
    with pytest.raises(TypeError, match="dtype mismatch: U is float64 but A is float32"):
        step(U, A.astype(np.float32), B)
    with pytest.raises(TypeError, match="dtype mismatch: U is float64 but B is complex128"):
        step(U, A, B.astype(np.complex128))


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("dtype", ["float16", "int64", "bool"])
def test_unsupported_dtype(step, dtype, operands):
    U, A, B = operands
    with pytest.raises(TypeError, match="must have dtype float32, float64, complex64 or complex128"):
        step(U.astype(dtype), A.astype(dtype), B.astype(dtype))


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["U", "A", "B"])
def test_non_finite(step, bad, where, operands):
    arrays = dict(zip("UAB", (x.copy() for x in operands), strict=True))
    arrays[where][1, 1] = bad
    with pytest.raises(ValueError, match=f"{where} contains NaN or Inf"):
        step(arrays["U"], arrays["A"], arrays["B"])


def test_huge_finite_values_are_not_mistaken_for_inf(operands):
    """The fast finiteness check sums; an overflowing sum must not raise."""
    U, A, B = operands
    A = A.copy()
    A[:, :] = 1e308
    with np.errstate(over="ignore"):
        overflowed = A * 10  # 1e309 is inf: a real one
    with pytest.raises(ValueError, match="contains NaN or Inf") as info:
        ul.project(U, overflowed, B)
    assert "A" in str(info.value)
    import array_api_compat.numpy as xp

    from unitary_lowrank._validate import check_finite

    with np.errstate(over="ignore"):
        assert not np.isfinite(A.sum())
        check_finite(xp, "project", A=A)  # the sum overflows, every entry is finite: no error


@pytest.mark.parametrize("step", STEPS)
def test_non_unitary_U_caught_by_check(step, operands, rng):
    U, A, B = operands
    step(U, A, B, check=True)  # a unitary U passes
    drifted = U + 1e-9 * gaussian((6, 6), "float64", rng)
    step(drifted, A, B, check=True)  # rounding-level drift passes
    with pytest.raises(ul.NotUnitaryError, match=r"U is not unitary.*reorthonormalize"):
        step(2 * U, A, B, check=True)
    with pytest.raises(ValueError):  # NotUnitaryError is a ValueError
        step(gaussian((6, 6), "float64", rng), A, B, check=True)


def test_check_probe_is_not_fooled_by_cancellation(rng):
    """Uᴴ U − I with eigenvalues +δ and −δ: a trace-style probe sees ~0, ours does not."""
    U = haar(8, "float64", rng)
    scales = np.array([1.1, 1 / 1.1] * 4)  # singular values 1.1 and 0.909
    skewed = U * np.sqrt(scales)
    with pytest.raises(ul.NotUnitaryError):
        ul.project(skewed, np.zeros((8, 1)), np.zeros((8, 1)), check=True)


def test_unknown_retraction(operands):
    with pytest.raises(ValueError, match="retraction must be one of"):
        ul.transport(*operands, retraction="qr")


def test_not_an_array(operands):
    U, A, B = operands
    with pytest.raises(TypeError, match="A must be an array; got list"):
        ul.project(U, A.tolist(), B)


def test_mixed_libraries(operands):
    xs = pytest.importorskip("array_api_strict")
    U, A, B = operands
    with pytest.raises(TypeError, match="different libraries"):
        ul.project(U, xs.asarray(A), B)


def test_batch_shapes_that_do_not_broadcast(rng):
    U = haar(4, "float64", rng, batch=(3,))
    A = gaussian((2, 4, 1), "float64", rng)
    with pytest.raises(ValueError, match="do not broadcast"):
        ul.project(U, A, A)


def test_out_must_match(operands):
    U, A, B = operands
    with pytest.raises(ValueError, match="out must be an array"):
        ul.project(U, A, B, out=np.empty((5, 5)))
    with pytest.raises(ValueError, match="out must be an array"):
        ul.project(U, A, B, out=np.empty((6, 6), dtype=np.float32))


def test_sketch_arguments(rng):
    G = gaussian((8, 8), "float64", rng)
    with pytest.raises(ValueError, match="kind must be one of"):
        ul.sketch(G, 2, kind="qr")
    with pytest.warns(DeprecationWarning, match="method= is now kind="):  # the old name still works
        old = ul.sketch(G, 2, method="svd")
    np.testing.assert_array_equal(old[0], ul.sketch(G, 2, kind="svd")[0])
    with pytest.raises(ValueError, match="oversample must be an int ≥ 0"):
        ul.sketch(G, 2, oversample=-1)
    with pytest.raises(ValueError, match="power_iters must be an int ≥ 0"):
        ul.sketch(G, 2, power_iters=1.5)
    with pytest.raises(ValueError, match="G contains NaN"):
        ul.sketch(np.full((3, 3), np.nan), 1)
    with pytest.raises(TypeError, match="seed must be"):
        ul.sketch(G, 2, seed="abc")
    with pytest.raises(ValueError, match="init must have shape"):
        ul.sketch(G, 2, init=np.ones((7, 3)))


def test_random_unitary_arguments():
    with pytest.raises(ValueError, match="n must be a positive int"):
        ul.random_unitary(0)
    with pytest.raises(TypeError, match="dtype must be float32, float64, complex64 or complex128; got 'int32'"):
        ul.random_unitary(3, dtype="int32")
    with pytest.raises(TypeError, match="like must be an array or an array module"):
        ul.random_unitary(3, like=42)


def test_reorthonormalize_arguments(rng):
    with pytest.raises(ValueError, match="method must be one of"):
        ul.reorthonormalize(haar(3, "float64", rng), "qr")
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        ul.reorthonormalize(haar(3, "float64", rng), steps=-1)
    with pytest.raises(ValueError, match="U contains NaN"):
        ul.reorthonormalize(np.full((3, 3), np.nan))


def test_check_finite_false_skips_value_checks(operands):
    """The adapters' fast path: no value read back (a GPU sync) for NaN checks or the singular warning.

    Non-finite input then flows through to NaN output (never an error of ours, never a hang).
    """
    U, A, B = operands
    bad = A.copy()
    bad[0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(ul.transport(U, bad, B, check_finite=False)).any()
        assert np.isnan(ul.sketch(np.full((4, 4), np.nan), 1, kind="svd", check_finite=False)[0]).all()
    x = B[:, :1] / np.linalg.norm(B[:, :1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ul.project(U, -U @ x, x, check_finite=False)  # singular, but not inspected: no warning
