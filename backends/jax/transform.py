"""``projunn``: an optax ``GradientTransformation`` that keeps chosen parameters unitary."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from unitary_lowrank._adapters import (
    DEFAULT_REORTHONORMALIZE_EVERY,
    LOW_RANK_METHODS,
    check_options,
    check_rank,
    newton_schulz_correction,
    step,
    unitarity_problem,
)

from ._backend import as_key

__all__ = ["DEFAULT_REORTHONORMALIZE_EVERY", "ProjUNNState", "projunn"]


class ProjUNNState(NamedTuple):
    """State of :func:`projunn`: the PRNG key the sketches are drawn from, and the step count."""

    key: jax.Array
    count: jax.Array


def projunn(
    rank: int = 1,
    method: str = "transport",
    sketch: str = "randomized",
    seed: int | jax.Array = 0,
    reorthonormalize_every: int | None = DEFAULT_REORTHONORMALIZE_EVERY,
    conjugate_complex: bool = True,
) -> optax.GradientTransformation:
    """Turn the incoming updates of unitary leaves into projUNN steps.

    For every leaf ``W`` (shape (..., n, p): square and unitary, or with
    orthonormal columns (p < n) or rows (p > n, stepped through ``Wᴴ``)) with
    incoming update ``Δ``, sketch
    ``Δ ≈ A Bᴴ`` to rank k, compute ``W_new = transport(W, A, B)`` (or
    ``project``), and return ``W_new − W`` as the update, so that
    ``optax.apply_updates`` lands on ``W_new``. Chain it *after* the optimizer
    whose update it should follow.

    Parameters
    ----------
    rank : int, default 1
        k, the rank of each sketch.
    method : {"transport", "project", "cayley"}, default "transport"
        projUNN-T (exponential map), projUNN-D (closest unitary), or projUNN-T
        with the Cayley retraction.
    sketch : {"randomized", "column", "svd"}, default "randomized"
        See :func:`unitary_lowrank.sketch`.
    seed : int or jax.random key, default 0
        Sketch keys are ``fold_in(fold_in(key, step), leaf index)``: the same on
        every device, so replicas under ``pmap``/``shard_map``/sharded ``jit``
        stay identical.
    reorthonormalize_every : int or None, default 100
        One Newton–Schulz step every this many steps against rounding drift
        (inside ``lax.cond``: no recompilation); ``None`` or 0 never.
    conjugate_complex : bool, default True
        ``jax.grad`` of a real loss with respect to a complex array returns the
        *conjugate* of the steepest-ascent direction, so ``optax.sgd`` and
        friends produce conjugated updates for complex leaves; this flag
        conjugates them back before the step. Set ``False`` if your updates are
        already descent directions (e.g. you conjugated the gradients).

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
    options = {"rank": rank, "method": method, "sketch": sketch, "reorthonormalize_every": reorthonormalize_every}
    check_options("projunn", options, LOW_RANK_METHODS)

    def init_fn(params: Any) -> ProjUNNState:
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            _check_leaf(path, leaf, rank)
            _check_unitary(path, leaf)
        return ProjUNNState(key=as_key(seed), count=jnp.zeros([], jnp.int32))

    def leaf_update(W: jax.Array, delta: jax.Array, key: jax.Array, count: jax.Array) -> jax.Array:
        if conjugate_complex and jnp.iscomplexobj(delta):
            delta = jnp.conj(delta)
        W_new, _ = step(W, delta, rank=rank, method=method, sketch=sketch, key=key)
        if reorthonormalize_every:
            W_new = jax.lax.cond(
                count % reorthonormalize_every == 0,
                lambda M: M - newton_schulz_correction(M),
                lambda M: M,
                W_new,
            )
        return W_new - W

    def update_fn(updates: Any, state: ProjUNNState, params: Any = None) -> tuple[Any, ProjUNNState]:
        if params is None:
            raise ValueError("projunn: update needs params; call tx.update(updates, state, params)")
        count = state.count + 1
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        deltas = treedef.flatten_up_to(updates)
        new_updates = []
        step_key = jax.random.fold_in(state.key, count)
        for index, ((path, W), delta) in enumerate(zip(leaves, deltas, strict=True)):
            _check_leaf(path, W, rank)
            if delta.shape != W.shape or delta.dtype != W.dtype:
                raise ValueError(
                    f"projunn: the update of {jax.tree_util.keystr(path) or 'params'} has shape {delta.shape} and "
                    f"dtype {delta.dtype}; expected {W.shape} and {W.dtype}"
                )
            new_updates.append(leaf_update(W, delta, jax.random.fold_in(step_key, index), count))
        return treedef.unflatten(new_updates), ProjUNNState(key=state.key, count=count)

    return optax.GradientTransformation(init_fn, update_fn)


def _check_leaf(path: Any, leaf: Any, rank: int) -> None:
    name = jax.tree_util.keystr(path) or "params"
    shape = getattr(leaf, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(
            f"projunn: leaf {name} has shape {shape}; unitary leaves must be matrices, shape (..., n, p) (square, or "
            "with orthonormal rows or columns). Route other leaves around projunn with optax.multi_transform."
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
