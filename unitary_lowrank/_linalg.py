"""Small Array API building blocks shared by the core: adjoints, identities, dtypes.

Only Array API calls on the namespace ``xp`` that ``array_api_compat`` found.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any


def is_complex(xp: Any, x: Any) -> bool:
    return xp.isdtype(x.dtype, "complex floating")


def adjoint(xp: Any, x: Any) -> Any:
    """``xᴴ`` over the last two axes; a plain transpose for real input."""
    t = xp.matrix_transpose(x)
    return xp.conj(t) if is_complex(xp, x) else t


def real_part(xp: Any, x: Any) -> Any:
    return xp.real(x) if is_complex(xp, x) else x


def complex_dtype(xp: Any, dtype: Any) -> Any:
    """The complex dtype of the same precision as ``dtype``."""
    if dtype in (xp.float32, xp.complex64):
        return xp.complex64
    return xp.complex128


def real_dtype(xp: Any, dtype: Any) -> Any:
    """The real dtype of the same precision as ``dtype``."""
    if dtype in (xp.float32, xp.complex64):
        return xp.float32
    return xp.float64


def eps(xp: Any, dtype: Any) -> float:
    return float(xp.finfo(real_dtype(xp, dtype)).eps)


#: Set by :func:`unitary_lowrank.device_resident`: run every step as a captured GPU step runs.
_FORCED_RESIDENT = [False]


@contextlib.contextmanager
def device_resident() -> Iterator[None]:
    """Within this block, steps run as they run inside a compiled or captured GPU step: nothing goes to the host.

    The r×r cores of :func:`~unitary_lowrank.project`,
    :func:`~unitary_lowrank.transport` and :func:`~unitary_lowrank.sketch`
    run as a fixed number of Jacobi sweeps in
    array operations on the arrays' device instead of LAPACK/cuSOLVER ``eigh``
    and ``svd`` (which check their status on the host), batched QRs stay on the
    device, and no branch reads a value. This is chosen automatically while
    torch tensors are captured into a CUDA graph; the block makes it testable
    anywhere (CPU included: same operations), lets a GPU user opt into it
    eagerly, and makes a ``torch.compile``-d step sync-free (compile inside
    the block; Inductor then takes minutes: the sweeps are unrolled).

    Accuracy is that of the LAPACK path (the test suite holds both to the
    same dense references). Cost: the sweeps are thousands of small array
    operations (r = 8: 7 rounds of ~25 operations, 10 sweeps in single and 14
    in double precision), for a captured graph rather than eager use. The
    value checks asked for with ``check_finite=True`` still read back to the
    host (the optimizer adapters pass ``False``), and so do the dense tools
    (:func:`~unitary_lowrank.polar`'s singular warning,
    :func:`~unitary_lowrank.reorthonormalize`'s convergence loop).

    Examples
    --------
    >>> import numpy as np, unitary_lowrank as ul
    >>> U = ul.random_unitary(16, dtype="float64", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((16, 4)), rng.standard_normal((16, 4))
    >>> with ul.device_resident():
    ...     V = ul.transport(U, A, B)
    >>> bool(np.allclose(V, ul.transport(U, A, B), atol=1e-12))
    True
    """
    previous = _FORCED_RESIDENT[0]
    _FORCED_RESIDENT[0] = True
    try:
        yield
    finally:
        _FORCED_RESIDENT[0] = previous


def resident(x: Any) -> bool:
    """True when a step on ``x`` must stay on its device: no host round trip, no LAPACK-style eigh/svd.

    That is a torch tensor being captured into a CUDA graph (where cuSOLVER's
    status checks, which read back to the host, would break the capture), or
    anything inside :func:`unitary_lowrank.device_resident`. The r×r cores then
    run as Jacobi sweeps (:mod:`~unitary_lowrank._jacobi`) on the device.
    Not chosen by itself under ``torch.compile``: the unrolled sweeps make a
    graph of thousands of operators, which Inductor takes many minutes to
    compile (measured on the CPU: 7.5 minutes for one k = 4 ``transport``);
    compile inside :func:`~unitary_lowrank.device_resident` to get it.
    """
    if _FORCED_RESIDENT[0]:
        return True
    from .backends import backend_for

    backend = backend_for(x)
    if backend.name != "torch" or x.device.type == "cpu":
        return False
    return backend.is_capturing(x)


def on_host(x: Any) -> bool:
    """True for NumPy arrays and CPU torch tensors: reading a value decides a branch without a device sync."""
    from .backends import backend_for

    if _FORCED_RESIDENT[0]:
        return False
    backend = backend_for(x)
    if backend.name == "numpy":
        return True
    # a CPU tensor, unless torch.compile is tracing (no value can be read then)
    return backend.name == "torch" and x.device.type == "cpu" and not backend.is_traced(x)


def stream(xp: Any, X: Any, Y: Any) -> Any:
    """``X @ Y`` with one large operand (U, G): through the backend, which may reorient it to its memory order."""
    from .backends import backend_for

    return backend_for(X).stream_product(xp, X, Y)


def small_core(xp: Any, function: Any, *arrays: Any, here: bool = False, **options: Any) -> Any:
    """``function(xp, *arrays, **options)`` — on the host, in NumPy, when the arrays live on a GPU.

    For the r×r core of a step, whose arrays are small: where the backend says
    so (:meth:`~unitary_lowrank.backends._base.Backend.host_transfer`), they go
    to NumPy, ``function`` runs there in the same dtype, and the arrays it
    returns (a tuple) come back. One round trip instead of dozens of kernel
    launches and the synchronizations of small cuSOLVER calls. ``here=True``
    keeps it where the arrays are (a closed form of a few elementwise operations).
    """
    from .backends import backend_for

    transfer = None if here or resident(arrays[0]) else backend_for(arrays[0]).host_transfer(arrays)
    if transfer is None:
        return function(xp, *arrays, **options)
    import array_api_compat.numpy as host

    to_host, back = transfer
    return tuple(back(x) for x in function(host, *(to_host(a) for a in arrays), **options))


def eye(xp: Any, n: int, like: Any) -> Any:
    return xp.eye(n, dtype=like.dtype, device=device_of(like))


def device_of(x: Any) -> Any:
    from .backends import backend_for

    if backend_for(x).name == "torch":
        return x.device  # what array_api_compat.device answers, without its type tests (traced by torch.compile)
    import array_api_compat

    return array_api_compat.device(x)


def batch_shape(*arrays: Any) -> tuple[int, ...]:
    """Broadcast shape of the leading (batch) axes of matrices."""
    shape: tuple[int, ...] = ()
    for a in arrays:
        shape = _broadcast(shape, tuple(a.shape[:-2]))
    return shape


def _broadcast(s: tuple[int, ...], t: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(s), len(t))
    s = (1,) * (n - len(s)) + s
    t = (1,) * (n - len(t)) + t
    out = []
    for a, b in zip(s, t, strict=True):
        if a != b and 1 not in (a, b):
            raise ValueError(f"batch shapes {s} and {t} do not broadcast")
        out.append(b if a == 1 else a)
    return tuple(out)


#: Batches of tall matrices up to this many elements are factored on the host when they live on a GPU.
HOST_QR_ELEMENTS = 1 << 22


def qr(xp: Any, X: Any) -> tuple[Any, Any]:
    """Orthonormal ``Q`` (..., m, l) spanning tall ``X`` (..., m, l), and ``R = Qᴴ X``: ``X = Q R`` to rounding.

    ``Q`` is the backend's reduced Householder QR of ``X + Δ``, where ``Δ`` is
    a tiny fixed perturbation (:func:`generic_shift`: ε times each column's
    largest entry, in a few rows). On an exactly rank-deficient ``X`` (repeated
    columns, a rank-1 update sketched at rank 8) each Householder step leaves
    the next columns' residual at rounding of the last one's: ε, ε², ε³, ...
    until it is subnormal, where LAPACK builds (MKL's ``cgeqrf`` in torch,
    measured) return Inf and NaN. ``Δ`` keeps every residual near ε‖X_j‖,
    so the extra columns of ``Q`` are some orthonormal completion, and changes
    the span of ``X`` by no more than Householder's own rounding does
    (columnwise backward error ε‖X_j‖). ``R`` is then taken from ``X`` itself
    (``Qᴴ X``, not triangular), so a zero block of ``X`` has exactly zero
    coordinates.

    A batch of them on a GPU (up to :data:`HOST_QR_ELEMENTS` elements) goes to
    the host and back: cuSOLVER factors a batch matrix by matrix, about 60 µs
    each (measured on an H200: 512 matrices of 64×2 took 31 ms), where NumPy's
    stacked LAPACK calls take well under a millisecond.
    """
    from .backends import backend_for

    backend = backend_for(X)
    batch = math.prod(X.shape[:-2])
    small = batch > 1 and batch * X.shape[-2] * X.shape[-1] <= HOST_QR_ELEMENTS
    if small and not resident(X) and backend.host_transfer((X,)):
        return small_core(xp, qr, X)  # on the host, NumPy arrays go straight to the NumPy backend
    if X.shape[-1] == 0 or X.shape[-2] == 0:
        return backend.qr(xp, X)
    Q, _ = backend.qr(xp, X, shift=generic_shift(xp, X))
    return Q, xp.matmul(adjoint(xp, Q), X)


def generic_shift(xp: Any, X: Any) -> Any:
    """The top rows of ``Δ``, a tiny fixed perturbation of ``X``: ``Δ_ij = δ_j E_ij`` for ``i < min(m, 2l)``, else 0.

    ``δ_j = ε · max(max_i |X_ij|, ε max_ij |X_ij|)``: ε times the column's
    largest entry, floored so that columns of negligible size do not sit at
    the bottom of the exponent range again. ``E`` (entries in [−½, ½), complex
    for complex ``X``) is a hash of the indices, ``frac(43758.5453 sin(12.9898 i
    + 78.233 j + ½)) − ½``: no random state, the same on every call, and well
    conditioned (κ < 600 in double precision for every m < 80, l ≤ min(m, 40),
    real and complex). Its 2l rows leave room for the l − 1 directions a
    rank-1 ``X`` lacks, whatever direction ``X`` has; the backend adds ``Δ``
    in the working copy its QR makes anyway.
    """
    m, l = X.shape[-2], X.shape[-1]
    E = _hash_matrix(xp, min(m, 2 * l), l, X)
    column = xp.max(xp.abs(X), axis=-2, keepdims=True)  # (..., 1, l); NaN or Inf in X make X + Δ non-finite anyway
    u = eps(xp, X.dtype)
    delta = u * xp.maximum(column, u * xp.max(column, axis=-1, keepdims=True))
    return E * xp.astype(delta, X.dtype)


#: ``E`` of :func:`generic_shift` by (namespace, rows, columns, dtype, device): a constant, made once (eager)
_HASH_MATRICES: dict[tuple[Any, ...], Any] = {}


def _hash_matrix(xp: Any, top: int, l: int, like: Any) -> Any:
    """``E`` (top×l) of :func:`generic_shift`, in ``like``'s dtype (complex: a second hash as imaginary part)."""
    from .backends import backend_for

    device = device_of(like)
    cache = backend_for(like).can_keep(like)
    key = (id(xp), top, l, like.dtype, device)
    if cache and key in _HASH_MATRICES:
        return _HASH_MATRICES[key]
    real = real_dtype(xp, like.dtype)
    i = xp.reshape(xp.arange(top, dtype=real, device=device), (top, 1))
    j = xp.reshape(xp.arange(l, dtype=real, device=device), (1, l))

    def hashed(a: float, b: float) -> Any:
        h = xp.sin(i * a + j * b + 0.5) * 43758.5453
        return h - xp.floor(h) - 0.5

    E = hashed(12.9898, 78.233)
    if is_complex(xp, like):
        E = xp.astype(E, like.dtype) + 1j * xp.astype(hashed(39.3468, 11.135), like.dtype)
    if cache:
        if len(_HASH_MATRICES) >= 256:
            _HASH_MATRICES.clear()
        _HASH_MATRICES[key] = E
    return E


def orthonormal_basis(xp: Any, X: Any) -> Any:
    """Orthonormal columns spanning ``X``: the ``Q`` of the backend's reduced Householder QR.

    ``X`` is first scaled by a power of two to entries of order 1: ``Q`` does
    not change, and subnormal or huge columns (whose squared norms would
    underflow or overflow inside the QR) cannot turn into NaN.
    """
    return qr(xp, times_power_of_two(xp, X, -scale_exponent(xp, X)))[0]


def scale_exponent(xp: Any, X: Any) -> Any:
    """``e`` with ``2^e ≤ max |X| < 2^(e+1)`` over the last two axes, shape (..., 1, 1), real; 0 for zero or empty X.

    Factors are multiplied by ``2^−e`` before they are multiplied together or
    squared, so that neither overflows nor underflows: a power of two scales
    exactly, with no rounding, and exponents add without overflow.
    """
    real = real_dtype(xp, X.dtype)
    if X.shape[-1] == 0 or X.shape[-2] == 0:
        return xp.zeros(tuple(X.shape[:-2]) + (1, 1), dtype=real, device=device_of(X))
    largest = xp.max(xp.abs(X), axis=(-2, -1), keepdims=True)
    positive = largest > 0
    return xp.where(positive, xp.floor(xp.log2(xp.where(positive, largest, xp.ones_like(largest)))), 0.0 * largest)


def power_of_two(xp: Any, e: Any) -> Any:
    """``2^e`` for integer-valued real ``e``, exact while representable."""
    return xp.pow(xp.full_like(e, 2.0), e)


def times_power_of_two(xp: Any, X: Any, e: Any) -> Any:
    """``X · 2^e``, exact: in two half-way factors, so that neither over- nor underflows for ``e`` of a finite scale."""
    half = xp.floor(e / 2)
    return X * xp.astype(power_of_two(xp, half), X.dtype) * xp.astype(power_of_two(xp, e - half), X.dtype)


def _finite_matrices(xp: Any, X: Any) -> Any:
    """Boolean mask over the batch, shape (..., 1, 1): every entry of the matrix is finite."""
    return xp.all(xp.isfinite(X), axis=(-2, -1), keepdims=True)


def safe_svd(xp: Any, X: Any) -> tuple[Any, Any, Any]:
    """Thin SVD of ``X + Δ`` (:func:`generic_shift`), with NaN factors for a matrix holding NaN or Inf.

    LAPACK's complex SVD can loop forever on an Inf entry, so such a matrix is
    not passed to it: the mask costs one elementwise pass over ``X``, which
    the callers only use on small (r×r, N×l) matrices or inside O(N³) work.
    The shift ``Δ`` (ε times each column's largest entry) keeps an exactly
    rank-deficient ``X`` from driving the bidiagonalization into subnormals:
    MKL's ``cgesdd`` (torch, complex64) failed to converge on a 20×11 matrix
    of equal columns. It moves singular values by at most ``‖Δ‖₂ ≤ ε ‖X‖_F``,
    as the SVD's own rounding does.
    """
    finite = _finite_matrices(xp, X)
    X = xp.where(finite, X, xp.zeros_like(X))
    if X.shape[-1] and X.shape[-2]:
        X = add_to_top_rows(xp, X, generic_shift(xp, X))
    if resident(X) and X.shape[-1] and X.shape[-2]:
        W, sigma, Vh = _resident_svd(xp, X)
    else:
        W, sigma, Vh = xp.linalg.svd(X, full_matrices=False)
    nan = float("nan")
    return (
        xp.where(finite, W, xp.full_like(W, nan)),
        xp.where(finite[..., 0], sigma, xp.full_like(sigma, nan)),
        xp.where(finite, Vh, xp.full_like(Vh, nan)),
    )


def add_to_top_rows(xp: Any, X: Any, shift: Any) -> Any:
    """``X`` with ``shift`` (..., t, m) added to its first t rows, as a new array."""
    top = shift.shape[-2]
    head = X[..., :top, :] + shift
    return head if top == X.shape[-2] else xp.concat([head, X[..., top:, :]], axis=-2)


def safe_eigh(xp: Any, H: Any) -> tuple[Any, Any]:
    """Hermitian eigendecomposition with the same NaN guard as :func:`safe_svd`."""
    finite = _finite_matrices(xp, H)
    H = xp.where(finite, H, xp.zeros_like(H))
    if resident(H) and H.shape[-1]:
        from ._jacobi import jacobi_eigh

        e = scale_exponent(xp, H)  # Jacobi's rotations expect entries of order one
        lam, V = jacobi_eigh(xp, times_power_of_two(xp, H, -e))
        lam = times_power_of_two(xp, lam, e[..., 0])
    else:
        lam, V = xp.linalg.eigh(H)
    nan = float("nan")
    return xp.where(finite[..., 0], lam, xp.full_like(lam, nan)), xp.where(finite, V, xp.full_like(V, nan))


def _resident_svd(xp: Any, X: Any) -> tuple[Any, Any, Any]:
    """Thin SVD by Jacobi sweeps on the device (:mod:`~unitary_lowrank._jacobi`), for any (..., m, n).

    Scaled to entries of order one by a power of two; a tall matrix is first
    reduced by a Householder QR (``X = Q R``, the SVD of the n×n ``R``), a wide
    one through its adjoint.
    """
    from ._jacobi import jacobi_svd
    from .backends import backend_for

    m, n = X.shape[-2], X.shape[-1]
    if m < n:
        W, sigma, Vh = _resident_svd(xp, adjoint(xp, X))
        return adjoint(xp, Vh), sigma, adjoint(xp, W)
    e = scale_exponent(xp, X)
    X = times_power_of_two(xp, X, -e)
    if m > n:
        Q, R = backend_for(X).qr(xp, X)
        W, sigma, Vh = jacobi_svd(xp, R)
        W = xp.matmul(Q, W)
    else:
        W, sigma, Vh = jacobi_svd(xp, X)
    return W, times_power_of_two(xp, sigma, e[..., 0]), Vh
