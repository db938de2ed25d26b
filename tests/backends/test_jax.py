"""JAX: the core under jit and vmap, and the optax transformation projunn."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian, haar

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from unitary_lowrank.backends.jax import ProjUNNState, projunn  # noqa: E402

import unitary_lowrank as ul  # noqa: E402

STEPS = {
    "project": ul.project,
    "transport": ul.transport,
    "cayley": lambda U, A, B: ul.transport(U, A, B, retraction="cayley"),
}


def operands(rng, dtype="float64", n=16, k=2, batch=()):
    return (
        jnp.asarray(haar(n, dtype, rng, batch=batch)),
        jnp.asarray(gaussian((*batch, n, k), dtype, rng, 0.3)),
        jnp.asarray(gaussian((*batch, n, k), dtype, rng, 0.3)),
    )


@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
@pytest.mark.parametrize("step", STEPS)
def test_jit_equals_eager_equals_numpy(step, dtype, rng):
    U, A, B = operands(rng, dtype)
    eager = STEPS[step](U, A, B)
    jitted = jax.jit(STEPS[step])(U, A, B)
    on_numpy = STEPS[step](*(np.asarray(x) for x in (U, A, B)))
    tol = 1e-12 if dtype != "float32" else 1e-5
    assert eager.dtype == U.dtype and jitted.dtype == U.dtype
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=tol, rtol=0)
    np.testing.assert_allclose(np.asarray(eager), on_numpy, atol=tol, rtol=0)


@pytest.mark.parametrize("step", STEPS)
def test_vmap_equals_loop(step, rng):
    U, A, B = operands(rng, "complex128", batch=(3,))
    mapped = jax.jit(jax.vmap(STEPS[step]))(U, A, B)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(mapped[i]), np.asarray(STEPS[step](U[i], A[i], B[i])), atol=1e-13)


def test_sketch_under_jit_with_traced_key(rng):
    G = jnp.asarray(gaussian((20, 2), "float64", rng) @ gaussian((2, 20), "float64", rng))
    sketch = jax.jit(lambda G, key: ul.sketch(G, 2, seed=key))
    A, B = sketch(G, jax.random.key(3))
    A2, _ = sketch(G, jax.random.key(3))
    assert np.array_equal(np.asarray(A), np.asarray(A2))
    assert float(jnp.linalg.norm(A @ B.T - G)) <= 1e-12 * float(jnp.linalg.norm(G))
    for method in ("column", "svd"):
        A, B = jax.jit(lambda G, key, m=method: ul.sketch(G, 2, kind=m, seed=key))(G, jax.random.key(0))
        assert float(jnp.linalg.norm(A @ B.T - G)) <= 1e-12 * float(jnp.linalg.norm(G))


def test_value_checks_run_eagerly_and_are_skipped_under_jit(rng):
    U, A, B = operands(rng)
    bad = A.at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="A contains NaN"):
        ul.transport(U, bad, B)
    assert bool(jnp.isnan(jax.jit(ul.transport)(U, bad, B)).any())  # traced: no check, NaN propagates
    with pytest.raises(ValueError, match=r"B must have shape \(\.\.\., p, k\) with p = 3 rows"):
        jax.jit(ul.transport)(U[:, :3], A, B)  # shape checks still run at trace time


def test_reorthonormalize_under_jit(rng):
    U, _, _ = operands(rng)
    drifted = U + 1e-4 * jnp.asarray(gaussian((16, 16), "float64", rng))
    fixed = jax.jit(ul.reorthonormalize)(drifted)  # traced: three Newton–Schulz steps
    assert float(ul.unitarity_error(fixed)) <= 1e-14


# -- projunn ------------------------------------------------------------------------------


def test_update_equals_core_primitives(rng):
    """sgd then projunn: the update lands W exactly on transport(W, A, B) of the sketched −lr·g."""
    W = jnp.asarray(haar(12, "float64", rng))
    g = jnp.asarray(gaussian((12, 12), "float64", rng))
    tx = optax.chain(optax.sgd(0.1), projunn(rank=2, seed=5))
    state = tx.init(W)
    updates, state = tx.update(g, state, W)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 1), 0)
    A, B = ul.sketch(-0.1 * g, 2, seed=key)
    expected = ul.transport(W, A, B)
    np.testing.assert_allclose(np.asarray(optax.apply_updates(W, updates)), np.asarray(expected), atol=1e-14)
    assert int(state[1].count) == 1 and isinstance(state[1], ProjUNNState)


def learn_haar_target(dtype, make, steps, rank=4, method="transport"):
    n = 64
    keys = jax.random.split(jax.random.key(0), 3)
    W_star = ul.random_unitary(n, dtype=dtype, like=jnp, seed=1)
    X = jax.random.normal(keys[0], (n, 256), dtype=dtype)
    Y = W_star @ X
    W = ul.random_unitary(n, dtype=dtype, like=jnp, seed=2)
    if not jnp.iscomplexobj(W) and jnp.linalg.det(W) * jnp.linalg.det(W_star) < 0:
        W = W.at[:, 0].multiply(-1)  # same connected component of O(n)
    tx = optax.chain(make(), projunn(rank=rank, method=method))
    state = tx.init(W)

    def loss_fn(W):
        return jnp.sum(jnp.abs(W @ X - Y) ** 2) / jnp.sum(jnp.abs(Y) ** 2)

    @jax.jit
    def train(W, state):
        def body(carry, _):
            W, state = carry
            updates, state = tx.update(jax.grad(loss_fn)(W), state, W)
            return (optax.apply_updates(W, updates), state), None

        return jax.lax.scan(body, (W, state), None, length=steps)[0]

    W, state = train(W, state)
    return float(loss_fn(W)), W


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_learns_haar_target(dtype):
    loss, W = learn_haar_target(dtype, lambda: optax.adam(optax.cosine_decay_schedule(0.05, 1500)), 1500)
    assert loss <= 1e-6
    assert float(ul.unitarity_error(W)) <= 1e-13


def test_learns_haar_target_rank_one_sgd():
    loss, _ = learn_haar_target("float64", lambda: optax.sgd(30.0), 2000, rank=1)
    assert loss <= 1e-6


@pytest.mark.slow
def test_drift_after_ten_thousand_jitted_float32_steps():
    loss, W = learn_haar_target("float32", lambda: optax.rmsprop(1e-3), 10_000, rank=1)
    assert float(ul.unitarity_error(W)) <= 1e-5
    assert loss < 2.0  # it trained (starts near 2 for independent Haar matrices)


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_single_precision_core_without_x64(dtype, rng):
    """Without x64 mode the projUNN-D core stays in single precision: no float64 request, no warning, same result.

    With x64 (the rest of this file) the r×r core runs in double; both agree with
    the NumPy step to single-precision rounding.
    """
    import warnings

    U, A, B = operands(rng, dtype, k=4)
    reference = ul.project(*(np.asarray(x) for x in (U, A, B)))
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        V = jax.jit(ul.project)(U, A, B)
        assert V.dtype == U.dtype
        assert float(ul.unitarity_error(V)) <= 1e-5
    assert np.abs(np.asarray(V) - reference).max() <= 1e-5


@pytest.mark.parametrize("make", [optax.sgd, optax.rmsprop, optax.adam], ids=["sgd", "rmsprop", "adam"])
@pytest.mark.parametrize("method", ["transport", "project"])
def test_complex_leaf_descends(make, method):
    """A real loss of a complex unitary weight decreases: JAX's conjugated gradients are handled."""
    W = ul.random_unitary(10, dtype="complex128", like=jnp, seed=0)
    T = ul.random_unitary(10, dtype="complex128", like=jnp, seed=1)

    def loss_fn(W):
        return jnp.sum(jnp.abs(W - T) ** 2)

    tx = optax.chain(make(0.02), projunn(rank=2, method=method))
    state = tx.init(W)
    first = float(loss_fn(W))
    step = jax.jit(lambda W, s: tx.update(jax.grad(loss_fn)(W), s, W))
    for _ in range(100):
        updates, state = step(W, state)
        W = optax.apply_updates(W, updates)
    assert float(loss_fn(W)) < 0.5 * first
    assert float(ul.unitarity_error(W)) <= 1e-13


