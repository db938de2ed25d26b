"""What every backend provides, with portable defaults."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

#: A seed: an ``int``, a sequence of ``int`` (mixed into one stream, e.g.
#: ``(group_seed, step, parameter_index)``), ``None`` for fresh entropy, or a
#: framework's own generator (``numpy.random.Generator``, ``torch.Generator``,
#: a ``jax.random`` key).
Seed = int | Sequence[int] | None | Any


class Backend:
    """Extras for one array library.

    Subclasses override what their framework does better; the defaults here
    work for any Array API namespace.
    """

    name = "portable"
    #: The library's array class (subclasses, such as ``torch.nn.Parameter``, are found through it)
    array_type: type | None = None

    # -- random draws -------------------------------------------------------
    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        """Standard normal draws; complex dtypes get ``(x + i y)/√2`` (unit variance)."""
        import numpy as np

        rng = _numpy_generator(seed)
        real = _real_name(xp, dtype)
        if _is_complex(xp, dtype):
            values = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
            values = values.astype("complex64" if real == "float32" else "complex128")
        else:
            values = rng.standard_normal(shape, dtype=real)
        return xp.asarray(values, dtype=dtype, device=device)

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        """Uniform draws in the open interval (0, 1), real ``dtype``."""
        rng = _numpy_generator(seed)
        values = rng.random(shape, dtype=_real_name(xp, dtype))
        tiny = float(xp.finfo(dtype).smallest_normal)
        values[values == 0] = tiny
        return xp.asarray(values, dtype=dtype, device=device)

    def sums_finite(self, xp: Any, arrays: Iterable[Any]) -> list[bool]:
        """Whether the sum of each array is finite: one reduction each, no warning where it overflows.

        A sum propagates NaN and Inf, so a finite sum proves the entries
        finite; a non-finite one (a non-finite entry, or finite entries that
        sum past the dtype's range) sends the caller to the entries one by one.
        NumPy, and libraries built on it, warn on that overflow: not here.
        """
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore"):
            return [bool(xp.isfinite(xp.sum(x))) for x in arrays]

    # -- traced arrays ------------------------------------------------------
    def is_traced(self, x: Any) -> bool:
        """True if ``x``'s values cannot be read now (a tracer, a lazy graph)."""
        import array_api_compat

        return array_api_compat.is_lazy_array(x)

    def can_keep(self, x: Any) -> bool:
        """True if a constant array made now (like ``x``) may be kept for later calls.

        Not while tracing (the graph computes it, a constant to the compiler).
        """
        return not self.is_traced(x)

    def is_capturing(self, x: Any) -> bool:
        """True if ``x``'s device is recording a graph now (a CUDA-graph capture): nothing may be read back."""
        return False

    def refusal(self, x: Any) -> str | None:
        """Why the primitives cannot take ``x`` although its library is known (a sharded tensor), or ``None``."""
        return None

    def reads_values(self, x: Any) -> bool:
        """True if a value of ``x`` can be read on the host to pick a branch: no device sync, no trace broken."""
        return False

    #: Integer arrays of this library are its own PRNG keys (``jax.random``), not counter keys
    native_keys = False

    # -- arrays -------------------------------------------------------------
    def device(self, x: Any) -> Any:
        """The device of ``x``, as ``array_api_compat.device`` reads it."""
        import array_api_compat

        return array_api_compat.device(x)

    # -- factorizations -----------------------------------------------------
    def qr(self, xp: Any, X: Any, shift: Any = None) -> tuple[Any, Any]:
        """Reduced Householder QR ``X + Δ = Q R`` of a tall N×m matrix (m ≤ 2k).

        Householder keeps ``Q`` orthonormal to rounding even when ``X`` is rank
        deficient (Gram–Schmidt does not). ``shift``: ``Δ``'s top rows (..., t, m),
        added to the first t rows of ``X`` in a working copy (``X`` is not
        changed); its other rows are zero.
        """
        Q, R = xp.linalg.qr(X if shift is None else add_to_top_rows(xp, X, shift), mode="reduced")
        return Q, R

    def power_of_two(self, xp: Any, e: Any) -> Any:
        """``2^e`` elementwise for integer-valued real ``e``: exact while representable."""
        return xp.pow(xp.full_like(e, 2.0), e)

    def matrix_transpose(self, xp: Any, X: Any) -> Any:
        """``X`` with its last two axes swapped (a view where the library has them)."""
        return xp.matrix_transpose(X)

    def adjoint_view(self, xp: Any, X: Any) -> Any:
        """``Xᴴ`` sharing ``X``'s memory (writes to it land in ``X``); ``None`` where the library has no such view."""
        return None

    def row_major(self, X: Any) -> Any:
        """``X`` in row-major (C) order, as users' own arrays usually are (no-op where layout is hidden)."""
        return X

    def stream_product(self, xp: Any, X: Any, Y: Any) -> Any:
        """``X @ Y`` where one operand is a large matrix (U, G) to be streamed in its own memory order."""
        return xp.matmul(X, Y)

    def expm(self, xp: Any, X: Any) -> Any:
        """The matrix exponential of (a batch of) square ``X``: the dense step that projUNN approximates, O(N³)."""
        raise NotImplementedError(f"no matrix exponential for arrays of {type(X).__module__}.{type(X).__name__}")

    # -- small r×r work ------------------------------------------------------
    def wide_dtype(self, xp: Any, dtype: Any, device: Any) -> Any | None:
        """The double-precision dtype of ``dtype``'s kind (float64, complex128) on ``device``; ``None`` if it has none.

        The r×r core of a projUNN-D step is computed in it: ``polar(K) − I``
        rounded in single precision is off by ε absolutely, not relatively, and
        that error walks the weight off the unitary group by ~ε per step.
        """
        return xp.complex128 if _is_complex(xp, dtype) else xp.float64

    def host_transfer(self, arrays: Sequence[Any]) -> tuple[Any, Any] | None:
        """``(to_numpy, back)`` when the step's r×r core of ``arrays`` is better done on the host; else ``None``.

        The core (an r×r eigendecomposition or SVD and a few dozen elementwise
        operations, r ≤ 2k) is latency-bound. On a GPU each of its operations
        is a kernel launch and each small cuSOLVER call waits for the device;
        on the host it costs one round trip. Libraries whose arrays must stay
        where they are (traced JAX arrays, autograd graphs) return ``None``.
        """
        return None

    # -- in-place updates ---------------------------------------------------
    supports_inplace = False

    def empty_like(self, xp: Any, U: Any, shape: tuple[int, ...]) -> Any:
        """An uninitialized array of ``shape`` with ``U``'s dtype and device (and layout, where shapes match)."""
        import array_api_compat

        return xp.empty(shape, dtype=U.dtype, device=array_api_compat.device(U))

    def add_product_(self, out: Any, X: Any, Y: Any) -> Any:
        """``out += X @ Y`` in place, without an N×N temporary; returns ``out``."""
        raise TypeError(
            f"arrays of {type(out).__module__}.{type(out).__name__} cannot be updated in place; "
            "call without out= and use the returned array"
        )

    def out_problem(self, out: Any, U: Any) -> str | None:
        """Why ``out`` cannot receive the step of ``U``, or ``None`` if it can.

        Checked before any work: read-only, broadcast or stride-0 outputs,
        outputs that overlap ``U`` without being ``U`` itself (``out=U.T``), and
        (torch) outputs that autograd records.
        """
        return None

    def copy_(self, out: Any, U: Any) -> Any:
        """Copy ``U`` into ``out`` (same shape and dtype); returns ``out``."""
        raise TypeError(
            f"arrays of {type(out).__module__}.{type(out).__name__} cannot be written in place; "
            "call without out= and use the returned array"
        )


def add_to_top_rows(xp: Any, X: Any, shift: Any) -> Any:
    """``X`` with ``shift`` (..., t, m) added to its first t rows, as a new array."""
    top = shift.shape[-2]
    head = X[..., :top, :] + shift
    return head if top == X.shape[-2] else xp.concat([head, X[..., top:, :]], axis=-2)


def seed_entropy(seed: Any) -> int | tuple[int, ...] | None:
    """``None``, a non-negative int, or a tuple of them, from what users pass as a seed.

    Accepts Python and NumPy integers and sequences of them; refuses the rest
    (floats, strings, negative ints, bools) with an error that names ``seed``.
    Frameworks' own generators are handled by each backend before this.
    """
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        return int(seed)
    if isinstance(seed, Sequence) and not isinstance(seed, str | bytes) and len(seed) > 0:
        return tuple(seed_entropy(s) for s in seed)  # type: ignore[misc]
    raise TypeError(
        "seed must be None, a non-negative int, a sequence of them, or a generator of the array's library "
        f"(numpy.random.Generator, torch.Generator, a jax.random key); got {type(seed).__name__} {seed!r}"
    )


def _numpy_generator(seed: Seed):
    import numpy as np

    if isinstance(seed, np.random.Generator):
        return seed
    entropy = seed_entropy(seed)
    return np.random.default_rng(list(entropy) if isinstance(entropy, tuple) else entropy)


def _is_complex(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, "complex floating")


def _real_name(xp: Any, dtype: Any) -> str:
    if dtype in (xp.float32, xp.complex64):
        return "float32"
    if dtype in (xp.float64, xp.complex128):
        return "float64"
    raise TypeError(f"expected float32, float64, complex64 or complex128; got {dtype}")
