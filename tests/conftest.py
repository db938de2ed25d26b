"""Shared fixtures and independent dense references (NumPy/SciPy, float64 or complex128)."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import scipy.linalg

# A script the DDP test runs in subprocesses, not a test module (and it needs torch).
collect_ignore = ["backends/ddp_worker.py"]

DTYPES = ("float32", "float64", "complex64", "complex128")
EPS = {
    "float32": np.finfo(np.float32).eps,
    "complex64": np.finfo(np.float32).eps,
    "float64": np.finfo(np.float64).eps,
    "complex128": np.finfo(np.float64).eps,
}


def is_single(dtype) -> bool:
    return np.dtype(dtype) in (np.float32, np.complex64)


def haar(n: int, dtype: str, rng: np.random.Generator, batch: tuple[int, ...] = (), p: int | None = None) -> np.ndarray:
    """Haar unitary drawn here (not through the library), rounded to ``dtype``; its first ``p`` columns if given.

    The first p columns of a Haar unitary are Haar distributed on the Stiefel manifold.
    """
    shape = batch + (n, n)
    Z = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        Z = Z + 1j * rng.standard_normal(shape)
    Q, R = np.linalg.qr(Z)
    d = np.diagonal(R, axis1=-2, axis2=-1)
    Q = Q * (d / np.abs(d))[..., None, :]
    return np.ascontiguousarray(Q[..., : n if p is None else p]).astype(dtype)


def scaled_update(n, k, dtype, rng, norm, batch=(), p=None):
    """A (n×k), B (p×k, default p = n) with ‖A Bᴴ‖₂ = norm (per matrix)."""
    A = gaussian(batch + (n, k), dtype, rng).astype(np.complex128)
    B = gaussian(batch + (n if p is None else p, k), dtype, rng).astype(np.complex128)
    current = np.linalg.norm(A @ np.swapaxes(B, -1, -2).conj(), ord=2, axis=(-2, -1))
    A = A * (norm / current)[..., None, None]
    real = np.dtype(dtype).kind == "f"
    return (A.real if real else A).astype(dtype), (B.real if real else B).astype(dtype)


def gaussian(shape: tuple[int, ...], dtype: str, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    X = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        X = (X + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    return (scale * X).astype(dtype)


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _per_matrix(f, *arrays):
    arrays = [_wide(a) for a in arrays]
    batch = np.broadcast_shapes(*(a.shape[:-2] for a in arrays))
    arrays = [np.broadcast_to(a, batch + a.shape[-2:]) for a in arrays]
    first = f(*(a[(0,) * len(batch)] for a in arrays))
    out = np.empty(batch + first.shape, dtype=np.result_type(first, *arrays))
    for index in np.ndindex(*batch):
        out[index] = f(*(a[index] for a in arrays))
    return out


def dense_project(U, A, B):
    """scipy.linalg.polar of U + A Bᴴ, in double precision."""
    return _per_matrix(lambda U, A, B: scipy.linalg.polar(U + A @ B.conj().T)[0], U, A, B)


def dense_transport(U, A, B):
    """U @ scipy.linalg.expm(skew(Uᴴ A Bᴴ)), in double precision.

    ``expm`` runs on the complex-typed skew matrix even for real input: SciPy's
    real-arithmetic path loses accuracy for large ‖S‖ (3e-12 relative at
    ‖S‖ = 1e3, measured against 40-digit mpmath), the complex path does not
    (3e-14). The real part is taken afterwards.
    """

    def one(U, A, B):
        X = U.conj().T @ A @ B.conj().T
        result = U @ scipy.linalg.expm(((X - X.conj().T) / 2).astype(np.complex128))
        return result if U.dtype.kind == "c" else result.real

    return _per_matrix(one, U, A, B)


def dense_cayley(U, A, B):
    """U (I − S/2)⁻¹ (I + S/2) with S = skew(Uᴴ A Bᴴ), in double precision."""

    def one(U, A, B):
        X = U.conj().T @ A @ B.conj().T
        S = (X - X.conj().T) / 2
        identity = np.eye(len(U))
        return U @ np.linalg.solve(identity - S / 2, identity + S / 2)

    return _per_matrix(one, U, A, B)


def _left_skew(U, A, B):
    X = A @ (U @ B).conj().T
    return (X - X.conj().T) / 2


def tall(x: np.ndarray) -> np.ndarray:
    """The tall view of ``x`` (..., n, p): ``x`` itself when n ≥ p, else its adjoint (how a wide weight is stepped)."""
    return x if x.shape[-1] <= x.shape[-2] else np.swapaxes(x, -1, -2).conj()


def dense_transport_left(U, A, B):
    """``expm(skew(A (U B)ᴴ)) U``: the step's definition for any n×p ``U`` (for square ``U``, ``dense_transport``)."""

    def one(U, A, B):
        result = scipy.linalg.expm(_left_skew(U, A, B).astype(np.complex128)) @ U
        return result if U.dtype.kind == "c" else result.real

    return _per_matrix(one, U, A, B)


