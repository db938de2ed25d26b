"""What the optimizer adapters share: option tables, checks, the step itself and the Newton–Schulz correction.

The torch adapter (:class:`~unitary_lowrank.backends.torch.ProjUNN`) and the
optax one (:func:`~unitary_lowrank.backends.jax.projunn`) both take the base
optimizer's update Δ of a weight W and move W along the manifold:

    Δ ≈ A Bᴴ (sketch, rank k)  →  W ← transport(W, A, B)  or  project(W, A, B)

A wide W (orthonormal rows) is stepped through its adjoint. Options and
weights are checked once, when an adapter is built (:func:`check_options`,
:func:`check_weight`, :func:`unitarity_problem`); :func:`step` then calls the
kernels directly, with no per-step validation and no value read on the host.
"""

from __future__ import annotations

import math
from typing import Any

from ._arrays import adjoint
from ._context import Context, context_of
from ._counter import is_key
from .project import project_step
from .sketch import sketch_step
from .transport import transport_step
from .unitarity import unitarity_error

#: Steps an adapter takes: projUNN-T, projUNN-D, projUNN-T with the Cayley retraction, and (torch) the exact
#: dense Riemannian step that projUNN approximates
METHODS = ("transport", "project", "cayley", "dense")
#: The steps of rank k (every adapter has them)
LOW_RANK_METHODS = ("transport", "project", "cayley")
SKETCHES = ("randomized", "column", "svd")
#: Options a group of unitary weights may set for itself (torch param groups)
GROUP_OPTIONS = ("rank", "method", "sketch", "reorthonormalize_every", "seed")

#: One Newton–Schulz step every this many steps. Chosen from the drift measured in
#: ``benchmarks/drift.py`` (see docs/torch.md): after 10,000 steps of ``ProjUNN(Adam)``,
#: rank 1, the unitarity error stays below 1e-5 in float32 and 1e-12 in float64, at an
#: amortized cost of O(N³/100) per step; tests/backends/test_jax.py measures the same for JAX.
DEFAULT_REORTHONORMALIZE_EVERY = 100

#: The sketch's defaults (:func:`unitary_lowrank.sketch`)
_OVERSAMPLE, _POWER_ITERS = 10, 1


def check_options(where: str, options: dict[str, Any], methods: tuple[str, ...] = METHODS) -> None:
    """Raise ``ValueError`` naming ``where`` for a bad rank, method, sketch or reorthonormalize_every."""
    rank = options["rank"]
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"{where}: rank must be an int ≥ 1; got {rank!r}")
    if options["method"] not in methods:
        raise ValueError(f"{where}: method must be one of {methods}; got {options['method']!r}")
    if options["sketch"] not in SKETCHES:
        raise ValueError(f"{where}: sketch must be one of {SKETCHES}; got {options['sketch']!r}")
    every = options["reorthonormalize_every"]
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 0):
        raise ValueError(f"{where}: reorthonormalize_every must be an int ≥ 0 or None; got {every!r}")


def check_rank(where: str, what: str, shape: tuple[int, ...], rank: int) -> None:
    """Raise ``ValueError`` if a rank-``rank`` sketch does not fit a weight of ``shape`` (..., n, p)."""
    if rank > min(shape[-2:]):
        raise ValueError(f"{where}: rank {rank} exceeds min(n, p) = {min(shape[-2:])} of {what} with shape {shape}")


def unitarity_tolerance(eps: float) -> float:
    """How far from unitary an adapter lets a weight start: ``max|WᴴW − I| ≤ 10 √ε`` (3e-3 single, 1.5e-7 double).

    Rounding drift passes, a matrix that is not unitary does not.
    """
    return 10 * math.sqrt(eps)


def know_weight(W: Any) -> None:
    """Find ``W``'s namespace and backend now, when the adapter is built.

    A first step traced by ``torch.compile`` then meets dictionary lookups, not
    ``array_api_compat``'s type tests (which Dynamo traces, warning about each).
    """
    context_of(W)


