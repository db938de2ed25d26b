"""Counter-based random draws: a hash of (key, element index), computed with array operations on the device.

A *key* is an integer array of the arrays' own library (e.g. a torch int64
tensor ``[seed, parameter, step]``; not JAX, whose integer arrays are
``jax.random`` keys, used as such). The draws are a pure function of the
key's values and of the element's index, so they need no generator object:

- ``torch.compile`` traces them (Dynamo cannot pass a ``torch.Generator`` into a
  graph), and a CUDA graph replays them with whatever the key holds at replay;
- an optimizer keeps one small key tensor per parameter and advances it in
  place (``key[-1] += 1``): a graph-safe random state, on the device;
- the same key gives the same draws on every device and process.

The hash is SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014; constants from Vigna's ``splitmix64.c``),
applied to the counter ``index XOR mixed key``: 53 bits of a hash make a
uniform in (0, 1); the two 32-bit halves of one hash, a Box–Muller pair of
normals. Integer arithmetic wraps modulo 2⁶⁴ (int64 arrays, two's
complement); right shifts are made logical by masking.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ._arrays import device_of
from ._validate import namespace
from .backends import backend_for

# SplitMix64's constants as signed 64-bit integers (the unsigned values minus 2⁶⁴)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX_1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX_2 = 0x94D049BB133111EB - (1 << 64)


def is_key(seed: Any) -> bool:
    """True when ``seed`` is an integer array of one or more axes (a counter key), not an int, sequence or generator."""
    if isinstance(seed, numbers.Integral) or not hasattr(seed, "dtype") or getattr(seed, "ndim", 0) < 1:
        return False  # an int (NumPy's integer scalars too), a sequence or a generator seeds a generator
    if backend_for(seed).native_keys:
        return False  # JAX has keys of its own (jax.random), which its backend uses
    return namespace("sketch", seed=seed).isdtype(seed.dtype, "integral")  # in the key's own library


def _shift_right(xp: Any, z: Any, s: int) -> Any:
    """Logical right shift of int64 ``z`` by ``s`` bits (the arithmetic shift with the sign bits masked off)."""
    return xp.bitwise_and(xp.bitwise_right_shift(z, s), (1 << (64 - s)) - 1)


def _splitmix(xp: Any, z: Any) -> Any:
    z = z + _GOLDEN
    z = xp.bitwise_xor(z, _shift_right(xp, z, 30)) * _MIX_1
    z = xp.bitwise_xor(z, _shift_right(xp, z, 27)) * _MIX_2
    return xp.bitwise_xor(z, _shift_right(xp, z, 31))


def _hashes(xp: Any, key: Any, count: int, device: Any) -> Any:
    """``count`` 64-bit hashes (int64) of the indices 0, 1, … under ``key`` (an integer array, mixed in order)."""
    words = xp.reshape(xp.astype(key, xp.int64), (-1,))
    h = xp.zeros((1,), dtype=xp.int64, device=device)
    for i in range(words.shape[0]):  # the key's length is static: a few words
        h = _splitmix(xp, xp.bitwise_xor(h, words[i : i + 1]))
    # the counter enters through a XOR with the mixed key (a product of the index with a constant would be
    # folded by Inductor into 64-bit index arithmetic, which it refuses to let wrap)
    return _splitmix(xp, xp.bitwise_xor(xp.arange(count, dtype=xp.int64, device=device), h))


def _uniform_bits(xp: Any, key: Any, count: int, device: Any) -> Any:
    """``count`` uniforms in (0, 1), float64, 53 random bits each."""
    return (xp.astype(_shift_right(xp, _hashes(xp, key, count, device), 11), xp.float64) + 0.5) * 2.0**-53


def key_uniform(xp: Any, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Uniform draws in (0, 1) of real ``dtype`` and ``shape``, a function of ``key``'s values."""
    count = math.prod(shape)
    u = _uniform_bits(xp, key, count, device_of(key))
    info = xp.finfo(dtype)  # rounding to a short dtype could reach 0 or 1
    return xp.reshape(xp.clip(xp.astype(u, dtype), float(info.smallest_normal), 1 - float(info.eps)), shape)


def key_normal(xp: Any, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Standard normal draws of ``dtype`` and ``shape`` (complex: ``(x + i y)/√2``), a function of ``key``'s values.

    One hash per pair of draws: its two 32-bit halves are the two uniforms of a
    Box–Muller pair ``r (cos θ, sin θ)`` (tails reach 6.7σ; ample for the test
    matrices of a sketch). Computed in the draws' own precision.
    """
    complex_ = xp.isdtype(dtype, "complex floating")
    real = xp.float32 if dtype in (xp.float32, xp.complex64) else xp.float64
    size = math.prod(shape)
    pairs = size if complex_ else (size + 1) // 2
    z = _hashes(xp, key, pairs, device_of(key))
    high = xp.astype(_shift_right(xp, z, 32), real)
    low = xp.astype(xp.bitwise_and(z, 0xFFFFFFFF), real)
    u = (high + 0.5) * 2.0**-32  # in (0, 1]: rounding to single precision may reach 1, which gives r = 0
    theta = (low + 0.5) * (2 * math.pi * 2.0**-32)
    radius = xp.sqrt(-2.0 * xp.log(u)) * (math.sqrt(0.5) if complex_ else 1.0)
    x, y = radius * xp.cos(theta), radius * xp.sin(theta)
    if complex_:
        return xp.reshape(xp.astype(x, dtype) + 1j * xp.astype(y, dtype), shape)
    return xp.reshape(xp.concat([x, y])[:size], shape)