def dense_cayley_left(U, A, B):
    """``(I − S/2)⁻¹ (I + S/2) U`` with ``S = skew(A (U B)ᴴ)``, for any n×p ``U``."""

    def one(U, A, B):
        S = _left_skew(U, A, B)
        identity = np.eye(len(U))
        return np.linalg.solve(identity - S / 2, (identity + S / 2) @ U)

    return _per_matrix(one, U, A, B)


def relative_error(X, reference) -> float:
    X = np.asarray(X)
    return float(np.linalg.norm((_wide(X) - reference).ravel()) / np.linalg.norm(reference.ravel()))


def unitarity(X) -> float:
    X = _wide(np.asarray(X))
    identity = np.eye(X.shape[-1])
    return float(np.max(np.abs(np.swapaxes(X, -1, -2).conj() @ X - identity)))


def tolerance(dtype, update_norm: float = 1.0) -> float:
    """Error allowed against a dense reference.

    Double precision: 1e-12, for every ‖A Bᴴ‖ up to 1e3. Single precision:
    1e-5 while ‖A Bᴴ‖ ≤ 7; beyond, no algorithm can do better than
    ε (1 + ‖A Bᴴ‖) — rounding ``A`` or ``B`` by ε moves the answer that much —
    so the bound is 10 ε (1 + ‖A Bᴴ‖).
    """
    if not is_single(dtype):
        return 1e-12
    return max(1e-5, 10 * EPS[str(np.dtype(dtype))] * (1 + update_norm))


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, distinct per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


#: ``UL_DEVICE_RESIDENT=1``: every test runs inside ``ul.device_resident()`` (see the fixture below)
RESIDENT = os.environ.get("UL_DEVICE_RESIDENT", "") not in ("", "0")


@pytest.fixture(autouse=True)
def _device_resident_when_asked():
    """``UL_DEVICE_RESIDENT=1 python -m pytest ...`` runs tests inside ``ul.device_resident()``.

    The Jacobi cores a compiled GPU step uses then meet the same dense references
    as the LAPACK path (tests/core/test_resident.py runs a selection of them by default).
    """
    if RESIDENT:
        import unitary_lowrank as ul

        with ul.device_resident():
            yield
    else:
        yield


@pytest.fixture(autouse=True)
def _cache_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Nothing a test runs writes into the user's real cache (``~/.cache/unitary_lowrank``: decoded CIFAR-10)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


# -- which extras were missing ------------------------------------------------------------------

#: module that a skipped test could not import → the extra of pyproject.toml that installs it
_EXTRA_OF_MODULE = {
    "torch": "torch",
    "jax": "jax",
    "optax": "jax",
    "mlxtend": "experiments",
    "tqdm": "experiments",
    "matplotlib": "experiments",
    "PIL": "experiments",
    "cupy": "cupy",
    "deel": "torchlip",
    "geotorch": "peers",
    "geoopt": "peers",
    "mkdocs": "docs",
    "mathjax": "docs",
    "mkdocstrings": "docs",
    "array_api_strict": "dev",
    "mpmath": "dev",
    "hypothesis": "dev",
}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After a run with missing extras, say how many tests each missing extra skipped, and how to install it."""
    import re
    from collections import Counter

    missing: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        match = re.search(r"could not import '([\w.]+)'", reason)
        if match:
            module = match.group(1).split(".")[0]
            missing[_EXTRA_OF_MODULE.get(module, module)] += 1
    if missing:
        terminalreporter.section("skipped for missing extras")
        for extra, count in sorted(missing.items()):
            terminalreporter.write_line(
                f'{count} test item(s) skipped: extra [{extra}] not installed (pip install -e ".[{extra}]")'
            )


def array_backends() -> list[str]:
    """The array libraries of this environment that the property tests run on: NumPy, and torch, array_api_strict."""
    names = ["numpy"]
    for name in ("torch", "array_api_strict"):
        try:
            __import__(name)
            names.append(name)
        except ImportError:
            pass
    return names


def to_backend(x: np.ndarray, backend: str):
    """``x`` as an array of ``backend`` (its memory order kept for torch)."""
    if backend == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(x) if x.flags.c_contiguous else np.asfortranarray(x))
    if backend == "array_api_strict":
        import array_api_strict

        return array_api_strict.asarray(np.ascontiguousarray(x))
    return x


def tree_equal(a, b) -> bool:
    """Nested dicts, lists and tuples of torch tensors and plain values equal to the bit (dtypes and shapes too)."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(tree_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
