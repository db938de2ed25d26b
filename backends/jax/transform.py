"""``projunn``: an optax ``GradientTransformation`` that keeps chosen parameters unitary."""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import require_extra

require_extra("optax", "jax", "unitary_lowrank.backends.jax.projunn")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from unitary_lowrank._adapters import (  # noqa: E402
    DEFAULT_REORTHONORMALIZE_EVERY,
    Options,
    basis_shape,
    check_rank,
    initial_basis,
    newton_schulz_correction,
    step,
    unitarity_problem,
)

from ._backend import as_key  # noqa: E402

__all__ = ["DEFAULT_REORTHONORMALIZE_EVERY", "ProjUNNState", "projunn"]


class ProjUNNState(NamedTuple):
    """State of :func:`projunn`: the sketches' PRNG key, the step count, and the per-leaf state.

    ``basis`` and ``error`` hold, per leaf in the order of
    ``jax.tree_util.tree_leaves(params)``, the subspace sketch's basis and the
    error-feedback buffer (``None`` when not used).
    """

    key: jax.Array
    count: jax.Array  # type: ignore[assignment]  # optax's name for a step count, though it shadows tuple.count
    basis: tuple[jax.Array, ...] | None = None
    error: tuple[jax.Array, ...] | None = None


def projunn(
    *,
    rank: int | str = "auto",
    method: str = "transport",
    retraction: str = "exp",
    sketch: str = "randomized",
    error_feedback: bool = False,
    reorthonormalize_every: int | None = DEFAULT_REORTHONORMALIZE_EVERY,
    seed: int | jax.Array = 0,
    conjugate_complex: bool = True,
    mask: Any = None,
) -> optax.GradientTransformation:
    """Turn the incoming updates of unitary leaves into projUNN steps.

    For every leaf ``W`` (shape (..., n, p): square and unitary, or with
    orthonormal columns (p < n) or rows (p > n, stepped through ``Wᴴ``)) with
    incoming update ``Δ``, sketch
    ``Δ ≈ A Bᴴ`` to rank k, compute ``W_new = transport(W, A, B)`` (or
    ``project``), and return ``W_new − W`` as the update, so that
    ``optax.apply_updates`` lands on ``W_new``. Chain it *after* the optimizer
    whose update it should follow. The options are keyword-only, named and
    ordered as those of the torch adapter
    (:class:`~unitary_lowrank.backends.torch.ProjUNN`).

    Parameters
    ----------
    rank : int or "auto", default "auto"
        k, the rank of the sketch of each update. ``"auto"``: chosen from the
        weight's shape, ``min(32, max(1, min(n, p) // 16))`` (1 up to 31×31,
        16 at 256×256, 32 from 512×512 on): the largest rank at which a step
        still costs about what a rank-1 step does (docs: *Which step, which rank?*).
    method : {"transport", "project", "dense"}, default "transport"
        projUNN-T (along the tangent), projUNN-D (closest unitary), or the
        exact dense Riemannian step (``jax.scipy.linalg.expm``, O(N³): the
        baseline projUNN approximates; it takes no rank, sketch or error
        feedback). ``"cayley"``: the old spelling of ``method="transport",
        retraction="cayley"`` (deprecated).
    retraction : {"exp", "cayley"}, default "exp"
        How projUNN-T follows the tangent: the exponential map or the Cayley
        transform. Only with ``method="transport"``.
    sketch : {"randomized", "column", "svd", "subspace"}, default "randomized"
        A stateless sketch of :func:`unitary_lowrank.sketch`, or ``"subspace"``:
        one warm-started subspace iteration per step from the last step's
        basis, kept in the state (``ProjUNNState.basis``, (..., min(n, p), k)
        per leaf; the first one a keyed draw).
    error_feedback : bool, default False
        Keep what each low-rank step leaves out of the update in the state
        (``ProjUNNState.error``, one leaf-sized array per leaf) and add it to the
        next update before sketching.
    reorthonormalize_every : int or None, default 100
        One Newton–Schulz step every this many steps against rounding drift
        (inside ``lax.cond``: no recompilation); ``None`` or 0 never.
    seed : int or jax.random key, default 0
        Sketch keys are ``fold_in(fold_in(key, step), leaf index)``: the same on
        every device, so replicas under ``pmap``/``shard_map``/sharded ``jit``
        stay identical.
    conjugate_complex : bool, default True
        ``jax.grad`` of a real loss with respect to a complex array returns the
        *conjugate* of the steepest-ascent direction, so ``optax.sgd`` and
        friends produce conjugated updates for complex leaves; this flag
        conjugates them back before the step. Set ``False`` if your updates are
        already descent directions (e.g. you conjugated the gradients).
    mask : pytree of bool, or callable ``params -> pytree of bool``, optional
        Which leaves are unitary (as ``optax.masked`` takes it); the others'
        updates pass through untouched, so that one chain can train a whole
        model. Default: every leaf is unitary.

    Returns
    -------
    optax.GradientTransformation
        ``update(updates, state, params)`` requires ``params``. ``init``
        refuses a concrete leaf that is not unitary.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank.backends.jax import projunn
    >>> W = ul.random_unitary(8, dtype="float32", like=jnp, seed=0)
    >>> tx = optax.chain(optax.sgd(0.1), projunn(rank=1))
    >>> state = tx.init(W)
    >>> loss = lambda W: jnp.sum((W - jnp.eye(8)) ** 2)
    >>> updates, state = tx.update(jax.grad(loss)(W), state, W)
    >>> W = optax.apply_updates(W, updates)
    >>> bool(ul.unitarity_error(W) < 1e-5)
    True
    """
    options = Options.checked(
        "projunn", rank=rank, method=method, retraction=retraction, sketch=sketch, error_feedback=error_feedback,
        reorthonormalize_every=reorthonormalize_every, seed=seed,
    )  # fmt: skip

    def init_fn(params: Any) -> ProjUNNState:
        leaves = jax.tree_util.tree_leaves_with_path(params)
        for path, leaf in leaves:
            _check_leaf(path, leaf, rank)
            _check_unitary(path, leaf)
        key = as_key(seed)
        basis = error = None
        if (
            options.sketch == "subspace" and options.method != "dense"
        ):  # keyed by (key, step 0, leaf index): alike on every replica
            start = jax.random.fold_in(key, 0)
            basis = tuple(initial_basis(W, rank, jax.random.fold_in(start, i)) for i, (_, W) in enumerate(leaves))
        if error_feedback:
            error = tuple(jnp.zeros_like(W) for _, W in leaves)
        return ProjUNNState(key=key, count=jnp.zeros([], jnp.int32), basis=basis, error=error)

    def leaf_update(W: jax.Array, delta: jax.Array, key: jax.Array, count: jax.Array, basis: Any, error: Any) -> Any:
        if conjugate_complex and jnp.iscomplexobj(delta):
            delta = jnp.conj(delta)
        result = step(W, delta, options, key=key, basis=basis, error=error)
        W_new = result.weight
        if reorthonormalize_every:
            W_new = jax.lax.cond(
                count % reorthonormalize_every == 0,
                lambda M: M - newton_schulz_correction(M),
                lambda M: M,
                W_new,
            )
        return W_new - W, result.basis, result.error

    def update_fn(updates: Any, state: ProjUNNState, params: Any = None) -> tuple[Any, ProjUNNState]:
        if params is None:
            raise ValueError("projunn: update needs params; call tx.update(updates, state, params)")
        count = state.count + 1
        leaves, structure = jax.tree_util.tree_flatten_with_path(params)
        treedef: Any = structure  # a PyTreeDef, which JAX's annotations leave unresolved
        deltas = treedef.flatten_up_to(updates)
        n = len(leaves)
        _check_state(state, [W for _, W in leaves], options)
        bases, errors = state.basis or (None,) * n, state.error or (None,) * n
        step_key = jax.random.fold_in(state.key, count)
        results = []
        for index, ((path, W), delta) in enumerate(zip(leaves, deltas, strict=True)):
            _check_leaf(path, W, rank)
            if delta.shape != W.shape or delta.dtype != W.dtype:
                raise ValueError(
                    f"projunn: the update of {jax.tree_util.keystr(path) or 'params'} has shape {delta.shape} and "
                    f"dtype {delta.dtype}; expected {W.shape} and {W.dtype}"
                )
            key = jax.random.fold_in(step_key, index)
            results.append(leaf_update(W, delta, key, count, bases[index], errors[index]))
        new_updates, new_bases, new_errors = zip(*results, strict=True) if results else ((), (), ())
        return treedef.unflatten(list(new_updates)), ProjUNNState(
            key=state.key,
            count=count,
            basis=tuple(new_bases) if state.basis is not None else None,
            error=tuple(new_errors) if state.error is not None else None,
        )

    transform = optax.GradientTransformation(init_fn, update_fn)
    return transform if mask is None else optax.masked(transform, mask)


