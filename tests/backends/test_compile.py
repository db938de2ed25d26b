"""``torch.compile(fullgraph=True)`` of the primitives: no graph break, and the compiled result equals eager.

A graph break (a value read on the host, an untraceable call) would make
``fullgraph=True`` raise, so compiling at all is the first assertion. The
default run traces with the ``aot_eager`` backend (Dynamo's tracing and AOT
autograd's functionalization, without code generation: seconds per case);
the slow cases also generate and run Inductor's kernels.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import unitary_lowrank as ul  # noqa: E402

CASES = [(1, "square"), (4, "tall"), (16, "batched")]
TOLERANCE = {torch.float32: 1e-5, torch.complex64: 1e-5, torch.float64: 1e-12, torch.complex128: 1e-12}


def _operands(dtype: torch.dtype, k: int, shape: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    n, p = (40, 40) if shape == "square" else (40, 24) if shape == "tall" else (24, 24)
    batch = (3,) if shape == "batched" else ()
    draw = lambda *s: torch.randn(*s, dtype=dtype, generator=generator)  # noqa: E731
    U = torch.linalg.qr(draw(*batch, n, p))[0]
    return U, draw(*batch, n, k), draw(*batch, p, k), draw(*batch, n, p), draw(*batch, p, k + 10)


def _function(name: str):
    if name == "transport":
        return lambda U, A, B, G, X0: ul.transport(U, A, B)
    if name == "project":
        return lambda U, A, B, G, X0: ul.project(U, A, B)

    def sketched(U, A, B, G, X0):  # the sketch's product A Bᴴ: the factors are unique only up to a unitary
        a, b = ul.sketch(G, A.shape[-1], init=X0)
        return a @ b.mH

    return sketched


def _check(name: str, dtype: torch.dtype, k: int, shape: str, backend: str) -> None:
    torch._dynamo.reset()
    operands = _operands(dtype, k, shape)
    function = _function(name)
    compiled = torch.compile(function, fullgraph=True, backend=backend)(*operands)  # raises on a graph break
    eager = function(*operands)
    scale = float(eager.abs().max())
    assert compiled.shape == eager.shape and compiled.dtype == eager.dtype
    assert float((compiled - eager).abs().max()) <= TOLERANCE[dtype] * max(scale, 1.0)
    if name != "sketch":  # and the step stayed on the manifold
        assert float(ul.unitarity_error(compiled).max()) <= 100 * TOLERANCE[dtype]


@pytest.mark.parametrize("k, shape", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex128], ids=str)
@pytest.mark.parametrize("name", ["transport", "project", "sketch"])
def test_fullgraph_compile_equals_eager(name, dtype, k, shape):
    _check(name, dtype, k, shape, backend="aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, dtype, k, shape",
    [
        ("transport", torch.complex64, 4, "square"),
        ("project", torch.float64, 16, "batched"),
        ("sketch", torch.float32, 1, "tall"),
    ],
    ids=str,
)
def test_fullgraph_compile_equals_eager_inductor(name, dtype, k, shape):
    """Inductor's generated kernels (about a minute of compilation per case on 2 cores: one case per function)."""
    _check(name, dtype, k, shape, backend="inductor")


def test_first_call_under_compile_loads_the_backend(monkeypatch):
    """The backend lookup imports the torch backend with an ``import`` statement that Dynamo can follow."""
    from unitary_lowrank import backends

    monkeypatch.setattr(backends, "_cache", {})  # as in a fresh process: nothing loaded yet
    monkeypatch.setattr(backends, "_by_type", {})
    _check("transport", torch.float64, 2, "square", backend="aot_eager")
    assert "torch" in backends._cache


