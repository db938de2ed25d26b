"""What the optimizer adapters share: the options, the checks, the one projUNN step and the Newton–Schulz correction.

The torch adapter (:class:`~unitary_lowrank.backends.torch.ProjUNN`), the
optax one (:func:`~unitary_lowrank.backends.jax.projunn`) and the sharded
step (:func:`unitary_lowrank.sharded.step`) all take the base optimizer's
update Δ of a weight W and move W along the manifold with :func:`step`:

    Δ ≈ A Bᴴ (sketch, rank k)  →  W ← transport(W, A, B)  or  project(W, A, B)

A wide W (orthonormal rows) is stepped through its adjoint, decided here and
nowhere else. Where W is split over processes (:mod:`~unitary_lowrank._split`)
the same code runs on each process's block, the collectives entering through
the call's context. Options and weights are checked once, when an adapter is
built (:meth:`Options.checked`, :func:`check_rank`, :func:`unitarity_problem`);
:func:`step` then calls the kernels directly, with no per-step validation and
no value read on the host.

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

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from ._arrays import Array, adjoint
from ._context import Context, context_of
from ._counter import is_key
from ._linalg import orthonormal_basis
from ._split import ONE, Split, key_draws
from .project import project_step
from .sketch import sketch_step
from .transport import transport_step
from .unitarity import unitarity_error

#: The update rules: projUNN-T (along the tangent projection of the update, by a retraction), projUNN-D
#: (the closest unitary), and the exact dense Riemannian step that projUNN approximates (O(N³); the baseline)
Method = Literal["transport", "project", "dense"]
#: How a transport step follows its tangent: the exponential map, or the Cayley transform
Retraction = Literal["exp", "cayley"]
#: How an update is reduced to rank k: the stateless sketches of :func:`unitary_lowrank.sketch`, and the
#: warm-started subspace iteration, whose basis the adapters keep between steps
Sketch = Literal["randomized", "column", "svd", "subspace"]
METHODS: tuple[str, ...] = get_args(Method)
LOW_RANK_METHODS: tuple[str, ...] = ("transport", "project")
RETRACTIONS: tuple[str, ...] = get_args(Retraction)
SKETCHES: tuple[str, ...] = get_args(Sketch)
#: The sketches of a weight split over processes by rows or columns (the two that need no whole matrix)
SPLIT_SKETCHES = ("randomized", "subspace")

#: One Newton–Schulz step every this many steps. Chosen from the drift measured in
#: ``benchmarks/drift.py`` (see docs/torch.md): after 10,000 steps of ``ProjUNN(Adam)``,
#: rank 1, the unitarity error stays below 1e-5 in float32 and 1e-12 in float64, at an
#: amortized cost of O(N³/100) per step; tests/backends/test_jax.py measures the same for JAX.
DEFAULT_REORTHONORMALIZE_EVERY = 100

#: The sketch's defaults (:func:`unitary_lowrank.sketch`)
_OVERSAMPLE, _POWER_ITERS = 10, 1

#: ``rank="auto"`` (the default): k = ⌊min(n, p) / AUTO_RANK_DIVISOR⌋, at least 1, at most AUTO_RANK_CAP.
#: The rule is set from the step's cost curve alone, not from learning curves (docs/choosing.md, *Rank*):
#: the largest power of two k at which one optimizer step costs at most twice the rank-1 step was 16 at
#: N = 256 and 32 at N = 1024 (benchmarks/rank_cost.py, one thread, float32, randomized sketch: 1.5× and
#: 1.5–1.7×; k = 32 and 64 cost 2.1–2.3× and 2.2–2.7×): the passes over the weight stay memory-bound up to
#: there, so the rank is nearly free.
AUTO_RANK_DIVISOR, AUTO_RANK_CAP = 16, 32


@dataclass(frozen=True)
class Options:
    """The settings of a projUNN step, one vocabulary for every adapter (build with :meth:`checked`).

    ``rank`` (k, or ``"auto"``: :func:`rank_of`), ``method`` (the update rule), ``retraction`` (of a transport
    step), ``sketch`` (how Δ is reduced to rank k), ``error_feedback``,
    ``reorthonormalize_every`` (one Newton–Schulz step every this many steps;
    ``None`` or 0: never) and ``seed`` (of the sketches' keyed draws): see
    :class:`~unitary_lowrank.backends.torch.ProjUNN`.
    """

    rank: int | Literal["auto"] = "auto"
    method: Method = "transport"
    retraction: Retraction = "exp"
    sketch: Sketch = "randomized"
    error_feedback: bool = False
    reorthonormalize_every: int | None = DEFAULT_REORTHONORMALIZE_EVERY
    seed: Any = 0

    @classmethod
    def checked(cls, where: str, methods: tuple[str, ...] = METHODS, **values: Any) -> Options:
        """The options ``values``, or a ``ValueError`` naming ``where`` and the bad value.

        Options a method would ignore are refused: a retraction beside
        ``project`` or ``dense``; a rank, sketch or error feedback beside
        ``dense``, which steps along the whole update. ``method="cayley"``, the
        old spelling of ``method="transport", retraction="cayley"``, is
        translated with a ``DeprecationWarning``.
        """
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"{where}: unknown option(s) {', '.join(unknown)}")
        if values.get("method") == "cayley":
            warnings.warn(
                f"{where}: method='cayley' is now method='transport', retraction='cayley'",
                DeprecationWarning,
                stacklevel=3,
            )
            values = {**values, "method": "transport", "retraction": "cayley"}
        options = cls(**values)
        if options.rank != "auto" and (not _is_int(options.rank) or options.rank < 1):
            raise ValueError(f"{where}: rank must be an int ≥ 1 or 'auto'; got {options.rank!r}")
        for name, allowed in (("method", methods), ("retraction", RETRACTIONS), ("sketch", SKETCHES)):
            if getattr(options, name) not in allowed:
                raise ValueError(f"{where}: {name} must be one of {allowed}; got {getattr(options, name)!r}")
        every = options.reorthonormalize_every
        if every is not None and (not _is_int(every) or every < 0):
            raise ValueError(f"{where}: reorthonormalize_every must be an int ≥ 0 or None; got {every!r}")
        if not isinstance(options.error_feedback, bool):
            raise ValueError(f"{where}: error_feedback must be True or False; got {options.error_feedback!r}")
        ignored: dict[str, Any] = {"retraction": "exp"} if options.method != "transport" else {}
        if options.method == "dense":
            ignored |= {"rank": "auto", "sketch": "randomized", "error_feedback": False}
        set_anyway = [f"{name}={getattr(options, name)!r}" for name, default in ignored.items()
                      if getattr(options, name) != default]  # fmt: skip
        if set_anyway:
            raise ValueError(
                f"{where}: method={options.method!r} ignores {', '.join(set_anyway)}; leave "
                f"{'it' if len(set_anyway) == 1 else 'them'} at the default, or pick the method that uses "
                f"{'it' if len(set_anyway) == 1 else 'them'}"
            )
        return options


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rank_of(rank: int | str, shape: tuple[int, ...]) -> int:
    """The rank k of a weight of ``shape`` (..., n, p): ``rank`` itself, or for ``"auto"`` the shape's rule.

    ``"auto"``: ``min(AUTO_RANK_CAP, max(1, min(n, p) // AUTO_RANK_DIVISOR))``, and 0 for an empty matrix
    (1 for 16×16 and smaller, 16 for 256×256, 32 from 512×512 on). A static function of the shape: the
    step's shapes do not depend on the update's values, so it compiles as one graph.
    """
    if rank != "auto":
        return int(rank)
    smaller = min(shape[-2:])
    return min(smaller, AUTO_RANK_CAP, max(1, smaller // AUTO_RANK_DIVISOR))


def check_rank(where: str, what: str, shape: tuple[int, ...], rank: int | str) -> None:
    """Raise ``ValueError`` if a rank-``rank`` sketch does not fit a weight of ``shape`` (..., n, p)."""
    if rank != "auto" and int(rank) > min(shape[-2:]):
        raise ValueError(f"{where}: rank {rank} exceeds min(n, p) = {min(shape[-2:])} of {what} with shape {shape}")


def unitarity_tolerance(eps: float) -> float:
    """How far from unitary an adapter lets a weight start: ``max|WᴴW − I| ≤ 10 √ε`` (3e-3 single, 1.5e-7 double).

    Rounding drift passes, a matrix that is not unitary does not.
    """
    return 10 * math.sqrt(eps)


def know_weight(W: Array) -> None:
    """Find ``W``'s namespace and backend now, when the adapter is built.

    A first step traced by ``torch.compile`` then meets dictionary lookups, not
    ``array_api_compat``'s type tests (which Dynamo traces, warning about each).
    """
    context_of(W)


def unitarity_problem(W: Array, eps: float) -> str | None:
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

    weight: Array  #: the new weight (``out`` when given)
    finite: Array  #: boolean array: the update was finite (else, with ``skip_nonfinite``, it was skipped)
    basis: Array | None  #: the next step's subspace basis (``sketch="subspace"``), else ``None``
    error: Array | None  #: the error-feedback buffer after this step, else ``None``


def basis_shape(shape: tuple[int, ...], rank: int | str) -> tuple[int, ...]:
    """Shape of the subspace basis of a weight of ``shape`` (..., n, p): (..., min(n, p), k)."""
    return (*shape[:-2], min(shape[-2:]), rank_of(rank, shape))


def initial_basis(W: Array, rank: int | str, key: Any, split: Split = ONE) -> Array:
    """The first subspace basis of weight ``W``: a Gaussian draw keyed by ``key``, orthonormalized.

    ``key`` is a counter key (an integer array of ``W``'s library) or the
    library's own key (``jax.random``): the same draw on every replica. For
    a weight split over processes, ``W`` is this process's block, and the
    basis is this process's part of the one-process basis.
    """
    ctx = context_of(W)
    n, p = split.shape(W)
    whole = split.whole_batch(W) + (min(n, p), rank_of(rank, (n, p)))
    basis = orthonormal_basis(ctx, key_draws(ctx, key, whole, W.dtype))
    return split.tall(n, p).cut(basis, "p")


def step(
    W: Array,
    delta: Array,
    options: Options,
    *,
    key: Any,
    basis: Array | None = None,
    error: Array | None = None,
    out: Array | None = None,
    skip_nonfinite: bool = False,
    split: Split = ONE,
) -> StepResult:
    """Move ``W`` (..., n, p) along the base optimizer's update ``delta`` with one step of ``options.method``.

    Returns a :class:`StepResult`: the new weight (``out`` when given: ``out``
    may be ``W`` or ``delta``, views included, and is written only after both
    were read), a boolean array true where the update was finite, and the
    state for the next step. ``sketch="subspace"`` needs ``basis`` (from
    :func:`initial_basis`, then from the last result); ``error`` (weight-sized,
    zero at first) turns on error feedback. With ``skip_nonfinite`` a
    non-finite update is replaced by zero (the step then returns ``W``
    exactly) and leaves the basis and the buffer as they were, with array
    operations only: nothing is read on the host. ``key`` seeds the stateless
    sketches: a counter key (an integer array of ``W``'s library) or a key of
    the library's own (``jax.random``). The options were checked when the
    adapter was built. ``split``: how ``W`` is spread over processes (``W``,
    ``delta``, ``error``, ``basis`` and ``out`` are then this process's parts);
    the processes decide together whether an update was finite.
    """
    n, p = split.shape(W)
    if p <= n:
        ctx = context_of(W, delta, split=split)
        return _tall_step(ctx, W, delta, options, key, basis, error, out, skip_nonfinite)
    # orthonormal rows: step the adjoint, whose columns are orthonormal (views where the library has them)
    ctx = context_of(W, delta, split=split.adjoint())
    target = None if out is None else ctx.backend.adjoint_view(ctx.xp, out)
    view = _adjoint_view(ctx)
    result = _tall_step(ctx, view(W), view(delta), options, key, basis, view(error), target, skip_nonfinite)
    if out is None:
        weight = view(result.weight)
    elif target is None:  # no writable adjoint view of out: write the result into it
        weight = ctx.backend.copy_(out, adjoint(ctx.xp, result.weight))
    else:
        weight = out
    return result._replace(weight=weight, error=view(result.error))


def _tall_step(
    ctx: Context,
    U: Array,
    delta: Array,
    options: Options,
    key: Any,
    basis: Array | None,
    error: Array | None,
    out: Array | None,
    skip_nonfinite: bool,
) -> StepResult:
    """:func:`step` of the tall view ``U`` (n ≥ p)."""
    xp = ctx.xp
    if options.method == "dense":
        return _dense_step(ctx, U, delta, out)
    if error is not None:
        delta = delta + error
    if options.sketch == "subspace":
        A, B, next_basis = _subspace_sketch(ctx, delta, basis)
    else:
        rank = rank_of(options.rank, ctx.split.shape(U))
        A, B = sketch_step(ctx, delta, rank, options.sketch, _OVERSAMPLE, _POWER_ITERS, key, is_key(key))
        next_basis = None
    # a non-finite Δ gives non-finite factors (the sketch propagates NaN): check them, O(n k), not Δ
    finite = ctx.split.finite(ctx, A, B)
    if skip_nonfinite and not (ctx.readable and bool(finite)):  # on the host a finite update needs no masking
        A, B = xp.where(finite, A, xp.zeros_like(A)), xp.where(finite, B, xp.zeros_like(B))
        if next_basis is not None:
            next_basis = xp.where(finite, next_basis, basis)
    next_error = None
    if error is not None:  # what the step leaves out of Δ + E (a skipped one: E as it was)
        left_out = delta - xp.matmul(A, ctx.adjoint(B))
        next_error = xp.where(finite, left_out, error) if skip_nonfinite else left_out
    if options.method == "project":
        U_new = project_step(ctx, U, A, B, out)
    else:
        U_new = transport_step(ctx, U, A, B, options.retraction, out)
    return StepResult(U_new, finite, next_basis, next_error)


def _dense_step(ctx: Context, U: Array, delta: Array, out: Array | None) -> StepResult:
    """The exact Riemannian step ``exp(skew(Δ Uᴴ)) U`` (square ``U``: ``U exp(skew(Uᴴ Δ))``), O(N³); NaN skipped."""
    xp = ctx.xp
    finite = xp.all(xp.isfinite(delta))
    X = xp.matmul(xp.where(finite, delta, xp.zeros_like(delta)), ctx.adjoint(U))
    U_new = xp.matmul(ctx.backend.expm(xp, (X - ctx.adjoint(X)) / 2), U)
    return StepResult(U_new if out is None else ctx.backend.copy_(out, U_new), finite, None, None)


def _subspace_sketch(ctx: Context, delta: Array, Q: Array) -> tuple[Array, Array, Array]:
    """One warm-started subspace iteration: ``A = P = orth(Δ Q)``, ``B = R = Δᴴ P`` and the next basis ``orth(R)``.

    The next basis keeps ``Q`` where ``R`` is zero or not finite (a zero or
    skipped update carries no direction to follow), matrix by matrix.
    """
    split, xp = ctx.split, ctx.xp
    P = orthonormal_basis(ctx, split.sum(ctx.stream(delta, Q), "p"), "n")
    R = split.sum(ctx.adjoint(ctx.stream(ctx.adjoint(P), delta)), "n")  # Δᴴ P as (Pᴴ Δ)ᴴ: Δ in its memory order
    largest = split.largest(ctx, R, "p")
    informative = xp.isfinite(largest) & (largest > 0)
    return P, R, xp.where(informative, orthonormal_basis(ctx, R, "p"), Q)


def newton_schulz_correction(W: Array) -> Array:
    """``W (Wᴴ W − I) / 2`` (for a wide ``W``: ``(W Wᴴ − I) W / 2``): one Newton–Schulz step is ``W − this``.

    It roughly squares a small unitarity error, at O(n p²); the adapters take
    one every :data:`DEFAULT_REORTHONORMALIZE_EVERY` steps against rounding
    drift. No value is read (a skipped non-finite update leaves ``W`` finite).
    """
    ctx = context_of(W)
    view = _adjoint_view(ctx)
    if W.shape[-1] > W.shape[-2]:
        return view(newton_schulz_correction(view(W)))
    xp = ctx.xp
    identity = xp.eye(W.shape[-1], dtype=W.dtype, device=ctx.device)
    return xp.matmul(W, xp.matmul(view(W), W) - identity) / 2


def _adjoint_view(ctx: Context) -> Array:
    """``x ↦ xᴴ``: a view of ``x`` where the library has one (torch's ``.mH``), else a new array; ``None`` stays."""

    def view(x: Array) -> Array:
        if x is None:
            return None
        viewed = ctx.backend.adjoint_view(ctx.xp, x)
        return adjoint(ctx.xp, x) if viewed is None else viewed

    return view