def _check_state(state: Any, leaves: list[Any], options: Options) -> None:
    """Refuse, by shapes alone (static: no value is read, jit traces it once), a state of other options or params.

    A state restored from a checkpoint of another run (other rank, sketch, error feedback, leaves)
    fails here with one line, before any update is computed.
    """
    if not isinstance(state, ProjUNNState):
        raise ValueError(f"projunn: the state is a {type(state).__name__}, not the ProjUNNState of projunn's init")
    expected = {
        "basis": [basis_shape(tuple(W.shape), options.rank) for W in leaves]
        if options.sketch == "subspace" and options.method != "dense"
        else None,
        "error": [tuple(W.shape) for W in leaves] if options.error_feedback else None,
    }
    for field, shapes in expected.items():
        held = getattr(state, field)
        found = None if held is None else [tuple(x.shape) for x in held]
        if found != shapes:
            raise ValueError(
                f"projunn: the state's {field} holds shapes {found}, these options and params need {shapes} "
                "(a state of another run: other rank, sketch, error_feedback or params?)"
            )


def _check_leaf(path: Any, leaf: Any, rank: int | str) -> None:
    name = jax.tree_util.keystr(path) or "params"
    shape = getattr(leaf, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(
            f"projunn: leaf {name} has shape {shape}; unitary leaves must be matrices, shape (..., n, p) (square, or "
            "with orthonormal rows or columns). Pass mask= to route other leaves around it (projunn(..., mask=...))."
        )
    if leaf.dtype not in (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128):
        raise TypeError(f"projunn: leaf {name} is {leaf.dtype}; use float32, float64, complex64 or complex128")
    check_rank("projunn", f"leaf {name}", tuple(shape), rank)


def _check_unitary(path: Any, leaf: Any) -> None:
    """At init, refuse a concrete leaf that is not unitary (orthonormal rows or columns); tracers pass."""
    if isinstance(leaf, jax.core.Tracer):
        return
    name = jax.tree_util.keystr(path) or "params"
    problem = unitarity_problem(leaf, float(jnp.finfo(leaf.dtype).eps))
    if problem is not None:
        raise ValueError(
            f"projunn: leaf {name} {problem}; projUNN steps keep a unitary weight unitary but cannot make one. "
            "Initialize it with unitary_lowrank.random_unitary(n, p, like=jnp, ...) or pull it back with "
            "unitary_lowrank.reorthonormalize(W)."
        )
