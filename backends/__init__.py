"""Per-framework extras the Array API standard does not cover.

The core (:mod:`unitary_lowrank`) is written against the Array API only. What the
standard lacks — random draws, an in-place rank-r update, telling a traced array
from a concrete one — is asked of a *backend*, one small class per framework,
found from the type of the input array. A framework is imported only when an
array of it shows up: a NumPy-only user never pays for importing torch or JAX.

Backends
--------
numpy
    NumPy and SciPy on the CPU (also serves ``array_api_strict`` and any other
    namespace without a backend of its own, by drawing on the host).
torch
    PyTorch tensors on any device (:mod:`.torch._backend`); the package also
    holds the ``torch.optim`` adapter and the layers users compose, which
    finding the backend never imports.
jax
    ``jax.numpy`` arrays, traced or not (:mod:`.jax._backend`); the package
    also holds the optax adapter, loaded on first use.
cupy
    CuPy arrays on the GPU.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import Backend, Seed

__all__ = ["Backend", "Seed", "available_backends", "backend_for", "is_missing", "require_extra"]

#: how to install what an extra brings, beyond ``pip install "unitary-lowrank[EXTRA]"``
_INSTALL_NOTES = {
    "torch": " (on a machine without an NVIDIA GPU, install PyTorch's CPU build first: "
    "pip install torch --index-url https://download.pytorch.org/whl/cpu)",
}


def is_missing(module: str) -> bool:
    """Import ``module``; True if it is not installed. A missing dependency of ``module`` itself is re-raised
    as it is: only the module's own absence means that what installs it is missing."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return True
    return False


def require_extra(module: str, extra: str, needed_by: str) -> None:
    """Import ``module``, or raise :class:`ModuleNotFoundError` naming the extra of this package that installs it."""
    if is_missing(module):
        raise ModuleNotFoundError(
            f'{needed_by} needs {module}, which is not installed: pip install "unitary-lowrank[{extra}]"'
            + _INSTALL_NOTES.get(extra, ""),
            name=module,
        )


# (predicate name in array_api_compat, module in this package)
_DETECTORS = (
    ("is_torch_array", "torch"),
    ("is_jax_array", "jax"),
    ("is_cupy_array", "cupy"),
    ("is_numpy_array", "numpy"),
)

_cache: dict[str, Backend] = {}
#: array type → backend, once found: one dictionary lookup per call after the first
_by_type: dict[type, Backend] = {}


def _load(module_name: str) -> Backend:
    backend = _cache.get(module_name)
    if backend is None:
        backend = _cache[module_name] = _import(module_name)
        if backend.array_type is not None:
            _by_type.setdefault(backend.array_type, backend)
    return backend


def _import(module_name: str) -> Backend:
    # import statements, not importlib: torch.compile follows an ``import`` (and runs it once, while
    # tracing) but refuses to trace importlib.import_module, so a first call under compile would break.
    # Each imports the backend's own module only: no optimizer, layer or model comes with it.
    if module_name == "torch":
        from .torch._backend import BACKEND as torch_backend

        return torch_backend
    if module_name == "jax":
        from .jax._backend import BACKEND as jax_backend

        return jax_backend
    if module_name == "cupy":
        from .cupy import BACKEND as cupy_backend

        return cupy_backend
    from .numpy import BACKEND as numpy_backend

    return numpy_backend


def backend_for(x: Any) -> Backend:
    """Return the backend that serves arrays like ``x``.

    ``array_api_compat``'s type checks look only at modules already imported,
    so asking about a NumPy array never imports torch or JAX.
    Arrays of any other Array API library (``array_api_strict``, ...) get the
    portable backend, which draws random numbers on the host with NumPy.
    """
    kind = type(x)
    known = _by_type.get(kind)
    if known is not None:
        return known
    for base in kind.__mro__[1:]:  # a subclass of a known array type (torch.nn.Parameter): no type tests to trace
        known = _by_type.get(base)
        if known is not None:
            _by_type[kind] = known
            return known
    import array_api_compat

    for predicate, module_name in _DETECTORS:
        if getattr(array_api_compat, predicate)(x):
            backend = _load(module_name)
            break
    else:
        from .numpy import PORTABLE as backend
    _by_type[type(x)] = backend
    return backend


def available_backends() -> list[str]:
    """Names of the backends whose framework is installed, NumPy first."""
    names = ["numpy", "array_api_strict", "torch", "jax", "cupy"]
    found = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    return found