def unitarity_problem(W: Any, eps: float) -> str | None:
    """Why the concrete weight ``W`` cannot be stepped (NaN or Inf, not unitary), or ``None``; reads it on the host."""
    xp = context_of(W).xp
    if not bool(xp.all(xp.isfinite(W))):
        return "contains NaN or Inf"
    error = float(xp.max(unitarity_error(W)))
    tolerance = unitarity_tolerance(eps)
    if not error <= tolerance:
        return f"is not unitary (max|WᴴW − I| = {error:.3g} > {tolerance:.2g})"
    return None


def step(
    W: Any,
    delta: Any,
    *,
    rank: int,
    method: str,
    sketch: str,
    key: Any,
    out: Any = None,
    skip_nonfinite: bool = False,
) -> tuple[Any, Any]:
    """Move ``W`` (..., n, p) along the base optimizer's update ``delta`` with a rank-``rank`` projUNN step.

    Returns the new weight (``out`` when given: ``out`` may be ``W`` or
    ``delta``, views included, and is written only after both were read) and
    a boolean array, true where the sketch of ``delta`` was finite. With
    ``skip_nonfinite`` a non-finite update is replaced by zero (the step then
    returns ``W`` exactly), with array operations only: nothing is read on the
    host. ``key`` seeds the sketch: a counter key (an integer array of ``W``'s
    library) or a key of the library's own (``jax.random``). ``method`` is one
    of :data:`LOW_RANK_METHODS`; the options were checked when the adapter
    was built.
    """
    ctx = context_of(W, delta)
    xp = ctx.xp
    wide = W.shape[-1] > W.shape[-2]
    target = out
    if wide:  # orthonormal rows: step the adjoint, whose columns are orthonormal (views where the library has them)
        W, delta = _adjoint_view(ctx, W), _adjoint_view(ctx, delta)
        target = None if out is None else ctx.backend.adjoint_view(xp, out)
    A, B = sketch_step(ctx, delta, rank, sketch, _OVERSAMPLE, _POWER_ITERS, key, is_key(key))
    # a non-finite Δ gives non-finite factors (the sketch propagates NaN): check them, O(n k), not Δ
    finite = xp.all(xp.isfinite(A)) & xp.all(xp.isfinite(B))
    if skip_nonfinite:
        A, B = xp.where(finite, A, xp.zeros_like(A)), xp.where(finite, B, xp.zeros_like(B))
    if method == "project":
        W_new = project_step(ctx, W, A, B, target)
    else:
        W_new = transport_step(ctx, W, A, B, "exp" if method == "transport" else "cayley", target)
    if not wide:
        return W_new, finite
    if out is None:
        return _adjoint_view(ctx, W_new), finite
    if target is None:  # no writable adjoint view of out: write the result into it
        return ctx.backend.copy_(out, adjoint(xp, W_new)), finite
    return out, finite


def newton_schulz_correction(W: Any) -> Any:
    """``W (Wᴴ W − I) / 2`` (for a wide ``W``: ``(W Wᴴ − I) W / 2``): one Newton–Schulz step is ``W − this``.

    It roughly squares a small unitarity error, at O(n p²); the adapters take
    one every :data:`DEFAULT_REORTHONORMALIZE_EVERY` steps against rounding
    drift. No value is read (a skipped non-finite update leaves ``W`` finite).
    """
    ctx = context_of(W)
    if W.shape[-1] > W.shape[-2]:
        return _adjoint_view(ctx, newton_schulz_correction(_adjoint_view(ctx, W)))
    xp = ctx.xp
    identity = xp.eye(W.shape[-1], dtype=W.dtype, device=ctx.device)
    return xp.matmul(W, xp.matmul(_adjoint_view(ctx, W), W) - identity) / 2


def _adjoint_view(ctx: Context, x: Any) -> Any:
    """``xᴴ``: a view of ``x`` where the library has one (torch's ``.mH``), else a new array."""
    view = ctx.backend.adjoint_view(ctx.xp, x)
    return adjoint(ctx.xp, x) if view is None else view
