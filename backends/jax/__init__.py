"""JAX: the backend the core uses on ``jax.numpy`` arrays, and the optax transformation ``projunn``.

The core primitives trace under ``jax.jit`` and ``jax.vmap``: no Python branch
on array values, no host round trip. Value checks (finiteness, the singular
warning of :func:`~unitary_lowrank.project`, ``check=True``) are skipped on
tracers, where values are unknown; shape and dtype checks still run.

    tx = optax.chain(optax.rmsprop(1e-3), projunn(rank=1))

Finding the backend (a JAX array reaching a core function) imports only
:mod:`._backend`; the optax transformation (and optax) loads on first use of
``projunn`` or ``ProjUNNState``.
"""

from __future__ import annotations

from typing import Any

from .. import require_extra

require_extra("jax", "jax", "unitary_lowrank.backends.jax")

from ._backend import BACKEND, JaxBackend, as_key  # noqa: E402

__all__ = ["BACKEND", "DEFAULT_REORTHONORMALIZE_EVERY", "JaxBackend", "ProjUNNState", "as_key", "projunn"]

#: name → module (in this package) that defines it, imported on first use (PEP 562)
_LAZY = {"projunn": ".transform", "ProjUNNState": ".transform", "DEFAULT_REORTHONORMALIZE_EVERY": ".transform"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import transform

    return getattr(transform, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