def test_checks_of_values_are_skipped_under_compile_as_under_jit():
    """Eager raises on NaN; compiled, values are symbolic (as under jax.jit) and NaN propagates."""
    U, A, B, _, _ = _operands(torch.float64, 1, "square")
    A[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ul.transport(U, A, B)
    torch._dynamo.reset()
    out = torch.compile(lambda U, A, B: ul.transport(U, A, B), fullgraph=True, backend="aot_eager")(U, A, B)
    assert bool(torch.isnan(out).any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
@pytest.mark.parametrize("name", ["transport", "project"])
def test_compiled_rank_deficient_step_equals_eager(name, dtype):
    """Repeated columns of A, and a zero A inside the batch (U back bit for bit), compiled as eager."""
    U, A, B, G, X0 = _operands(dtype, 4, "batched")
    A = A[..., :1].expand_as(A).clone()
    A[1] = 0
    function = _function(name)
    torch._dynamo.reset()
    compiled = torch.compile(function, fullgraph=True, backend="aot_eager")(U, A, B, G, X0)
    eager = function(U, A, B, G, X0)
    assert bool(torch.isfinite(compiled).all()) and torch.equal(compiled[1], U[1])
    assert float((compiled - eager).abs().max()) <= TOLERANCE[dtype]


# -- counter keys: random draws that a compiled graph can take ------------------------------------------


@pytest.mark.parametrize("method", ["randomized", "column"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex64], ids=str)
def test_sketch_with_a_counter_key_compiles_and_equals_eager(method, dtype):
    """A torch.Generator cannot enter a graph; an int64 key tensor can, and gives the eager draws."""
    _, _, _, G, _ = _operands(dtype, 4, "tall")
    key = torch.tensor([7, 0, 3])

    def product(G, key):
        a, b = ul.sketch(G, 4, kind=method, seed=key)
        return a @ b.mH

    torch._dynamo.reset()
    compiled = torch.compile(product, fullgraph=True, backend="aot_eager")(G, key)
    eager = product(G, key)
    assert float((compiled - eager).abs().max()) <= TOLERANCE[dtype] * float(eager.abs().max())
    # the key is the state: the same values give the same sketch, another step another one
    assert torch.equal(product(G, key.clone()), eager)
    assert not torch.equal(product(G, torch.tensor([7, 0, 4])), eager)


@pytest.mark.slow
def test_sketch_with_a_counter_key_inductor():
    """Inductor's kernels wrap the 64-bit hash as eager does (a product of the index with a hash constant did not)."""
    _, _, _, G, _ = _operands(torch.float32, 4, "tall")
    key = torch.tensor([7, 0, 3])

    def product(G, key):
        a, b = ul.sketch(G, 4, seed=key)
        return a @ b.mH

    torch._dynamo.reset()
    compiled = torch.compile(product, fullgraph=True, backend="inductor")(G, key)
    eager = product(G, key)
    assert float((compiled - eager).abs().max()) <= 1e-5 * float(eager.abs().max())


# -- the ProjUNN step under torch.compile ----------------------------------------------------------------


def _training(method, dtype, shape, base, **options):
    from unitary_lowrank.backends.torch import ProjUNN, haar_

    generator = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(haar_(torch.empty(*shape, dtype=dtype), generator=generator))
    V = torch.nn.Parameter(torch.randn(shape[-1], dtype=dtype, generator=generator))
    groups = [{"params": [W], "unitary": True}, {"params": [V]}]
    optimizer = torch.optim.SGD(groups, lr=1e-2, momentum=0.9) if base == "sgd" else torch.optim.Adam(groups, lr=1e-2)
    return W, V, ProjUNN(optimizer, rank=4, method=method, reorthonormalize_every=3, **options)


def _train(W, V, step, optimizer, steps):
    X = torch.randn(W.shape[-2], W.shape[-2], dtype=W.dtype, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        optimizer.zero_grad()
        ((X @ W @ V).abs() ** 2).sum().backward()
        step()


def test_projunn_step_has_no_graph_break():
    """``torch._dynamo.explain(opt.step)`` finds none, as for plain Adam (sketch keys, no storage swap)."""
    W, V, optimizer = _training("transport", torch.float32, (16, 16), "adam")
    _train(W, V, lambda: None, optimizer, 1)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(optimizer.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize(
    "method, dtype, shape",
    [
        ("transport", torch.float64, (16, 16)),
        ("project", torch.complex128, (16, 16)),
        ("transport", torch.complex128, (12, 20)),  # orthonormal rows: stepped through the adjoint
        ("project", torch.float64, (2, 10, 6)),  # a batch of tall weights
    ],
    ids=str,
)
def test_compiled_projunn_step_equals_eager(method, dtype, shape):
    """Eight steps (two of them re-orthonormalizing) compiled equal eight eager steps, to rounding.

    The base optimizer is SGD with momentum: torch's own Adam already differs between compiled and
    eager (by ~7e-8 per step in float64, a different but equal formula for its denominator).
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    W1, V1, eager = _training(method, dtype, shape, "sgd")
    W2, V2, compiled = _training(method, dtype, shape, "sgd")
    _train(W1, V1, eager.step, eager, 8)
    _train(W2, V2, torch.compile(compiled.step, backend="aot_eager"), compiled, 8)
    assert float((W1 - W2).detach().abs().max()) <= 1e-12 and float((V1 - V2).detach().abs().max()) <= 1e-12
    assert float(ul.unitarity_error((W2 if shape[-1] <= shape[-2] else W2.mH).detach()).max()) <= 1e-13
    # a bounded set of graphs (first step, steady state, re-orthonormalizing step), not one per step
    assert counters["stats"]["unique_graphs"] <= 4


@pytest.mark.parametrize(
    "method, dtype, shape",
    [
        ("transport", torch.float64, (16, 16)),
        ("project", torch.complex128, (12, 20)),
        ("transport", torch.float64, (2, 10, 6)),
    ],
    ids=str,
)
def test_compiled_subspace_step_with_error_feedback_equals_eager(method, dtype, shape):
    """The stateful sketch (basis and error buffer kept between steps) compiles as one graph and equals eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    options = {"sketch": "subspace", "error_feedback": True}
    W1, V1, eager = _training(method, dtype, shape, "sgd", **options)
    W2, V2, compiled = _training(method, dtype, shape, "sgd", **options)
    _train(W1, V1, eager.step, eager, 8)
    _train(W2, V2, torch.compile(compiled.step, backend="aot_eager"), compiled, 8)
    assert float((W1 - W2).detach().abs().max()) <= 1e-12
    assert float((eager._bases[0] - compiled._bases[0]).abs().max()) <= 1e-12
    assert float((eager._errors[0] - compiled._errors[0]).abs().max()) <= 1e-12
    assert counters["stats"]["unique_graphs"] <= 4
    explanation = torch._dynamo.explain(compiled.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
def test_group_options_and_a_rank_deficient_gradient_compile_as_eager(sketch, dtype):
    """A param group's own options, a rank-1 gradient and a zero one inside the batch: compiled equals eager.

    The options of a group are checked once and looked up at each step; checking them inside the traced
    step once made the compiled step move the weights by 0.67 where eager moved them by 0.096.
    """
    from unitary_lowrank.backends.torch import ProjUNN, haar_

    torch._dynamo.reset()
    u = torch.randn(16, dtype=dtype, generator=torch.Generator().manual_seed(2))
    v = torch.randn(16, dtype=dtype, generator=torch.Generator().manual_seed(3))

    def setup():
        W = torch.nn.Parameter(haar_(torch.empty(3, 16, 16, dtype=dtype), generator=torch.Generator().manual_seed(1)))
        group = {"params": [W], "unitary": True, "rank": 2, "sketch": sketch, "error_feedback": True}
        return W, ProjUNN(torch.optim.SGD([group], lr=1e-2, momentum=0.9), check_every=None)

    def gradient():
        g = torch.outer(u, v).expand(3, 16, 16).clone()  # rank 1
        g[1] = 0  # no update for the middle matrix
        return g

    (W1, eager), (W2, compiled) = setup(), setup()
    start = W1.detach().clone()
    step = torch.compile(compiled.step, backend="aot_eager")
    for _ in range(4):
        W1.grad, W2.grad = gradient(), gradient()
        eager.step()
        step()
    assert float((W1 - W2).detach().abs().max()) <= 1e-5
    assert torch.equal(W2[1].detach(), start[1])  # the zero gradient's matrix did not move
    assert float(ul.unitarity_error(W2.detach()).max()) <= 1e-5
    W2.grad = gradient()
    explanation = torch._dynamo.explain(compiled.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_the_default_step_compiles_as_eager(dtype):
    """``ProjUNN(Adam)`` with no option (``rank="auto"``: k = 4 at 64×64), a rank-2 gradient: compiled equals eager,
    one graph, no break; the weight stays unitary."""
    from unitary_lowrank.backends.torch import ProjUNN, haar_

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(4)
    factors = torch.randn(64, 2, dtype=dtype, generator=g), torch.randn(2, 64, dtype=dtype, generator=g)

    def setup():
        W = torch.nn.Parameter(haar_(torch.empty(64, 64, dtype=dtype), generator=torch.Generator().manual_seed(1)))
        return W, ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=1e-2, momentum=0.9), check_every=None)

    (W1, eager), (W2, compiled) = setup(), setup()
    step = torch.compile(compiled.step, backend="aot_eager")
    for i in range(4):
        W1.grad = W2.grad = (factors[0] @ factors[1]) * (i + 1)
        eager.step()
        step()
    assert float((W1 - W2).detach().abs().max()) <= 1e-5
    start = haar_(torch.empty(64, 64, dtype=dtype), generator=torch.Generator().manual_seed(1))
    assert float((W1.detach() - start).abs().max()) > 1e-3  # it moved
    assert float(ul.unitarity_error(W2.detach())) <= 1e-5
    W2.grad = factors[0] @ factors[1]
    explanation = torch._dynamo.explain(compiled.step)()
    assert explanation.graph_break_count == 0, explanation.break_reasons
