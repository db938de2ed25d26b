"""The Cayley-FFT baseline as its authors built it: a solve per frequency, checked against independent references."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from unitary_lowrank.tasks.models.baselines import SOLVERS, CayleyConv2d, cayley  # noqa: E402


def skew(shape, dtype, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    V = torch.randn(*shape, dtype=dtype, generator=generator) * scale
    return V - V.mH


def numpy_cayley(S: torch.Tensor) -> np.ndarray:
    """(I + S)⁻¹ (I − S) by NumPy's LAPACK solve in double precision: the independent reference."""
    s = S.detach().to(torch.complex128 if S.is_complex() else torch.float64).numpy()
    eye = np.eye(s.shape[-1])
    return np.linalg.solve(eye + s, eye - s)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    "dtype, tol",
    [(torch.complex128, 1e-12), (torch.complex64, 2e-5), (torch.float64, 1e-12), (torch.float32, 2e-5)],
)
@pytest.mark.parametrize("shape", [(7, 7), (3, 2, 5, 5), (4, 16, 16)])
def test_every_route_equals_a_dense_solve(solver, dtype, tol, shape):
    S = skew(shape, dtype, scale=3.0)  # ‖S‖ of order 10: far from the identity
    Q = cayley(S, solver)
    assert Q.is_complex() and Q.shape == S.shape
    assert Q.dtype == (S.dtype if S.is_complex() else torch.complex128 if dtype == torch.float64 else torch.complex64)
    np.testing.assert_allclose(Q.numpy(), numpy_cayley(S), atol=tol * shape[-1], rtol=0)
    eye = torch.eye(shape[-1], dtype=Q.dtype)
    assert float((Q.mH @ Q - eye).abs().max()) < tol * shape[-1]


@pytest.mark.parametrize("solver", SOLVERS)
def test_gradients_of_every_route_agree(solver):
    """The loss's gradient through each route equals the one through the double-precision eigendecomposition."""
    V0 = torch.randn(3, 6, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    target = torch.randn(3, 6, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))

    def gradient(route):  # through S = V − Vᴴ, as the layer does: only skew-Hermitian directions count
        V = V0.clone().requires_grad_(True)
        loss = (cayley(V - V.mH, route) * target).real.sum()
        (grad,) = torch.autograd.grad(loss, V)
        return grad

    np.testing.assert_allclose(gradient(solver).numpy(), gradient("eigh").numpy(), atol=1e-11, rtol=0)


def test_zero_and_rank_one_skew_parts():
    """S = 0 gives the identity; a rank-1 S = i u uᴴ (I + S: singular values 1 and √(1 + ‖u‖⁴)) stays exact."""
    eye = torch.eye(5, dtype=torch.complex64)
    u = torch.randn(5, 1, dtype=torch.complex64, generator=torch.Generator().manual_seed(3))
    rank_one = 1j * (u @ u.mH)
    for solver in SOLVERS:
        assert torch.allclose(cayley(torch.zeros(2, 5, 5, dtype=torch.complex64), solver), eye.expand(2, 5, 5))
        Q = cayley(rank_one, solver)
        assert torch.isfinite(torch.view_as_real(Q)).all()
        np.testing.assert_allclose(Q.numpy(), numpy_cayley(rank_one), atol=1e-5, rtol=0)


def test_empty_batches_and_bad_solvers():
    assert cayley(torch.zeros(0, 4, 4, dtype=torch.complex64)).shape == (0, 4, 4)
    with pytest.raises(ValueError, match="solver must be one of"):
        cayley(skew((3, 3), torch.complex64), "lu")
    with pytest.raises(ValueError, match="solver must be one of"):
        CayleyConv2d(2, 2, 4, solver="inverse")


def test_a_non_finite_skew_part_stays_non_finite_without_fallback():
    S = skew((2, 4, 4), torch.complex64)
    S[1, 0, 1] = float("nan")
    with np.errstate(all="ignore"):
        Q = cayley(S)
    assert not torch.isfinite(torch.view_as_real(Q[1])).all()


def test_a_failed_factorization_hands_over_to_the_next_route(monkeypatch):
    S = skew((4, 6, 6), torch.complex64, seed=4)
    expected = torch.from_numpy(numpy_cayley(S)).to(torch.complex64)
    real_solve_ex, real_cholesky_ex = torch.linalg.solve_ex, torch.linalg.cholesky_ex

    def failing_solve_ex(A, B):
        Q, info = real_solve_ex(A, B)
        return Q, info.clone().fill_(3)  # what LAPACK reports for an exactly singular pivot

    def failing_cholesky_ex(A):
        L, info = real_cholesky_ex(A)
        return L * float("nan"), info.clone().fill_(1)

    monkeypatch.setattr(torch.linalg, "solve_ex", failing_solve_ex)
    with pytest.warns(RuntimeWarning, match="solve route failed on this batch; using cholesky"):
        Q = cayley(S)
    np.testing.assert_allclose(Q.numpy(), expected.numpy(), atol=1e-5, rtol=0)
    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_cholesky_ex)
    with pytest.warns(RuntimeWarning) as caught:
        Q = cayley(S)
    assert [str(w.message).split(";")[1].strip() for w in caught] == ["using cholesky", "using eigh"]
    np.testing.assert_allclose(Q.numpy(), expected.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("c_in, c_out", [(4, 4), (3, 6), (8, 4)])
def test_the_layer_is_the_same_operator_whatever_the_solver(c_in, c_out):
    """Forward passes and kernel gradients agree across routes; the layer is an isometry (or co-isometry)."""
    x = torch.randn(2, c_in, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    results = []
    for solver in SOLVERS:
        layer = CayleyConv2d(
            c_in, c_out, 6, solver=solver, dtype=torch.float64, generator=torch.Generator().manual_seed(6)
        )
        with torch.no_grad():
            layer.weight.mul_(20)  # far from the identity
        y = layer(x)
        y.square().sum().backward()
        results.append((y.detach(), layer.weight.grad))
        assert abs(layer.lipschitz() - 1) < 1e-12
    for y, grad in results[1:]:
        np.testing.assert_allclose(y.numpy(), results[0][0].numpy(), atol=1e-12, rtol=0)
        np.testing.assert_allclose(grad.numpy(), results[0][1].numpy(), atol=1e-10, rtol=0)
    if c_out >= c_in:  # orthonormal columns per frequency: norms kept
        np.testing.assert_allclose(results[0][0].square().sum().item(), x.square().sum().item(), rtol=1e-12)
