"""Checks at the public boundary: shapes, dtypes, finiteness.

Each failure names the function, the argument, what was expected and what came.
Value checks (finiteness, unitarity) are skipped on lazy arrays such as JAX
tracers inside ``jax.jit``, where values are not known at trace time.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from ._arrays import batch_shape
from .backends import backend_for

SUPPORTED_DTYPES = ("float32", "float64", "complex64", "complex128")


#: array type → its namespace, once known: a dictionary lookup instead of array_api_compat's type tests on
#: every call (fewer Python calls per step, and nothing for torch.compile to trace through)
_NAMESPACES: dict[type, Any] = {}


def namespace(func: str, **arrays: Any) -> Any:
    """``array_namespace`` of the arguments, with an error that names them."""
    kinds = {type(x) for x in arrays.values()}
    if len(kinds) == 1:
        kind = next(iter(kinds))
        known = _NAMESPACES.get(kind)
        if known is not None:
            return known
        first = next(iter(arrays.values()))
        for base in kind.__mro__[1:]:  # a subclass of a known array type (torch.nn.Parameter) has its namespace
            known = _NAMESPACES.get(base)
            if known is not None and backend_for(first).refusal(first) is None:  # (a DTensor is refused below)
                _NAMESPACES[kind] = known
                return known
    for name, x in arrays.items():
        if not array_api_compat.is_array_api_obj(x):
            raise TypeError(f"{func}: {name} must be an array; got {type(x).__name__}")
        problem = backend_for(x).refusal(x)
        if problem is not None:  # such types are never cached: every call asks
            raise TypeError(f"{func}: {name} {problem}")
    try:
        xp = array_api_compat.array_namespace(*arrays.values())
    except TypeError as err:
        listed = ", ".join(f"{n}: {type(x).__module__}.{type(x).__name__}" for n, x in arrays.items())
        raise TypeError(f"{func}: arrays come from different libraries ({listed})") from err
    if len(kinds) == 1:
        kind = next(iter(kinds))
        _NAMESPACES[kind] = xp
        array_type = backend_for(next(iter(arrays.values()))).array_type
        if array_type is not None and array_type in kind.__mro__:
            _NAMESPACES.setdefault(array_type, xp)  # its subclasses and itself, found without a type test from now on
    return xp


def dtype_name(xp: Any, dtype: Any) -> str | None:
    for name in SUPPORTED_DTYPES:
        if dtype == getattr(xp, name):
            return name
    return None


def check_dtype(xp: Any, func: str, name: str, x: Any) -> None:
    if dtype_name(xp, x.dtype) is None:
        raise TypeError(f"{func}: {name} must have dtype float32, float64, complex64 or complex128; got {x.dtype}")


def check_same_dtype(xp: Any, func: str, **arrays: Any) -> None:
    items = list(arrays.items())
    first_name, first = items[0]
    check_dtype(xp, func, first_name, first)
    for name, x in items[1:]:
        if x.dtype != first.dtype:
            check_dtype(xp, func, name, x)
    for name, x in items[1:]:
        if x.dtype != first.dtype:
            raise TypeError(
                f"{func}: dtype mismatch: {first_name} is {first.dtype} but {name} is {x.dtype}; "
                "cast them to one dtype (real input stays real, complex stays complex)"
            )


def check_matrix(func: str, name: str, x: Any, *, square: bool = False) -> None:
    if x.ndim < 2:
        raise ValueError(f"{func}: {name} must have shape (..., m, n); got shape {tuple(x.shape)}")
    if square and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{func}: {name} must be square, shape (..., N, N); got shape {tuple(x.shape)}")


def check_factors(xp: Any, func: str, U: Any, A: Any, B: Any) -> tuple[int, ...]:
    """``U`` (..., n, p), p ≤ n (orthonormal columns), ``A`` (..., n, k), ``B`` (..., p, k); returns the batch shape."""
    check_matrix(func, "U", U)
    check_matrix(func, "A", A)
    check_matrix(func, "B", B)
    check_same_dtype(xp, func, U=U, A=A, B=B)
    n, p = U.shape[-2], U.shape[-1]
    if p > n:
        raise ValueError(
            f"{func}: U must have shape (..., n, p) with p ≤ n (orthonormal columns); got shape {tuple(U.shape)}. "
            "For a wide U with orthonormal rows, step its adjoint: "
            f"{func}(Uᴴ, B, A) is the adjoint of the step of U + A Bᴴ"
        )
    for name, x, rows, what in (("A", A, n, "n"), ("B", B, p, "p")):
        if x.shape[-2] != rows:
            raise ValueError(
                f"{func}: {name} must have shape (..., {what}, k) with {what} = {rows} rows to match U of shape "
                f"{tuple(U.shape)}; got shape {tuple(x.shape)}"
            )
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(
            f"{func}: A and B must have the same number of columns k; got A {tuple(A.shape)} and B {tuple(B.shape)}"
        )
    try:
        return batch_shape(U, A, B)
    except ValueError as err:
        raise ValueError(
            f"{func}: leading (batch) axes of U {tuple(U.shape)}, A {tuple(A.shape)} and B {tuple(B.shape)} "
            "do not broadcast"
        ) from err


def is_concrete(x: Any) -> bool:
    """False for arrays whose values are unknown now (JAX tracers, lazy arrays)."""
    return not backend_for(x).is_traced(x)


def check_finite(xp: Any, func: str, **arrays: Any) -> None:
    """Raise ``ValueError`` if an array holds NaN or ±Inf.

    A sum propagates any NaN/Inf, so one reduction without a temporary the size
    of the array decides the common case; only a non-finite sum (a real
    non-finite entry, or an overflow) pays for the exact elementwise check.
    """
    backend = backend_for(next(iter(arrays.values())))
    concrete = {name: x for name, x in arrays.items() if not backend.is_traced(x)}
    if not concrete:
        return
    for (name, x), finite_sum in zip(concrete.items(), backend.sums_finite(xp, concrete.values()), strict=True):
        if not finite_sum and not bool(xp.all(xp.isfinite(x))):
            raise ValueError(f"{func}: {name} contains NaN or Inf; pass finite values")