def test_without_conjugation_complex_descent_fails():
    """The same run with conjugate_complex=False does not descend: the flag matters."""
    W = ul.random_unitary(10, dtype="complex128", like=jnp, seed=0)
    T = ul.random_unitary(10, dtype="complex128", like=jnp, seed=1)

    def loss_fn(W):
        return jnp.sum(jnp.abs(W - T) ** 2)

    tx = optax.chain(optax.sgd(0.02), projunn(rank=2, conjugate_complex=False))
    state = tx.init(W)
    first = float(loss_fn(W))
    step = jax.jit(lambda W, s: tx.update(jax.grad(loss_fn)(W), s, W))
    for _ in range(100):
        updates, state = step(W, state)
        W = optax.apply_updates(W, updates)
    assert float(loss_fn(W)) > 0.5 * first


def test_multi_transform_and_batched_leaf(rng):
    params = {"u": jnp.asarray(haar(6, "float64", rng, batch=(4,))), "bias": jnp.zeros(6)}
    labels = {"u": "u", "bias": "rest"}
    tx = optax.multi_transform({"u": optax.chain(optax.rmsprop(1e-2), projunn()), "rest": optax.adam(1e-2)}, labels)
    state = tx.init(params)

    def loss_fn(p):
        return jnp.sum((p["u"] - jnp.eye(6)) ** 2) + jnp.sum((p["bias"] - 1) ** 2)

    first = float(loss_fn(params))
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss_fn)(p), s, p))
    for _ in range(50):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    assert float(loss_fn(params)) < first
    assert float(ul.unitarity_error(params["u"]).max()) <= 1e-13
    assert float(params["bias"][0]) > 0


