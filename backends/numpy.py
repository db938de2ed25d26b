"""NumPy/SciPy backend: seeded draws, single-precision QR, and a rank-r update that accumulates in place."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from ._base import Backend, Seed, _numpy_generator

__all__ = ["BACKEND", "NumpyBackend"]

# Below this size, updates go through batched products of whole matrices
# (Python overhead per block ~ a few µs; a 64×64 update is ~1 µs of work).
_PER_MATRIX_BLAS_MIN_N = 128
# Buffer for batches of small matrices: ~256 KiB in float64, well inside L2.
_SMALL_BUFFER_ELEMENTS = 1 << 15
# Smallest row block of the in-place update, in elements: each block costs a few µs of Python and
# call overhead, so short rows (a tall n×p U) are grouped into blocks of at least this size.
_MIN_BLOCK_ELEMENTS = 1 << 16


class NumpyBackend(Backend):
    """NumPy arrays on the CPU.

    Random draws use ``numpy.random.default_rng`` (PCG64), which gives the same
    stream for the same seed on every platform and process.
    """

    name = "numpy"
    supports_inplace = True
    array_type = np.ndarray

    def expm(self, xp: Any, X: Any) -> Any:
        import scipy.linalg

        return scipy.linalg.expm(X)

    def device(self, x: Any) -> str:
        return "cpu"

    def is_traced(self, x: Any) -> bool:
        return False

    def sums_finite(self, xp: Any, arrays: Any) -> list[bool]:
        with np.errstate(over="ignore", invalid="ignore"):
            return [bool(np.isfinite(np.add.reduce(x, axis=None))) for x in arrays]

    def reads_values(self, x: Any) -> bool:
        return True

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        rng = _numpy_generator(seed)
        dtype = np.dtype(dtype)
        if dtype.kind == "c":
            real = np.finfo(dtype).dtype
            values = np.empty(shape, dtype=dtype)
            values.real = rng.standard_normal(shape, dtype=real)
            values.imag = rng.standard_normal(shape, dtype=real)
            values *= np.sqrt(0.5).astype(real)
            return values
        return rng.standard_normal(shape, dtype=dtype)

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        rng = _numpy_generator(seed)
        values = rng.random(shape, dtype=np.dtype(dtype))
        values[values == 0] = np.finfo(dtype).tiny
        return values

    def qr(self, xp: Any, X: np.ndarray, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Householder QR of the N×2k block ``X`` (plus ``shift`` on its top rows, see :meth:`Backend.qr`).

        NumPy's LAPACK, except for large single-precision blocks: ``numpy.linalg.qr``
        computes those in double (twice the memory), so SciPy's ``?geqrf`` runs in
        the input's precision — single-threaded, because SciPy links its own
        OpenBLAS, whose threads would otherwise contend with NumPy's for the cores
        in the products around it. Small blocks (under 64 Ki elements) stay in
        NumPy: the double-precision copy is cheap there, and switching SciPy's
        thread pool costs about 50 µs a call — while leaving SciPy's pool
        multi-threaded made float32 steps at N = 4096, k = 4 take 29–45 ms
        instead of 15–20 ms (measured, 2 cores). The shift is added to the one
        working copy each path makes anyway (the double-precision copy, or the
        array SciPy overwrites).
        """
        single = X.dtype.char in "fF"
        if X.ndim != 2 or not single or X.size < 1 << 16:
            work = X.astype(np.complex128 if X.dtype.char in "FD" else np.float64)  # a copy, factored in place
            if shift is not None:
                work[..., : shift.shape[-2], :] += shift
            Q, R = _reduced_qr(work)
            del work
            return (Q.astype(X.dtype), R.astype(X.dtype)) if single else (Q, R)
        import scipy.linalg

        work = X.copy()  # SciPy overwrites it; the caller reads X again (R = Qᴴ X)
        if shift is not None:
            work[: shift.shape[-2]] += shift
        with _single_threaded_blas():
            Q, R = scipy.linalg.qr(work, mode="economic", overwrite_a=True, check_finite=False)
        return Q, R

    def out_problem(self, out: np.ndarray, U: np.ndarray) -> str | None:
        if not out.flags.writeable:
            return "is read-only (or a broadcast view); pass a writable array, e.g. out=U.copy()"
        if out.size and any(stride == 0 and size > 1 for stride, size in zip(out.strides, out.shape, strict=True)):
            return "repeats memory (a broadcast or stride-0 view); pass an array that owns its elements"
        if not _same_view(out, U) and np.may_share_memory(out, U):
            return "overlaps U without being the same view of it; pass out=U itself (in place) or a separate array"
        return None

    def empty_like(self, xp: Any, U: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.empty_like(U) if tuple(U.shape) == tuple(shape) else np.empty(shape, dtype=U.dtype)

    def power_of_two(self, xp: Any, e: np.ndarray) -> np.ndarray:
        return np.power(2.0, e)  # in e's dtype (a Python float takes the array's): the same ufunc loop

    def matrix_transpose(self, xp: Any, X: np.ndarray) -> np.ndarray:
        return X.swapaxes(-1, -2)  # the view xp.matrix_transpose returns, without its Python wrappers

    def row_major(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X)

    def stream_product(self, xp: Any, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``X @ Y``; a column-major large operand enters as its row-major transpose: ``(Yᵀ Xᵀ)ᵀ``.

        Measured (N = 4096, float32, 2 cores): a transport step on a column-major U
        took 16.2 ms this way against 18.0 ms as ``X @ Y``; on a row-major U it takes 11.9 ms.
        """
        big = X if X.size >= Y.size else Y
        if big.ndim >= 2 and not big.flags.c_contiguous and np.swapaxes(big, -1, -2).flags.c_contiguous:
            return np.swapaxes(np.matmul(np.swapaxes(Y, -1, -2), np.swapaxes(X, -1, -2)), -1, -2)
        return np.matmul(X, Y)

    def copy_(self, out: np.ndarray, U: np.ndarray) -> np.ndarray:
        if out is not U:
            np.copyto(out, U)
        return out

    def add_product_(self, out: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """``out += X @ Y`` in place, streaming ``out`` once, with O(N k) extra memory.

        ``out`` is (..., n, p); ``X`` is (..., n, r) and ``Y`` is (..., r, p),
        broadcastable to ``out``'s batch shape. Rows of ``out`` are updated in
        blocks of 2r rows (at least 4, and at least 64 Ki elements, so that short
        rows do not pay per-block overhead) through a small buffer, with NumPy's own
        BLAS: no N×N temporary, and no second BLAS library whose thread pool
        would fight NumPy's for the cores (SciPy's ``?gemm`` with β = 1, the
        obvious alternative, ran 2× slower interleaved with NumPy products on
        2 cores).
        """
        n, p, r = out.shape[-2], out.shape[-1], X.shape[-1]
        batch = out.shape[:-2]
        if out.ndim == 2 and max(n, p) < _PER_MATRIX_BLAS_MIN_N:
            out += X @ Y
            return out
        X = np.broadcast_to(X, batch + X.shape[-2:])
        Y = np.broadcast_to(Y, batch + Y.shape[-2:])
        if max(n, p) < _PER_MATRIX_BLAS_MIN_N:
            return _add_product_small(out, X, Y)
        for index in np.ndindex(*batch):
            target, x, y = out[index], X[index], Y[index]
            if target.flags.f_contiguous and not target.flags.c_contiguous:
                # column-major (LAPACK output, a .T view): its transpose is row-major, so
                # stream that, Uᵀ += Yᵀ Xᵀ, instead of cutting strided rows (12× slower at N = 2048)
                target, x, y = target.T, y.T, x.T
            _add_rows_(target, x, y, r)
        return out


def _reduced_qr(work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``numpy.linalg.qr(work, mode="reduced")`` of a double-precision array, overwriting ``work``.

    The LAPACK gufuncs ``numpy.linalg.qr`` calls (``?geqrf``, then ``?orgqr``),
    called directly: the same factors bit for bit, without the wrapper's copy
    of its input and its ~40 Python calls (most of a 64×64 step's fixed cost
    after the products). Falls back to ``numpy.linalg.qr`` where NumPy lacks them.
    """
    if _QR_GUFUNCS is None:
        return np.linalg.qr(work, mode="reduced")
    raw, reduced = _QR_GUFUNCS
    signature = "D" if work.dtype.kind == "c" else "d"
    with np.errstate(call=_qr_failed, invalid="call", over="ignore", divide="ignore", under="ignore"):
        tau = raw(work, signature=f"{signature}->{signature}")
        Q = reduced(work, tau, signature=f"{signature}{signature}->{signature}")
    return Q, np.triu(work[..., : min(work.shape[-2:]), :])


def _qr_failed(error: str, flag: int) -> None:
    raise np.linalg.LinAlgError("Incorrect argument found while performing QR factorization")


try:  # NumPy ≥ 1.22, public numpy.linalg.qr's own building blocks
    from numpy.linalg import _umath_linalg

    _QR_GUFUNCS: tuple[Any, Any] | None = (_umath_linalg.qr_r_raw, _umath_linalg.qr_reduced)
except (ImportError, AttributeError):  # pragma: no cover - older or rearranged NumPy
    _QR_GUFUNCS = None


def _add_rows_(target: np.ndarray, x: np.ndarray, y: np.ndarray, r: int) -> None:
    """``target += x @ y`` for one matrix, row block by row block through a small buffer."""
    n, p = target.shape
    rows = min(n, max(4, 2 * r, _MIN_BLOCK_ELEMENTS // max(p, 1)))
    buffer = np.empty((rows, p), dtype=target.dtype)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = buffer[: stop - start]
        np.matmul(x[start:stop], y, out=block)
        target[start:stop] += block


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` address the same elements in the same order (``out=U`` is an in-place step)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
    )


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it SciPy's BLAS keeps its threads
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _single_threaded_blas():
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def _add_product_small(out: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Batches of small matrices: batched products through a cache-sized buffer of whole matrices."""
    n, p = out.shape[-2:]
    if out.ndim == 2:
        out += X @ Y
        return out
    flat_out = out.reshape(-1, n, p)  # a view for a contiguous out
    if not np.shares_memory(flat_out, out):
        out += np.matmul(X, Y)
        return out
    flat_X, flat_Y = X.reshape(-1, *X.shape[-2:]), Y.reshape(-1, *Y.shape[-2:])
    chunk = max(1, _SMALL_BUFFER_ELEMENTS // max(n * p, 1))
    buffer = np.empty((min(chunk, len(flat_out)), n, p), dtype=out.dtype)
    for start in range(0, len(flat_out), chunk):
        stop = min(start + chunk, len(flat_out))
        block = buffer[: stop - start]
        np.matmul(flat_X[start:stop], flat_Y[start:stop], out=block)
        flat_out[start:stop] += block
    return out


BACKEND = NumpyBackend()
#: The host-drawing backend for namespaces without one of their own.
PORTABLE = Backend()
