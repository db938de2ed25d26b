"""What the core needs on ``jax.numpy`` arrays beyond the Array API: draws from explicit ``jax.random`` keys."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._base import Backend, Seed, seed_entropy

__all__ = ["BACKEND", "JaxBackend", "as_key"]


def as_key(seed: Seed) -> jax.Array:
    """A ``jax.random`` key from an int, a sequence of ints (folded in), or a key (returned as is).

    Ints may be traced (e.g. a step count inside ``jax.jit``).
    """
    import numpy as np

    if isinstance(seed, jax.Array) and (jnp.issubdtype(seed.dtype, jax.dtypes.prng_key) or seed.shape == (2,)):
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**31))
    traced = isinstance(seed, jax.Array) or (
        isinstance(seed, list | tuple) and any(isinstance(s, jax.Array) for s in seed)
    )
    if not traced:
        seed = seed_entropy(seed)  # validates: non-negative ints, sequences of them, or None
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, list | tuple):
        key = jax.random.key(seed[0])
        for part in seed[1:]:
            key = jax.random.fold_in(key, part)
        return key
    return jax.random.key(seed)  # type: ignore[arg-type]  # an int here, or a traced one


class JaxBackend(Backend):
    """``jax.numpy`` arrays, concrete or traced. Draws from an explicit ``jax.random`` key."""

    name = "jax"
    supports_inplace = False
    array_type = jax.Array
    native_keys = True

    def expm(self, xp: Any, X: Any) -> Any:
        import jax.scipy.linalg

        return jax.scipy.linalg.expm(X)

    def is_traced(self, x: Any) -> bool:
        # Concrete jax.Arrays can be read eagerly (array_api_compat errs on the side of
        # calling every JAX array lazy); only tracers inside jit/vmap/grad cannot.
        return isinstance(x, jax.core.Tracer)

    def wide_dtype(self, xp: Any, dtype: Any, device: Any) -> Any | None:
        # without x64 mode JAX would quietly compute "float64" in float32 (and warn)
        return super().wide_dtype(xp, dtype, device) if jax.config.read("jax_enable_x64") else None

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        # complex dtypes: real and imaginary parts each of variance 1/2
        return jax.random.normal(as_key(seed), shape, dtype=dtype)

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, *, seed: Seed, device: Any) -> Any:
        return jax.random.uniform(as_key(seed), shape, dtype=dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


BACKEND = JaxBackend()
