"""What the optimizer adapters share: option tables, checks, the step itself and the Newton–Schulz correction.

The torch adapter (:class:`~unitary_lowrank.backends.torch.ProjUNN`) and the
optax one (:func:`~unitary_lowrank.backends.jax.projunn`) both take the base
optimizer's update Δ of a weight W and move W along the manifold:

    Δ ≈ A Bᴴ (sketch, rank k)  →  W ← transport(W, A, B)  or  project(W, A, B)

A wide W (orthonormal rows) is stepped through its adjoint. Options and
weights are checked once, when an adapter is built (:func:`check_options`,
:func:`check_rank`, :func:`unitarity_problem`); :func:`step` then calls the
kernels directly, with no per-step validation and no value read on the host.

Two sketches keep state between steps, which the adapters store per weight:

- ``sketch="subspace"``: a warm-started subspace iteration, as PowerSGD and
  Dion run. With ``Q`` (p×k, orthonormal) from the last step, ``P = orth(Δ Q)``,
  ``R = Δᴴ P``, and ``A Bᴴ = P Rᴴ = P Pᴴ Δ``, the projection of Δ on span(P);
  ``orth(R)`` is the next step's ``Q``. Two passes over Δ with k columns, no
  oversampling (the randomized range finder makes four with k + 10). The
  first ``Q`` is a keyed Gaussian draw, orthonormalized: the same on every
  data-parallel replica.
- error feedback: a buffer ``E`` (weight-sized) of what the low-rank steps
  left out; each step sketches ``Δ + E`` and keeps ``E ← Δ + E − A Bᴴ``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._arrays import adjoint, finite_matrices
from ._context import Context, context_of
from ._counter import is_key, key_normal
from ._linalg import orthonormal_basis
from .project import project_step
from .sketch import sketch_step
from .transport import transport_step
from .unitarity import unitarity_error

#: Steps an adapter takes: projUNN-T, projUNN-D, projUNN-T with the Cayley retraction, and (torch) the exact
#: dense Riemannian step that projUNN approximates
METHODS = ("transport", "project", "cayley", "dense")
#: The steps of rank k (every adapter has them)
LOW_RANK_METHODS = ("transport", "project", "cayley")
#: How an update is reduced to rank k: the stateless sketches of :func:`unitary_lowrank.sketch`, and the
#: warm-started subspace iteration, whose basis the adapters keep between steps
SKETCHES = ("randomized", "column", "svd", "subspace")
#: Options a group of unitary weights may set for itself (torch param groups)
GROUP_OPTIONS = ("rank", "method", "sketch", "error_feedback", "reorthonormalize_every", "seed")

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
    if not isinstance(options.get("error_feedback", False), bool):
        raise ValueError(f"{where}: error_feedback must be True or False; got {options['error_feedback']!r}")


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


class StepResult(NamedTuple):
    """What :func:`step` returns: the new weight, and the state the adapter keeps for the next step."""

    weight: Any  #: the new weight (``out`` when given)
    finite: Any  #: boolean array: the update's sketch was finite (else, with ``skip_nonfinite``, it was skipped)
    basis: Any  #: the next step's subspace basis (``sketch="subspace"``), else ``None``
    error: Any  #: the error-feedback buffer after this step, else ``None``


def basis_shape(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """Shape of the subspace basis of a weight of ``shape`` (..., n, p): (..., min(n, p), k)."""
    return (*shape[:-2], min(shape[-2:]), rank)


def initial_basis(W: Any, rank: int, key: Any) -> Any:
    """The first subspace basis of weight ``W``: a Gaussian draw keyed by ``key``, orthonormalized.

    ``key`` is a counter key (an integer array of ``W``'s library) or the
    library's own key (``jax.random``): the same draw on every replica.
    """
    ctx = context_of(W)
    shape = basis_shape(tuple(W.shape), rank)
    if is_key(key):
        draws = key_normal(ctx.xp, key, shape, W.dtype)
    else:
        draws = ctx.backend.normal(ctx.xp, shape, W.dtype, seed=key, device=ctx.device)
    return orthonormal_basis(ctx, draws)


def step(
    W: Any,
    delta: Any,
    *,
    rank: int,
    method: str,
    sketch: str,
    key: Any,
    basis: Any = None,
    error: Any = None,
    out: Any = None,
    skip_nonfinite: bool = False,
    consensus: Any = None,
) -> StepResult:
    """Move ``W`` (..., n, p) along the base optimizer's update ``delta`` with a rank-``rank`` projUNN step.

    Returns a :class:`StepResult`: the new weight (``out`` when given: ``out``
    may be ``W`` or ``delta``, views included, and is written only after both
    were read), a boolean array true where the sketch was finite, and the
    state for the next step. ``sketch="subspace"`` needs ``basis`` (from
    :func:`initial_basis`, then from the last result); ``error`` (weight-sized,
    zero at first) turns on error feedback. With ``skip_nonfinite`` a
    non-finite update is replaced by zero (the step then returns ``W``
    exactly) and leaves the basis and the buffer as they were, with array
    operations only: nothing is read on the host. ``key`` seeds the stateless
    sketches: a counter key (an integer array of ``W``'s library) or a key of
    the library's own (``jax.random``). ``method`` is one of
    :data:`LOW_RANK_METHODS`; the options were checked when the adapter was built.
    ``consensus``: a function that combines the finite flag with the other
    processes' (the weights of a batch split over processes skip together).
    """
    ctx = context_of(W, delta)
    xp = ctx.xp
    wide = W.shape[-1] > W.shape[-2]
    target = out
    if wide:  # orthonormal rows: step the adjoint, whose columns are orthonormal (views where the library has them)
        W, delta = _adjoint_view(ctx, W), _adjoint_view(ctx, delta)
        error = None if error is None else _adjoint_view(ctx, error)
        target = None if out is None else ctx.backend.adjoint_view(xp, out)
    if error is not None:
        delta = delta + error
    if sketch == "subspace":
        A, B, next_basis = _subspace_sketch(ctx, delta, basis)
    else:
        A, B = sketch_step(ctx, delta, rank, sketch, _OVERSAMPLE, _POWER_ITERS, key, is_key(key))
        next_basis = None
    # a non-finite Δ gives non-finite factors (the sketch propagates NaN): check them, O(n k), not Δ
    finite = xp.all(xp.isfinite(A)) & xp.all(xp.isfinite(B))
    if consensus is not None:
        finite = consensus(finite)
    if skip_nonfinite and not (ctx.readable and bool(finite)):  # on the host a finite update needs no masking
        A, B = xp.where(finite, A, xp.zeros_like(A)), xp.where(finite, B, xp.zeros_like(B))
        if next_basis is not None:
            next_basis = xp.where(finite, next_basis, basis)
    next_error = None
    if error is not None:  # what the step leaves out of Δ + E (a skipped one: E as it was)
        left_out = delta - xp.matmul(A, ctx.adjoint(B))
        next_error = xp.where(finite, left_out, error) if skip_nonfinite else left_out
    if method == "project":
        W_new = project_step(ctx, W, A, B, target)
    else:
        W_new = transport_step(ctx, W, A, B, "exp" if method == "transport" else "cayley", target)
    if wide:
        if out is None:
            W_new = _adjoint_view(ctx, W_new)
        elif target is None:  # no writable adjoint view of out: write the result into it
            W_new = ctx.backend.copy_(out, adjoint(xp, W_new))
        else:
            W_new = out
        next_error = None if next_error is None else _adjoint_view(ctx, next_error)
    return StepResult(W_new, finite, next_basis, next_error)


def _subspace_sketch(ctx: Context, delta: Any, Q: Any) -> tuple[Any, Any, Any]:
    """One warm-started subspace iteration: ``A = P = orth(Δ Q)``, ``B = R = Δᴴ P`` and the next basis ``orth(R)``.

    The next basis keeps ``Q`` where ``R`` is zero or not finite (a zero or
    skipped update carries no direction to follow), matrix by matrix.
    """
    P = orthonormal_basis(ctx, ctx.stream(delta, Q))
    R = ctx.adjoint(ctx.stream(ctx.adjoint(P), delta))  # Δᴴ P as (Pᴴ Δ)ᴴ: Δ streamed in its own memory order
    xp = ctx.xp
    informative = finite_matrices(xp, R) & ~xp.all(R == 0, axis=(-2, -1), keepdims=True)
    return P, R, xp.where(informative, orthonormal_basis(ctx, R), Q)


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