def test_replicas_under_vmap_stay_identical(rng):
    """Two 'devices' (a vmapped axis) with the same key and gradients produce identical parameters."""
    W = jnp.asarray(haar(8, "float64", rng))
    g = jnp.asarray(gaussian((8, 8), "float64", rng))
    tx = optax.chain(optax.adam(1e-2), projunn(rank=2))

    def replica(W, g):
        state = tx.init(W)
        updates, _ = tx.update(g, state, W)
        return optax.apply_updates(W, updates)

    out = jax.jit(jax.vmap(replica))(jnp.stack([W, W]), jnp.stack([g, g]))
    assert np.array_equal(np.asarray(out[0]), np.asarray(out[1]))


def test_bad_leaves_and_arguments():
    tx = projunn()
    with pytest.raises(ValueError, match=r"leaf \['b'\] has shape \(3,\).*mask="):
        tx.init({"a": jnp.eye(3), "b": jnp.zeros(3)})
    with pytest.raises(TypeError, match="int32"):
        tx.init(jnp.eye(3, dtype=jnp.int32))
    with pytest.raises(ValueError, match="update needs params"):
        tx.update(jnp.eye(3), tx.init(jnp.eye(3)))
    with pytest.raises(ValueError, match="rank must be an int ≥ 1"):
        projunn(rank=0)
    with pytest.raises(ValueError, match="method must be one of"):
        projunn(method="qr")
    with pytest.raises(ValueError, match=r"rank 4 exceeds min\(n, p\) = 3"):
        projunn(rank=4).init(jnp.eye(3))


def test_rectangular_leaves_stay_orthonormal_and_descend():
    """Tall leaves keep orthonormal columns, wide ones orthonormal rows (stepped through the adjoint)."""
    for shape in [(12, 4), (4, 12)]:
        W = ul.random_unitary(max(shape), min(shape), dtype="float64", like=jnp, seed=0)
        if shape[0] < shape[1]:
            W = W.T
        target = ul.random_unitary(max(shape), min(shape), dtype="float64", like=jnp, seed=1)
        target = target.T if shape[0] < shape[1] else target
        tx = optax.chain(optax.sgd(0.1), projunn(rank=2))
        state = tx.init(W)
        loss = lambda W, target=target: jnp.sum((W - target) ** 2)  # noqa: E731
        first = float(loss(W))
        for _ in range(30):
            updates, state = tx.update(jax.grad(loss)(W), state, W)
            W = optax.apply_updates(W, updates)
        assert W.shape == shape
        assert float(loss(W)) < 0.8 * first
        assert float(ul.unitarity_error(W)) <= 1e-13


def test_complex_wide_leaf_descends_as_its_tall_adjoint():
    """A complex leaf with orthonormal rows follows the adjoint of its tall problem's trajectory.

    Regression: the conjugation of JAX's gradients was applied twice on the way through the adjoint
    (once per recursion level), so wide complex leaves barely moved (loss 11.8 → 11.5 in 50 SGD steps
    where the tall problem reaches 2.3).
    """
    W_tall = ul.random_unitary(16, 6, dtype="complex128", like=jnp, seed=0)
    T_tall = ul.random_unitary(16, 6, dtype="complex128", like=jnp, seed=1)
    finals = []
    for W, T in ((W_tall, T_tall), (jnp.conj(W_tall).T, jnp.conj(T_tall).T)):
        tx = optax.chain(optax.sgd(0.05), projunn(rank=2))
        state = tx.init(W)
        loss = lambda W, T=T: jnp.sum(jnp.abs(W - T) ** 2)  # noqa: E731
        for _ in range(50):
            updates, state = tx.update(jax.grad(loss)(W), state, W)
            W = optax.apply_updates(W, updates)
        finals.append((float(loss(W)), W))
    (tall_loss, W_t), (wide_loss, W_w) = finals
    assert tall_loss < 0.25 * float(jnp.sum(jnp.abs(W_tall - T_tall) ** 2))
    assert abs(wide_loss - tall_loss) <= 1e-10 * tall_loss
    assert float(jnp.max(jnp.abs(W_w - jnp.conj(W_t).T))) <= 1e-12
    assert float(ul.unitarity_error(W_w)) <= 1e-13


