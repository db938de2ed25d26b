"""What every backend provides, with portable defaults."""

from __future__ import annotations

from collections.abc import Sequence
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

    # -- traced arrays ------------------------------------------------------
    def is_traced(self, x: Any) -> bool:
        """True if ``x``'s values cannot be read now (a tracer, a lazy graph)."""
        import array_api_compat

        return array_api_compat.is_lazy_array(x)

    # -- factorizations -----------------------------------------------------
    def qr(self, xp: Any, X: Any) -> tuple[Any, Any]:
        """Reduced Householder QR ``X = Q R`` of a tall N×m matrix (m ≤ 2k).

        Householder keeps ``Q`` orthonormal to rounding even when ``X`` is rank
        deficient (Gram–Schmidt does not).
        """
        Q, R = xp.linalg.qr(X, mode="reduced")
        return Q, R

    # -- in-place updates ---------------------------------------------------
    supports_inplace = False

    def add_product_(self, out: Any, X: Any, Y: Any) -> Any:
        """``out += X @ Y`` in place, without an N×N temporary; returns ``out``."""
        raise TypeError(
            f"arrays of {type(out).__module__}.{type(out).__name__} cannot be updated in place; "
            "call without out= and use the returned array"
        )

    def copy_(self, out: Any, U: Any) -> Any:
        """Copy ``U`` into ``out`` (same shape and dtype); returns ``out``."""
        raise TypeError(
            f"arrays of {type(out).__module__}.{type(out).__name__} cannot be written in place; "
            "call without out= and use the returned array"
        )


def _numpy_generator(seed: Seed):
    import numpy as np

    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, int | np.integer):
        return np.random.default_rng(seed)
    if isinstance(seed, Sequence) and all(isinstance(s, int | np.integer) for s in seed):
        return np.random.default_rng([int(s) for s in seed])
    raise TypeError(
        f"seed must be an int, a sequence of ints, None or a numpy.random.Generator; got {type(seed).__name__}"
    )


def _is_complex(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, "complex floating")


def _real_name(xp: Any, dtype: Any) -> str:
    if dtype in (xp.float32, xp.complex64):
        return "float32"
    if dtype in (xp.float64, xp.complex128):
        return "float64"
    raise TypeError(f"expected float32, float64, complex64 or complex128; got {dtype}")
