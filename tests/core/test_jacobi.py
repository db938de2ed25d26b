"""The Jacobi cores (``unitary_lowrank._jacobi``) against the dense LAPACK factorizations.

They replace ``eigh``/``svd`` on the device (``ul.device_resident()``, compiled
GPU steps), so they must meet the same accuracy on the same hard inputs: random,
rank-deficient (a rank-1 update sketched at rank k), odd sizes (padded), the
±λ pairs of a real skew matrix, zero and NaN.
"""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conftest import EPS

from unitary_lowrank._jacobi import jacobi_eigh, jacobi_svd, sweeps_for


def _draw(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape)
    return x


def _adjoint(x):
    return np.conj(np.swapaxes(x, -1, -2))


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("r", [2, 3, 8, 13, 32])
def test_svd_and_eigh_match_lapack_on_random_and_rank_deficient_input(r, dtype, rng):
    eps = EPS[dtype]
    for rank in sorted({1, 2, max(1, r // 4), r}):
        rank = min(rank, r)
        M = (_draw(rng, (6, r, rank), dtype) @ _draw(rng, (6, rank, r), dtype)).astype(dtype)
        W, sigma, Vh = jacobi_svd(xp, M)
        assert np.abs(W @ (sigma[..., None] * Vh) - M).max() <= 20 * r * eps * np.abs(M).max()
        assert np.abs(_adjoint(W) @ W - np.eye(r)).max() <= 20 * r * eps  # orthonormal also where σ = 0
        assert np.abs(Vh @ _adjoint(Vh) - np.eye(r)).max() <= 20 * r * eps
        reference = np.linalg.svd(M.astype(np.complex128 if dtype.startswith("c") else np.float64), compute_uv=False)
        assert np.all(np.diff(sigma, axis=-1) <= 0)  # descending
        assert np.abs(sigma - reference).max() <= 20 * r * eps * reference.max()
        complex_dtype = {"float32": "complex64", "float64": "complex128"}.get(dtype, dtype)
        for H in (M + _adjoint(M), 1j * (M - _adjoint(M))):  # Hermitian; i·skew: the ±λ pairs of transport's core
            H = H.astype(complex_dtype if np.iscomplexobj(H) else dtype)
            lam, V = jacobi_eigh(xp, H)
            assert np.abs(V @ (lam[..., None] * _adjoint(V)) - H).max() <= 20 * r * eps * np.abs(H).max()
            assert np.abs(_adjoint(V) @ V - np.eye(r)).max() <= 20 * r * eps
            reference = np.linalg.eigvalsh(H.astype(np.complex128))
            assert np.abs(np.sort(lam, axis=-1) - reference).max() <= 20 * r * eps * np.abs(reference).max()


def test_zero_and_non_finite_input():
    W, sigma, _ = jacobi_svd(xp, np.zeros((5, 5)))
    assert np.all(sigma == 0) and np.abs(W.T @ W - np.eye(5)).max() < 1e-15
    lam, V = jacobi_eigh(xp, np.zeros((4, 4)))
    assert np.all(lam == 0) and np.abs(V.T @ V - np.eye(4)).max() < 1e-15
    M = np.eye(6)
    M[2, 3] = np.nan
    with np.errstate(invalid="ignore"):
        assert np.isnan(jacobi_svd(xp, M)[1]).any() and np.isnan(jacobi_eigh(xp, M)[0]).any()


def test_sweep_count_is_fixed_and_grows_with_the_size():
    assert sweeps_for(8, 64) > sweeps_for(8, 32) and sweeps_for(32, 64) > sweeps_for(8, 64)