@pytest.mark.parametrize("error_feedback", [False, True])
def test_subspace_sketch_state_under_jit(error_feedback):
    """``sketch="subspace"``: the basis (and the error buffer) live in the state; jit equals eager; it learns."""
    W = {"a": ul.random_unitary(12, dtype="float64", like=jnp, seed=0), "b": ul.random_unitary(9, 4, like=jnp, seed=1)}
    T = {"a": ul.random_unitary(12, dtype="float64", like=jnp, seed=2), "b": ul.random_unitary(9, 4, like=jnp, seed=3)}
    W["b"] = W["b"].T  # a wide leaf
    T["b"] = T["b"].T

    def loss(W):
        return sum(jnp.sum((W[k] - T[k]) ** 2) for k in W)

    tx = optax.chain(optax.adam(0.05), projunn(rank=2, sketch="subspace", error_feedback=error_feedback))
    state = tx.init(W)
    projunn_state = state[1]
    assert [b.shape for b in projunn_state.basis] == [(12, 2), (4, 2)]
    assert (projunn_state.error is not None) == error_feedback
    update = lambda W, s: tx.update(jax.grad(loss)(W), s, W)  # noqa: E731
    eager_W, eager_state, jit_W, jit_state = W, state, W, state
    first = float(loss(W))
    for _ in range(40):
        updates, eager_state = update(eager_W, eager_state)
        eager_W = optax.apply_updates(eager_W, updates)
        updates, jit_state = jax.jit(update)(jit_W, jit_state)
        jit_W = optax.apply_updates(jit_W, updates)
    for k in W:
        assert float(jnp.max(jnp.abs(eager_W[k] - jit_W[k]))) <= 1e-12
        assert float(ul.unitarity_error(jit_W[k])) <= 1e-13
    assert float(loss(jit_W)) < 0.8 * first


def test_init_refuses_a_non_unitary_leaf():
    with pytest.raises(ValueError, match=r"leaf \['w'\] is not unitary.*random_unitary"):
        projunn().init({"w": 2 * jnp.eye(4)})
    with pytest.raises(ValueError, match=r"leaf \['w'\] contains NaN"):
        projunn().init({"w": jnp.full((4, 4), jnp.nan)})


def test_per_frequency_leaf_is_one_batched_call(rng):
    """A convolution's (H, W//2 + 1, c, c) complex leaf: the jitted batched step equals a per-frequency loop."""
    H, Wf, c = 4, 3, 3
    U = jnp.asarray(haar(c, "complex128", rng, batch=(H, Wf)))
    A = jnp.asarray(gaussian((H, Wf, c, 1), "complex128", rng, 0.3))
    B = jnp.asarray(gaussian((H, Wf, c, 1), "complex128", rng, 0.3))
    batched = jax.jit(ul.transport)(U, A, B)
    for h in range(H):
        for w in range(Wf):
            single = ul.transport(U[h, w], A[h, w], B[h, w])
            assert float(jnp.abs(batched[h, w] - single).max()) <= 1e-12
    tx = optax.chain(optax.adam(1e-2), projunn(rank=1))
    state = tx.init(U)
    target = jnp.eye(c, dtype=U.dtype)
    loss = lambda W: jnp.sum(jnp.abs(W - target) ** 2)  # noqa: E731
    first = float(loss(U))
    step = jax.jit(lambda W, s: tx.update(jax.grad(loss)(W), s, W))
    for _ in range(20):
        updates, state = step(U, state)
        U = optax.apply_updates(U, updates)
    assert float(loss(U)) < first and float(ul.unitarity_error(U).max()) <= 1e-13


# -- one vocabulary with the torch adapter, mask=, the dense step ----------------------------


