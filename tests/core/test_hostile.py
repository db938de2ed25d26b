"""Hostile inputs: never a hang, a crash from deep inside, or a silently wrong answer.

One regression test per class of defect found by fuzzing, then a property test
over shapes (0 included), dtypes, norms from 1e-300 to 1e300, memory layouts
and backends.
"""

from __future__ import annotations

import multiprocessing
import warnings

import numpy as np
import pytest
import scipy.linalg
from conftest import (
    DTYPES,
    EPS,
    array_backends,
    dense_project,
    dense_transport,
    gaussian,
    haar,
    relative_error,
    to_backend,
    tolerance,
    unitarity,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import unitary_lowrank as ul

STEPS = {
    "project": ul.project,
    "transport": ul.transport,
    "cayley": lambda U, A, B, **kw: ul.transport(U, A, B, retraction="cayley", **kw),
}


# -- 1. reorthonormalize returns the polar factor, or says why not --------------------------------


def _hadamard_with_singular_value(s0: float) -> np.ndarray:
    H = scipy.linalg.hadamard(64) / 8.0
    s = np.ones(64)
    s[0] = s0
    return H @ np.diag(s) @ H.T


@pytest.mark.parametrize("s0", [1e-3, 0.3, 1.5, 2.0, 10.0])
def test_reorthonormalize_is_the_polar_factor_for_any_spectrum(s0):
    """A small singular value stalled Newton–Schulz; one above √3 flipped sign. Both must give polar(U)."""
    M = _hadamard_with_singular_value(s0)
    np.testing.assert_allclose(ul.reorthonormalize(M), scipy.linalg.polar(M)[0], atol=1e-13, rtol=0)


@pytest.mark.parametrize(("dtype", "scale"), [("complex64", 1e30), ("float32", 1e30), ("float64", 1e300)])
def test_reorthonormalize_huge_scale_is_not_nan(dtype, scale):
    U = haar(12, dtype, np.random.default_rng(0))
    fixed = ul.reorthonormalize((scale * U).astype(dtype))
    assert np.all(np.isfinite(fixed))
    np.testing.assert_allclose(fixed, U, atol=50 * EPS[dtype], rtol=0)


def test_reorthonormalize_huge_scale_torch():
    torch = pytest.importorskip("torch")
    U = torch.from_numpy(haar(12, "float64", np.random.default_rng(0)))
    fixed = ul.reorthonormalize(1e300 * U)
    assert not torch.isnan(fixed).any() and torch.allclose(fixed, U, atol=1e-14, rtol=0)


# -- 2. transport on real dtypes stays orthogonal at any norm ---------------------------------------


@pytest.mark.parametrize("retraction", ["exp", "cayley"])
@pytest.mark.parametrize("norm", [1e8, 1e12, 1e16, 1e100, 1e300])
@pytest.mark.parametrize("k", [2, 16])
def test_real_transport_stays_orthogonal_at_huge_norms(retraction, norm, k, rng):
    n = 16
    U = haar(n, "float64", rng)
    A, B = gaussian((n, k), "float64", rng), gaussian((n, k), "float64", rng)
    A *= norm / np.linalg.norm(A @ B.T, 2)
    V = ul.transport(U, A, B, retraction=retraction)
    assert np.all(np.isfinite(V)) and unitarity(V) <= 20 * n * EPS["float64"]


def test_cayley_with_k_equal_n_matches_the_eigen_reference(rng):
    """Cayley at ‖S‖ = 1e8: exact through iS = V Λ Vᴴ, (1 − iλ/2)/(1 + iλ/2) is insensitive to λ's rounding."""
    n = 8
    U = haar(n, "float64", rng)
    A, B = gaussian((n, n), "float64", rng), gaussian((n, n), "float64", rng)
    A *= 1e8 / np.linalg.norm(A @ B.T, 2)
    X = U.T @ A @ B.T
    lam, V = np.linalg.eigh(1j * (X - X.T) / 2)
    reference = (U @ (V @ np.diag((1 - 0.5j * lam) / (1 + 0.5j * lam)) @ V.conj().T)).real
    np.testing.assert_allclose(ul.transport(U, A, B, retraction="cayley"), reference, atol=1e-13, rtol=0)


def test_real_transport_torch_float32_large_norm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    U = torch.from_numpy(haar(32, "float32", rng))
    A, B = torch.from_numpy(gaussian((32, 2), "float32", rng)), torch.from_numpy(gaussian((32, 2), "float32", rng))
    V = ul.transport(U, 1e8 * A, B)
    assert float(ul.unitarity_error(V)) <= 1e-5


@pytest.mark.parametrize("step", STEPS)
def test_one_by_one_near_overflow_returns_U(step):
    U = np.ones((1, 1), np.float32)
    A = np.full((1, 1), 3e38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # scales are exponents: nothing overflows on the way
        assert np.array_equal(STEPS[step](U, A, A), U)


# -- 3, 4, 10. sketch: huge, subnormal and non-finite G ---------------------------------------------


@pytest.mark.parametrize("method", ["randomized", "column", "svd"])
@pytest.mark.parametrize(
    ("dtype", "scale"), [("float32", 1e20), ("float64", 1e160), ("complex64", 1e-40), ("complex128", 1e-310)]
)
def test_sketch_of_huge_or_subnormal_G_is_finite_and_exact_on_low_rank(method, dtype, scale, rng):
    G = gaussian((24, 2), dtype, rng) @ gaussian((2, 24), dtype, rng)
    G = (G.astype(np.complex128 if dtype.startswith("complex") else np.float64) * scale).astype(dtype)
    A, B = ul.sketch(G, 2, kind=method, seed=0)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
    if scale > 1e-300:  # subnormal G itself holds only a few significant bits
        wide = (A.astype(np.complex128) / np.sqrt(scale)) @ (B.astype(np.complex128).conj().T / np.sqrt(scale))
        assert relative_error(wide, G.astype(np.complex128) / scale) <= 1e3 * EPS[dtype]


def _sketch_in_child(queue):
    G = np.ones((16, 16), np.complex128)
    G[2, 3] = np.inf
    A, _ = ul.sketch(G, 2, kind="svd", check_finite=False)
    queue.put(bool(np.isnan(A).all()))


def test_sketch_with_inf_and_check_finite_false_does_not_hang():
    """LAPACK's complex SVD loops forever on Inf: the guard must return NaN instead (in a child with a deadline)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_sketch_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("sketch(kind='svd', check_finite=False) on an Inf entry did not return within 60 s")
    assert queue.get(timeout=5) is True


@pytest.mark.parametrize("method", ["randomized", "column", "svd"])
@pytest.mark.parametrize("step", STEPS)
def test_non_finite_input_with_check_finite_false_gives_nan_not_an_error(method, step, rng):
    U, A, B = haar(6, "complex128", rng), gaussian((6, 2), "complex128", rng), gaussian((6, 2), "complex128", rng)
    A[0, 0] = np.inf
    G = gaussian((6, 6), "complex128", rng)
    G[1, 1] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):  # NumPy's own notes on arithmetic with NaN and Inf
        assert np.isnan(STEPS[step](U, A, B, check_finite=False)).any()
        assert np.isnan(ul.sketch(G, 2, kind=method, check_finite=False)[0]).any()


def test_torch_complex_qr_inputs_do_not_give_nan():
    """Subnormal updates and identical columns (a rank-1 sketch input) in torch complex."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    U = torch.from_numpy(haar(10, "complex128", rng))
    A = torch.from_numpy(gaussian((10, 2), "complex128", rng)) * 1e-155  # ‖A Bᴴ‖ ≈ 1e-310
    for step in STEPS.values():
        assert torch.equal(step(U, A, A), U) or not torch.isnan(step(U, A, A)).any()
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        G = torch.randn(32, 1, dtype=torch.complex64, generator=g).expand(32, 32).contiguous()
        A, B = ul.sketch(G, 2, seed=seed)
        assert not (torch.isnan(A).any() or torch.isnan(B).any())
        assert float(torch.linalg.norm(A @ B.mH - G) / torch.linalg.norm(G)) <= 1e-5


# -- 5. empty shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("U_shape", "k"), [((0, 0), 1), ((0, 0), 0), ((5, 5), 0), ((0, 5, 5), 2), ((3, 0, 0), 1), ((6, 0), 1), ((6, 3), 0)]
)
def test_empty_in_U_out(step, U_shape, k):
    U = np.zeros(U_shape)
    if U_shape[-1] == U_shape[-2] and U_shape[-1] > 0:
        U = np.broadcast_to(np.eye(U_shape[-1]), U_shape).copy()
    elif U_shape[-1] > 0:
        U = np.eye(U_shape[-2])[:, : U_shape[-1]]
    A, B = np.ones(U.shape[:-1] + (k,)), np.ones(U.shape[:-2] + (U.shape[-1], k))
    result = STEPS[step](U, A, B, check=True)
    assert result.shape == U.shape and np.array_equal(result, U) and result is not U
    out = U.copy()
    assert STEPS[step](U, A, B, out=out) is out and np.array_equal(out, U)


def test_empty_dense_tools():
    for shape in [(0, 0), (2, 0, 0), (4, 0), (0, 3, 3)]:
        U = np.zeros(shape)
        assert ul.unitarity_error(U).shape == shape[:-2]
        assert ul.reorthonormalize(U).shape == shape
    assert ul.random_unitary(3, batch_shape=(0,)).shape == (0, 3, 3)
    assert ul.random_unitary(3, 0).shape == (3, 0)


# -- 6. argument validation --------------------------------------------------------------------------


def test_seeds_accept_numpy_integers_and_generators_and_refuse_the_rest(rng):
    G = gaussian((8, 8), "float64", rng)
    a = ul.sketch(G, 2, seed=np.int64(3))[0]
    np.testing.assert_array_equal(a, ul.sketch(G, 2, seed=3)[0])
    ul.sketch(G, 2, seed=np.random.default_rng(0))
    ul.sketch(G, 2, seed=(np.uint32(1), 2))
    with pytest.raises(TypeError, match="seed must be None, a non-negative int"):
        ul.sketch(G, 2, seed=1.5)
    with pytest.raises(TypeError, match="seed must be None, a non-negative int"):
        ul.sketch(G, 2, seed="abc")
    with pytest.raises(ValueError, match="seed must be a non-negative int; got -1"):
        ul.sketch(G, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be"):
        ul.random_unitary(3, seed=True)


def test_torch_seeds():
    torch = pytest.importorskip("torch")
    G = torch.randn(8, 8, dtype=torch.float64)
    assert torch.equal(ul.sketch(G, 2, seed=np.int64(3))[0], ul.sketch(G, 2, seed=3)[0])
    ul.sketch(G, 2, seed=np.random.default_rng(1))
    ul.sketch(G, 2, seed=torch.Generator().manual_seed(0))
    for bad, error in [(1.5, TypeError), ("x", TypeError), (-2, ValueError)]:
        with pytest.raises(error, match="seed must"):
            ul.sketch(G, 2, seed=bad)


def test_random_unitary_batch_shape_forms():
    assert ul.random_unitary(2, batch_shape=3, seed=0).shape == (3, 2, 2)
    assert ul.random_unitary(2, batch_shape=np.int64(2), seed=0).shape == (2, 2, 2)
    assert ul.random_unitary(2, batch_shape=[2, 1], seed=0).shape == (2, 1, 2, 2)
    for bad in [None, -1, (2.5,), "3"]:
        with pytest.raises(ValueError, match="batch_shape must be a non-negative int or a tuple"):
            ul.random_unitary(2, batch_shape=bad)
    with pytest.raises(ValueError, match="p must be an int with 0 ≤ p ≤ n = 3"):
        ul.random_unitary(3, 4)


# -- 7. out= validated before any work ----------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_bad_out_is_refused_up_front(step, rng):
    step = STEPS[step]
    U, A, B = haar(6, "float64", rng), gaussian((6, 2), "float64", rng), gaussian((6, 2), "float64", rng)
    read_only = U.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        step(read_only, A, B, out=read_only)
    with pytest.raises(ValueError, match=r"out (is read-only|repeats memory)"):
        step(U, A, B, out=np.broadcast_to(np.zeros((1, 6)), (6, 6)))
    target = U.copy()
    with pytest.raises(ValueError, match="out overlaps U without being the same view"):
        step(target, A, B, out=target.T)
    np.testing.assert_array_equal(target, U)  # nothing was written


def test_bad_torch_out_is_refused_up_front():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    U = torch.from_numpy(haar(6, "float64", rng))
    A, B = torch.from_numpy(gaussian((6, 2), "float64", rng)), torch.from_numpy(gaussian((6, 2), "float64", rng))
    with pytest.raises(ValueError, match=r"out overlaps U .*out=U.mT"):
        ul.transport(U, A, B, out=U.mT)
    with pytest.raises(ValueError, match="repeats memory"):
        ul.transport(U, A, B, out=torch.zeros(1, 6, dtype=torch.float64).expand(6, 6))
    W = torch.nn.Parameter(U.clone())
    with pytest.raises(ValueError, match=r"requires grad.*torch.no_grad"):
        ul.transport(W, A, B, out=W)
    with torch.no_grad():
        assert ul.transport(W, A, B, out=W) is W


# -- 8. unitarity_error ---------------------------------------------------------------------------------


def test_unitarity_error_of_huge_matrices_is_inf_not_nan():
    U = haar(8, "float64", np.random.default_rng(1))
    assert ul.unitarity_error(1e200 * U) == np.inf
    torch = pytest.importorskip("torch")
    assert float(ul.unitarity_error(1e200 * torch.from_numpy(U))) == float("inf")


def test_unitarity_error_refuses_non_finite():
    with pytest.raises(ValueError, match="U contains NaN or Inf"):
        ul.unitarity_error(np.full((3, 3), np.nan))


# -- 9. singular detection against the scale of the inputs -------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_that_cancels_U_exactly_warns(dtype, rng):
    """U + A Bᴴ = 0 (A = −U, B = I): σ_max of I + C is rounding noise, and still the warning must come."""
    U = haar(6, dtype, rng)
    with pytest.warns(ul.SingularUpdateWarning):
        V = ul.project(U, -U, np.eye(6, dtype=dtype))
    assert unitarity(V) <= 50 * EPS[dtype]


# -- the property test ------------------------------------------------------------------------------------


BACKENDS = array_backends()


# found by the property test below: a scale 2^(e_A + e_B) that underflows to 0 (the rectangular project took its log)
_UNDERFLOWING_SCALE = dict(
    n=2, p_fraction=0.5, k=1, batch=(), dtype="float32", log_norm=-45.0, fortran=False, step="project", seed=0
)


# found by it too: finite float32 factors near the top of the range whose sum (the cheap finiteness check) overflows
_OVERFLOWING_SUM = dict(
    n=3, p_fraction=0.5, k=2, batch=(), dtype="float32", log_norm=76.0, fortran=False, step="cayley", seed=0
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 9),
    p_fraction=st.sampled_from([0.0, 0.5, 1.0]),
    k=st.integers(0, 4),
    batch=st.sampled_from([(), (0,), (2,)]),
    dtype=st.sampled_from(DTYPES),
    log_norm=st.floats(-300, 300),
    fortran=st.booleans(),
    backend=st.sampled_from(BACKENDS),
    step=st.sampled_from(sorted(STEPS)),
    seed=st.integers(0, 2**16),
)
@example(**_UNDERFLOWING_SCALE, backend="numpy")
@example(**_UNDERFLOWING_SCALE, backend="torch")
@example(**_OVERFLOWING_SUM, backend="numpy")
@example(**_OVERFLOWING_SUM, backend="array_api_strict")
def test_property_no_crash_no_nan_unitary_and_exact_where_defined(
    n, p_fraction, k, batch, dtype, log_norm, fortran, backend, step, seed
):
    if backend not in BACKENDS:  # an explicit example may name a library this environment lacks
        return
    rng = np.random.default_rng(seed)
    p = round(p_fraction * n) if n else 0
    U = haar(n, dtype, rng, batch=batch)[..., :p] if n else np.zeros(batch + (0, 0), dtype)
    real = np.dtype(dtype).kind == "f"
    norm = 10.0**log_norm
    A = gaussian(batch + (n, k), dtype, rng)
    B = gaussian(batch + (p, k), dtype, rng)
    if n and p and k and batch != (0,):
        current = np.linalg.norm(
            A.astype(np.complex128) @ B.astype(np.complex128).conj().swapaxes(-1, -2), 2, axis=(-2, -1)
        )
        factor = np.sqrt(norm / current)[..., None, None]  # split between A and B: neither factor overflows alone
        with np.errstate(over="ignore"):  # factors past the dtype's range are skipped just below
            A = (A.astype(np.complex128) * factor).astype(dtype) if not real else (A * factor).astype(dtype)
            B = (B.astype(np.complex128) * factor).astype(dtype) if not real else (B * factor).astype(dtype)
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
            return  # the factors themselves are not representable in this dtype
    if fortran and U.ndim == 2:
        U = np.asfortranarray(U)
    arrays = [to_backend(x, backend) for x in (U, A, B)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ul.SingularUpdateWarning)
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way either: scales are exponents
        result = STEPS[step](*arrays)
    result = np.asarray(result)
    assert result.shape == batch + (n, p)
    assert np.all(np.isfinite(result)), "finite input must not give NaN or Inf"
    if result.size:
        assert unitarity(result) <= 100 * max(n, 1) * EPS[dtype]
    if result.size and k and p == n and 1e-12 <= norm <= 1e3:
        reference = {"project": dense_project, "transport": dense_transport}.get(step)
        if reference is not None and (step != "project" or norm < 0.5):  # project: well conditioned only
            assert relative_error(result, reference(U, A, B)) <= 10 * tolerance(dtype, norm)