def test_options_are_keyword_only_and_refused_where_a_method_ignores_them():
    with pytest.raises(TypeError):
        projunn(2)  # positional: refused, as ProjUNN's are
    with pytest.raises(ValueError, match="method='dense' ignores rank=2; leave it at the default"):
        projunn(rank=2, method="dense")
    with pytest.raises(ValueError, match="ignores sketch='subspace', error_feedback=True; leave them"):
        projunn(method="dense", sketch="subspace", error_feedback=True)


def test_mask_passes_the_other_leaves_through_untouched(rng):
    """``mask=``: the unitary leaf steps as under projunn alone, every other leaf keeps the base update."""
    W = jnp.asarray(haar(12, "float64", rng))
    params = {"w": W, "bias": jnp.zeros(12), "v": jnp.ones((3, 4))}
    grads = {name: jnp.asarray(gaussian(x.shape, "float64", rng)) for name, x in params.items()}
    base = optax.sgd(0.1)
    masked = optax.chain(base, projunn(rank=2, mask={"w": True, "bias": False, "v": False}))
    updates, _ = masked.update(grads, masked.init(params), params)
    alone = optax.chain(base, projunn(rank=2))
    expected, _ = alone.update(grads["w"], alone.init(W), W)
    np.testing.assert_array_equal(np.asarray(updates["bias"]), -0.1 * np.asarray(grads["bias"]))
    np.testing.assert_array_equal(np.asarray(updates["v"]), -0.1 * np.asarray(grads["v"]))
    # W is leaf 0 of what projunn sees in both chains (masked leaves are empty nodes): the same key, the same bits
    np.testing.assert_array_equal(np.asarray(updates["w"]), np.asarray(expected))
    assert float(ul.unitarity_error(W + updates["w"])) < 1e-13


@pytest.mark.parametrize("shape", [(10, 10), (12, 5), (5, 12)])
def test_dense_step_is_the_exact_riemannian_step(shape, rng):
    """``method="dense"``: ``exp(skew(Δ Wᴴ)) W`` for the tall view, against SciPy's expm in double precision."""
    import scipy.linalg

    n, p = shape
    W = haar(max(n, p), "float64", rng, p=min(n, p))
    W = W if n >= p else W.T.copy()
    G = gaussian(shape, "float64", rng)
    tx = optax.chain(optax.sgd(0.05), projunn(method="dense", reorthonormalize_every=None))
    updates, _ = tx.update(jnp.asarray(G), tx.init(jnp.asarray(W)), jnp.asarray(W))
    tall_W, tall_delta = (W, -0.05 * G) if n >= p else (W.T, -0.05 * G.T)
    X = tall_delta @ tall_W.T
    expected = scipy.linalg.expm((X - X.T) / 2) @ tall_W
    result = np.asarray(jnp.asarray(W) + updates)
    np.testing.assert_allclose(result if n >= p else result.T, expected, atol=1e-13)


@pytest.mark.parametrize(
    ("saved", "used", "message"),
    [
        ({"rank": 2, "sketch": "subspace"}, {"rank": 3, "sketch": "subspace"}, r"basis holds shapes \[\(8, 2\)\]"),
        ({"sketch": "subspace"}, {}, r"basis holds shapes \[\(8, 1\)\], these options and params need None"),
        ({}, {"error_feedback": True}, r"error holds shapes None, these options and params need \[\(8, 8\)\]"),
    ],
)
def test_a_state_of_other_options_is_refused_before_any_update(saved, used, message, rng):
    W = jnp.asarray(haar(8, "float64", rng))
    state = projunn(**saved).init(W)
    with pytest.raises(ValueError, match=message):
        projunn(**used).update(W, state, W)
    other = jnp.asarray(haar(6, "float64", rng))
    with pytest.raises(ValueError, match="the state's basis holds shapes"):
        projunn(sketch="subspace").update(other, projunn(sketch="subspace").init(W), other)


def test_the_default_rank_is_auto(rng):
    """``projunn()`` steps a 64×64 leaf at rank 4 and a 20×20 one at rank 1 (``rank="auto"``): the bases' shapes."""
    W = {
        "a": ul.random_unitary(64, dtype="float32", like=jnp, seed=0),
        "b": ul.random_unitary(20, dtype="float32", like=jnp, seed=1),
    }
    tx = projunn(sketch="subspace")
    state = tx.init(W)
    assert [tuple(q.shape) for q in state.basis] == [(64, 4), (20, 1)]
    updates, state = tx.update(jax.tree_util.tree_map(lambda w: 0.01 * jnp.ones_like(w), W), state, W)
    W = optax.apply_updates(W, updates)
    assert all(float(ul.unitarity_error(w)) < 1e-5 for w in jax.tree_util.tree_leaves(W))
