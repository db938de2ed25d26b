"""PyTorch: the core on tensors, the ProjUNN wrapper and the initializers (CPU)."""

from __future__ import annotations

import math

import pytest
from conftest import (
    DTYPES,
    RESIDENT,
    dense_project,
    dense_transport,
    dense_transport_left,
    gaussian,
    haar,
    relative_error,
    tolerance,
)

torch = pytest.importorskip("torch")

from unitary_lowrank.backends.torch import ProjUNN, cayley_, haar_, henaff_  # noqa: E402

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank._adapters import Options  # noqa: E402

TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}


def eye_like(W):
    return torch.eye(W.shape[-1], dtype=W.dtype)


def unitarity(W) -> float:
    return float(ul.unitarity_error(W.detach()).max())


# -- the core on torch tensors -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("step", "reference"), [(ul.project, dense_project), (ul.transport, dense_transport)])
def test_core_on_tensors_matches_dense(step, reference, dtype, rng):
    U, A, B = (
        haar(20, dtype, rng, batch=(2,)),
        gaussian((2, 20, 3), dtype, rng, 0.3),
        gaussian((2, 20, 3), dtype, rng, 0.3),
    )
    result = step(torch.from_numpy(U), torch.from_numpy(A), torch.from_numpy(B), check=True)
    assert isinstance(result, torch.Tensor) and result.dtype == TORCH_DTYPES[dtype]
    assert relative_error(result.numpy(), reference(U, A, B)) <= tolerance(dtype, 2.0)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_in_place_on_tensors(batch, rng):
    U = torch.from_numpy(haar(150, "complex128", rng, batch=batch))
    A, B = (torch.from_numpy(gaussian((*batch, 150, 2), "complex128", rng)) for _ in range(2))
    expected = ul.transport(U, A, B)
    pointer = U.data_ptr()
    assert ul.transport(U, A, B, out=U) is U and U.data_ptr() == pointer
    torch.testing.assert_close(U, expected, atol=1e-14, rtol=0)


@pytest.fixture
def host_core(monkeypatch):
    """Steps on CPU tensors take the GPU route: their r×r core goes through NumPy and back (a copy each way)."""
    from unitary_lowrank.backends.torch import _backend

    if RESIDENT:
        pytest.skip("the host route, which device_resident() replaces by design")

    moves = []

    def to_host(x):
        moves.append(tuple(x.shape))
        return x.detach().cpu().numpy().copy()

    def transfer(self, arrays):
        return to_host, (lambda x: torch.from_numpy(x.copy()))

    monkeypatch.setattr(_backend.TorchBackend, "host_transfer", transfer)
    return moves


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 20, 20), (20, 6)])
@pytest.mark.parametrize(("step", "reference"), [(ul.project, dense_project), (ul.transport, dense_transport_left)])
def test_core_on_the_host_matches_dense(step, reference, shape, dtype, rng, host_core):
    """The route GPU tensors take (r×r core in NumPy) is as exact as the dense references, in place too."""
    U = haar(shape[-2], dtype, rng, batch=shape[:-2])[..., : shape[-1]].copy()
    A, B = gaussian((*shape[:-1], 3), dtype, rng, 0.3), gaussian((*shape[:-2], shape[-1], 3), dtype, rng, 0.3)
    expected = reference(U, A, B)
    W = torch.from_numpy(U.copy())
    assert step(W, torch.from_numpy(A), torch.from_numpy(B), out=W) is W
    assert host_core, "the host route was not taken"
    assert relative_error(W.numpy(), expected) <= tolerance(dtype, 3.0)
    zero = step(torch.from_numpy(U), torch.from_numpy(A), torch.zeros_like(torch.from_numpy(B)))
    assert torch.equal(zero, torch.from_numpy(U))  # a vanishing update is still exactly U


def test_core_on_the_host_warns_at_the_caller(rng, host_core):
    """Complex, so that the core takes the host route (a real k = 1 core is a closed form that stays put)."""
    U = torch.from_numpy(haar(9, "complex128", rng))
    x = torch.from_numpy(gaussian((9, 1), "complex128", rng))
    x = x / torch.linalg.norm(x)
    with pytest.warns(ul.SingularUpdateWarning, match="not unique") as caught:
        ul.project(U, -U @ x, x)
    assert caught[0].filename == __file__
    assert host_core, "the host route was not taken"


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_sketch_through_the_host_route_is_exact(dtype, rng, host_core):
    G = torch.from_numpy(gaussian((40, 3), dtype, rng) @ gaussian((3, 30), dtype, rng))
    A, B = ul.sketch(G, 3, seed=0)
    assert host_core, "the host route was not taken"
    assert torch.dist(A @ B.mH, G) <= 1e-12 * torch.linalg.norm(G)


@pytest.mark.parametrize("step", [ul.project, ul.transport])
def test_batched_steps_through_the_host_route(step, rng, host_core):
    """A batch goes through the host twice on a GPU: its tall QRs and its r×r cores."""
    U = torch.from_numpy(haar(12, "float64", rng, batch=(5,)))
    A, B = (torch.from_numpy(gaussian((5, 12, 2), "float64", rng, 0.3)) for _ in range(2))
    expected = (dense_project if step is ul.project else dense_transport)(U.numpy(), A.numpy(), B.numpy())
    assert relative_error(step(U, A, B).numpy(), expected) <= 1e-13
    assert (5, 12, 4) in host_core  # the stacked QR's input [Uᴴ A, B] or [A, U B]
    assert (5, 4, 2) in host_core  # the core's coordinates R_A


@pytest.mark.parametrize("step", [ul.project, ul.transport])
def test_real_rank_one_stays_on_the_device(step, rng, host_core):
    """Real k = 1: the 2×2 core is a closed form of elementwise operations, so nothing goes to the host."""
    U = torch.from_numpy(haar(12, "float64", rng))
    A, B = (torch.from_numpy(gaussian((12, 1), "float64", rng, 0.3)) for _ in range(2))
    expected = (dense_project if step is ul.project else dense_transport)(U.numpy(), A.numpy(), B.numpy())
    assert relative_error(step(U, A, B).numpy(), expected) <= 1e-13
    assert host_core == []


def test_host_route_only_off_the_cpu_and_outside_autograd():
    from unitary_lowrank.backends.torch import _backend

    backend = _backend.TorchBackend()
    elsewhere = torch.zeros(2, 2, device="meta")  # stands for a GPU tensor: off the host
    recorded = torch.zeros(2, 2, device="meta", requires_grad=True)
    assert backend.host_transfer((torch.zeros(2, 2),)) is None  # CPU tensors: already on the host
    assert backend.host_transfer((elsewhere, elsewhere)) is not None
    assert backend.host_transfer((elsewhere, recorded)) is None  # autograd records the step: stay
    with torch.no_grad():
        assert backend.host_transfer((elsewhere, recorded)) is not None


def test_sketch_on_tensors_is_seeded_and_exact(rng):
    G = torch.from_numpy(gaussian((30, 2), "float64", rng) @ gaussian((2, 30), "float64", rng))
    A1, B1 = ul.sketch(G, 2, seed=(5, 1, 0))
    A2, B2 = ul.sketch(G, 2, seed=(5, 1, 0))
    assert torch.equal(A1, A2) and torch.equal(B1, B2)
    assert not torch.equal(A1, ul.sketch(G, 2, seed=(5, 2, 0))[0])
    assert torch.dist(A1 @ B1.T, G) <= 1e-12 * torch.linalg.norm(G)


def test_random_unitary_like_torch():
    U = ul.random_unitary(6, dtype=torch.complex64, like=torch.zeros(1), seed=0)
    assert isinstance(U, torch.Tensor) and U.dtype == torch.complex64
    assert unitarity(U) < 1e-6
    assert ul.random_unitary(3, dtype="float64", like=torch).dtype == torch.float64


# -- initializers -------------------------------------------------------------------------


@pytest.mark.parametrize("init", [haar_, henaff_, cayley_])
@pytest.mark.parametrize("dtype", list(TORCH_DTYPES.values()))
@pytest.mark.parametrize("shape", [(7, 7), (3, 6, 6)])
def test_initializers_are_unitary_in_place(init, dtype, shape):
    tensor = torch.empty(shape, dtype=dtype)
    out = init(tensor, generator=torch.Generator().manual_seed(0))
    assert out is tensor
    assert unitarity(tensor) <= 50 * torch.finfo(dtype).eps


def test_henaff_is_rotation_blocks_with_uniform_angles():
    n = 2000
    W = henaff_(torch.empty(n, n, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    cos_upper, cos_lower = W[0::2, 0::2].diagonal(), W[1::2, 1::2].diagonal()
    sin_lower, minus_sin_upper = W[1::2, 0::2].diagonal(), W[0::2, 1::2].diagonal()
    assert torch.equal(cos_upper, cos_lower) and torch.equal(sin_lower, -minus_sin_upper)
    assert W.count_nonzero() == 2 * n  # nothing outside the 2×2 blocks
    angles = torch.atan2(sin_lower, cos_upper)
    assert ks_distance_from_uniform(angles / math.pi) < 0.05  # KS critical value at n/2 = 1000 samples: 0.043 (1%)


def ks_distance_from_uniform(x):
    """Kolmogorov–Smirnov distance of x (in (−1, 1)) from the uniform distribution."""
    x = torch.sort((x + 1) / 2).values
    grid = torch.arange(1, len(x) + 1, dtype=x.dtype) / len(x)
    return float((x - grid).abs().max())


def test_cayley_spectrum_is_in_right_half_plane():
    W = cayley_(torch.empty(40, 40, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    phases = torch.angle(torch.linalg.eigvals(W))
    assert float(phases.abs().max()) <= math.pi / 2 + 1e-12


def test_initializer_errors():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, n\)"):
        henaff_(torch.empty(3, 4))
    with pytest.raises(ValueError, match=r"haar_: tensor must have shape \(\.\.\., n, p\)"):
        haar_(torch.empty(4))
    with pytest.raises(TypeError, match="float16"):
        henaff_(torch.empty(4, 4, dtype=torch.float16))


# -- the wrapper --------------------------------------------------------------------------


def unitary_param(n, dtype=torch.float64, seed=0, batch=()):
    return torch.nn.Parameter(
        haar_(torch.empty(*batch, n, n, dtype=dtype), generator=torch.Generator().manual_seed(seed))
    )


def _rule(method: str) -> dict[str, str]:
    """The options of a method label: ``"cayley"`` is ``transport`` with the Cayley retraction."""
    return {"method": "transport", "retraction": "cayley"} if method == "cayley" else {"method": method}


def quadratic_loss(W, target):
    return (W - target).abs().pow(2).sum()


@pytest.mark.parametrize(("method", "retraction"), [("transport", "exp"), ("transport", "cayley"), ("project", "exp")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_wrapper_step_equals_core_primitives(method, retraction, dtype, batch):
    """SGD with momentum: the update is Δ = −lr·g on the first step; compare with the core."""
    W = unitary_param(12, dtype, batch=batch)
    target = torch.randn(*batch, 12, 12, dtype=dtype, generator=torch.Generator().manual_seed(3))
    before = W.detach().clone()
    base = torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1, momentum=0.9)
    opt = ProjUNN(base, rank=2, method=method, retraction=retraction)
    quadratic_loss(W, target).backward()
    delta = -0.1 * W.grad.clone()
    opt.step()
    A, B = ul.sketch(delta, 2, seed=(0, 1, 0))
    if method == "project":
        expected = ul.project(before, A, B)
    else:
        expected = ul.transport(before, A, B, retraction=retraction)
    assert float((W.detach() - expected).abs().max()) <= 1e-12


@pytest.mark.parametrize("shape", [(12, 12), (16, 6), (6, 16), (2, 8, 8)])
def test_wrapper_step_does_not_validate_again(shape, monkeypatch):
    """The constructor checked the weights and options; a step calls the kernels, with no per-step validation."""
    import importlib

    # the modules (the package's own names sketch, project, transport are the functions)
    rank_update, sketch_module, unitarity_module = (
        importlib.import_module(f"unitary_lowrank.{name}") for name in ("_rank_update", "sketch", "unitarity")
    )

    calls = []

    def spy(module, name):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    for module, names in (
        (rank_update, ("check_factors", "check_finite", "probe_unitarity")),
        (sketch_module, ("check_matrix", "check_dtype", "_check_finite")),
        (unitarity_module, ("check_matrix", "check_dtype", "check_finite")),
    ):
        for name in names:
            spy(module, name)
    W = torch.nn.Parameter(haar_(torch.empty(*shape, dtype=torch.float64), generator=torch.Generator().manual_seed(0)))
    target = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=0.01), rank=2, reorthonormalize_every=2)
    calls.clear()  # the constructor's own checks
    for _ in range(3):  # the second step also takes a Newton–Schulz step
        opt.zero_grad()
        quadratic_loss(W, target).backward()
        opt.step()
    assert calls == []
    U = W.detach() if shape[-1] <= shape[-2] else W.detach().mH
    zeros = torch.zeros(*U.shape[:-1], 1, dtype=U.dtype), torch.zeros(*U.shape[:-2], U.shape[-1], 1, dtype=U.dtype)
    ul.transport(U, *zeros)
    assert "check_factors" in calls and "check_finite" in calls  # the spies do see a public call's validation


def test_wrapper_step_equals_core_with_adam_update():
    """Adam's first update is −lr·g/(|g| + eps) elementwise: the wrapper sketches exactly that."""
    W = unitary_param(10)
    target = torch.randn(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    before = W.detach().clone()
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=0.01, eps=1e-8), rank=3)
    quadratic_loss(W, target).backward()
    g = W.grad.clone()
    opt.step()
    A, B = ul.sketch(-0.01 * g / (g.abs() + 1e-8), 3, seed=(0, 1, 0))
    assert float((W.detach() - ul.transport(before, A, B)).abs().max()) <= 1e-12


def learn_haar_target(dtype, rank, make_optimizer, max_steps, method="transport"):
    """Learn W ≈ W* from samples Y = W* X; returns the final relative loss and W."""
    g = torch.Generator().manual_seed(0)
    n = 64
    W_star = haar_(torch.empty(n, n, dtype=dtype), generator=g)
    X = torch.randn(n, 256, dtype=dtype, generator=g)
    Y = W_star @ X
    W0 = haar_(torch.empty(n, n, dtype=dtype), generator=g)
    if not dtype.is_complex and torch.linalg.det(W0) * torch.linalg.det(W_star) < 0:
        # O(n) has two components and a rotation cannot cross between them
        W0[:, 0] = -W0[:, 0]
    W = torch.nn.Parameter(W0)
    opt = ProjUNN(make_optimizer([{"params": [W], "unitary": True}]), rank=rank, method=method)
    for _ in range(max_steps):
        opt.zero_grad()
        loss = (W @ X - Y).abs().pow(2).sum() / Y.abs().pow(2).sum()
        if loss.item() <= 1e-6:
            break
        loss.backward()
        opt.step()
    return loss.item(), W


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128, torch.float32])
def test_learns_haar_target_with_adam(dtype):
    loss, W = learn_haar_target(dtype, 4, lambda groups: torch.optim.Adam(groups, lr=0.05), 1500)
    assert loss <= 1e-6
    assert unitarity(W) <= 50 * torch.finfo(dtype).eps


def test_learns_haar_target_rank_one_sgd():
    loss, W = learn_haar_target(torch.float64, 1, lambda groups: torch.optim.SGD(groups, lr=30.0), 2000)
    assert loss <= 1e-6 and unitarity(W) <= 1e-13


def test_learns_haar_target_project_rmsprop():
    loss, _ = learn_haar_target(
        torch.complex128, 4, lambda groups: torch.optim.RMSprop(groups, lr=0.02), 2000, method="project"
    )
    assert loss <= 1e-6


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.optim.SGD(g, lr=0.05),
        lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, nesterov=True),
        lambda g: torch.optim.Adam(g, lr=0.02),
        lambda g: torch.optim.Adam(g, lr=0.02, amsgrad=True),
        lambda g: torch.optim.AdamW(g, lr=0.02, weight_decay=0.0),
        lambda g: torch.optim.RMSprop(g, lr=0.01, centered=True),
        lambda g: torch.optim.RMSprop(g, lr=0.01, momentum=0.5),
        lambda g: torch.optim.Adagrad(g, lr=0.1),
        lambda g: torch.optim.NAdam(g, lr=0.02),
        lambda g: torch.optim.Adamax(g, lr=0.02),
    ],
    ids=[
        "sgd",
        "nesterov",
        "adam",
        "amsgrad",
        "adamw",
        "rmsprop-centered",
        "rmsprop-momentum",
        "adagrad",
        "nadam",
        "adamax",
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_descends_and_stays_unitary_with_common_optimizers(make, dtype):
    """A real loss of a (complex) unitary weight decreases; other groups are left to the base optimizer."""
    W = unitary_param(16, dtype)
    bias = torch.nn.Parameter(torch.zeros(16, dtype=dtype))
    target = unitary_param(16, dtype, seed=9).detach()
    if not dtype.is_complex and torch.linalg.det(W.detach()) * torch.linalg.det(target) < 0:
        target[:, 0] = -target[:, 0]
    opt = ProjUNN(make([{"params": [bias]}, {"params": [W], "unitary": True}]), rank=2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = quadratic_loss(W, target) + (bias - 1).abs().pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    assert losses[-1] < 0.7 * losses[0]
    assert unitarity(W) <= 50 * torch.finfo(dtype).eps
    assert float(bias.detach().abs().max()) > 0  # the plain group moved too


def test_lr_scheduler_closure_zero_grad_and_missing_grads():
    W = unitary_param(8)
    unused = unitary_param(8, seed=1)  # marked, but never receives a gradient
    before_unused = unused.detach().clone()
    base = torch.optim.SGD([{"params": [W, unused], "unitary": True}], lr=0.1)
    opt = ProjUNN(base, rank=2)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # attached to the wrapper
    target = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def closure():
        opt.zero_grad()
        loss = quadratic_loss(W, target)
        loss.backward()
        return loss

    first = opt.step(closure)
    scheduler.step()
    assert base.param_groups[0]["lr"] == pytest.approx(0.05)
    second = opt.step(closure)
    assert second.item() < first.item()
    assert torch.equal(unused.detach(), before_unused)
    opt.zero_grad()
    assert W.grad is None
    base_scheduler = torch.optim.lr_scheduler.ExponentialLR(base, gamma=0.1)  # attached to the base
    opt.step(closure)
    base_scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)


def test_complex_follows_wirtinger_convention():
    """Minimize ‖W − T‖² for a unitary T: W must approach T (a sign or conjugation slip would not)."""
    W = unitary_param(6, torch.complex128)
    T = unitary_param(6, torch.complex128, seed=5).detach()
    opt = ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.05), rank=6)
    for _ in range(300):
        opt.zero_grad()
        quadratic_loss(W, T).backward()
        opt.step()
    assert float((W.detach() - T).abs().max()) <= 1e-8


def make_model_and_optimizer(seed=0, **options):
    torch.manual_seed(seed)
    cell = torch.nn.RNNCell(4, 16, nonlinearity="tanh", dtype=torch.float64)
    haar_(cell.weight_hh.data, generator=torch.Generator().manual_seed(seed))
    head = torch.nn.Linear(16, 2, dtype=torch.float64)
    rest = [p for name, p in cell.named_parameters() if name != "weight_hh"] + list(head.parameters())
    base = torch.optim.RMSprop([{"params": rest}, {"params": [cell.weight_hh], "unitary": True, "lr": 1e-3}], lr=1e-2)
    return cell, head, ProjUNN(base, rank=1, reorthonormalize_every=7, **options)


def train(cell, head, opt, steps, start):
    for step in range(start, start + steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(10, 8, 4, dtype=torch.float64, generator=g)
        y = torch.randn(8, 2, dtype=torch.float64, generator=g)
        h = torch.zeros(8, 16, dtype=torch.float64)
        for t in range(10):
            h = cell(x[t], h)
        loss = (head(h) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(
    "options", [{}, {"sketch": "subspace"}, {"sketch": "subspace", "error_feedback": True}], ids=str
)
def test_checkpoint_resume_is_bit_identical(tmp_path, options):
    """The subspace basis and the error buffer are saved too: a resumed run equals the uninterrupted one bit for bit."""
    cell, head, opt = make_model_and_optimizer(**options)
    train(cell, head, opt, 100, 0)

    cell1, head1, opt1 = make_model_and_optimizer(**options)
    train(cell1, head1, opt1, 50, 0)
    path = tmp_path / "checkpoint.pt"
    torch.save({"cell": cell1.state_dict(), "head": head1.state_dict(), "opt": opt1.state_dict()}, path)

    cell2, head2, opt2 = make_model_and_optimizer(seed=1, **options)  # other weights, overwritten by the load
    checkpoint = torch.load(path)
    cell2.load_state_dict(checkpoint["cell"])
    head2.load_state_dict(checkpoint["head"])
    opt2.load_state_dict(checkpoint["opt"])
    train(cell2, head2, opt2, 50, 50)
    for a, b in zip(
        list(cell.parameters()) + list(head.parameters()),
        list(cell2.parameters()) + list(head2.parameters()),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert opt2.state_dict()["projunn"]["steps"] == opt.state_dict()["projunn"]["steps"]
    for name in ("bases", "errors"):
        saved, resumed = opt.state_dict()["projunn"][name], opt2.state_dict()["projunn"][name]
        assert saved.keys() == resumed.keys() and all(torch.equal(saved[i], resumed[i]) for i in saved)
    assert bool(opt.state_dict()["projunn"]["bases"]) == (options.get("sketch") == "subspace")


def test_load_state_dict_rejects_plain_optimizer_state():
    _, _, opt = make_model_and_optimizer()
    with pytest.raises(ValueError, match=r"expected the dict that ProjUNN\.state_dict\(\) returns"):
        opt.load_state_dict(opt.optimizer.state_dict())


def test_batched_unitary_parameter():
    W = unitary_param(5, torch.float64, batch=(4,))
    target = torch.eye(5, dtype=torch.float64).expand(4, 5, 5)
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=0.05), rank=1)
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = quadratic_loss(W, target)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first
    assert unitarity(W) <= 1e-13


def test_group_options_override_defaults():
    W1, W2 = unitary_param(6), unitary_param(6, seed=1)
    base = torch.optim.SGD(
        [
            {"params": [W1], "unitary": True},
            {"params": [W2], "unitary": True, "rank": 3, "method": "project", "seed": 9},
        ],
        lr=0.1,
    )
    opt = ProjUNN(base, rank=1)
    assert opt._options(base.param_groups[1]) == Options(
        rank=3, method="project", sketch="randomized", error_feedback=False, reorthonormalize_every=100, seed=9
    )
    with pytest.raises(ValueError, match=r"param_groups\[2\]: method must be one of"):
        opt.add_param_group({"params": [unitary_param(6, seed=2)], "unitary": True, "method": "qr"})


# -- bad input ----------------------------------------------------------------------------


def test_non_matrix_parameter_is_named():
    model = torch.nn.Linear(4, 3, dtype=torch.float64)
    base = torch.optim.SGD([{"params": [model.bias], "param_names": ["encoder.bias"], "unitary": True}], lr=0.1)
    with pytest.raises(ValueError, match=r"'encoder.bias' .*has shape \(3,\).*must be matrices"):
        ProjUNN(base)


def test_non_unitary_rectangular_parameter_is_named():
    model = torch.nn.Linear(4, 3, dtype=torch.float64)  # default init: rows not orthonormal
    base = torch.optim.SGD([{"params": [model.weight], "param_names": ["encoder.weight"], "unitary": True}], lr=0.1)
    with pytest.raises(ValueError, match=r"'encoder.weight' .*is not unitary.*haar_"):
        ProjUNN(base)


def test_half_precision_parameter():
    W = torch.nn.Parameter(torch.eye(4, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] is torch.float16"):
        ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1))


def test_weight_decay_on_unitary_group():
    W = unitary_param(4)
    with pytest.raises(ValueError, match=r"weight_decay=0\.01.*Set weight_decay=0"):
        ProjUNN(torch.optim.AdamW([{"params": [W], "unitary": True}], lr=0.1))


def test_non_unitary_parameter_offers_the_fix():
    W = torch.nn.Parameter(torch.randn(5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"is not unitary.*reorthonormalize"):
        ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1))
    with torch.no_grad():
        W.copy_(ul.reorthonormalize(W))
    ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1))  # the offered fix works


def test_lbfgs_and_non_optimizers_are_refused():
    W = unitary_param(4)
    with pytest.raises(TypeError, match="LBFGS"):
        ProjUNN(torch.optim.LBFGS([W]))
    with pytest.raises(TypeError, match=r"wraps a torch\.optim\.Optimizer"):
        ProjUNN([W])


def test_rank_larger_than_parameter():
    with pytest.raises(ValueError, match=r"rank 5 exceeds min\(n, p\) = 4"):
        ProjUNN(torch.optim.SGD([{"params": [unitary_param(4)], "unitary": True}], lr=0.1), rank=5)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.slow
def test_drift_after_ten_thousand_steps_with_default_reorthonormalization(dtype, bound):
    g = torch.Generator().manual_seed(0)
    n = 32
    X, Y = torch.randn(n, 4 * n, dtype=dtype, generator=g), torch.randn(n, 4 * n, dtype=dtype, generator=g)
    W = unitary_param(n, dtype)
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-2), rank=1)
    worst = 0.0
    for step in range(1, 10_001):
        opt.zero_grad()
        ((W @ X - Y).pow(2).sum() / Y.pow(2).sum()).backward()
        opt.step()
        if step % 1000 == 0:
            worst = max(worst, unitarity(W))
    assert worst <= bound


@pytest.mark.parametrize("method", ["project", "transport"])
def test_single_precision_steps_do_not_walk_off_the_group(method):
    """1,000 complex64 Adam steps with no re-orthonormalization stay within 5e-6 of unitary (dense SVD in double).

    Adam's steps point the same way for many steps, so an error each step makes
    the same way adds up: projUNN-D with its r×r polar factor in single
    precision (``W Vᴴ − I``, off by ε absolutely) reached 9.6e-5 here; with the
    core in double it ends at 1.4e-6 (the Haar initialization: 5e-7).
    """
    g = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter(haar_(torch.empty(8, 16, 16, dtype=torch.complex64), generator=g))
    T = haar_(torch.empty(8, 16, 16, dtype=torch.complex64), generator=g)
    base = torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-3)
    opt = ProjUNN(base, rank=4, method=method, reorthonormalize_every=None, seed=0)
    first = None
    for _ in range(1000):
        opt.zero_grad()
        loss = -(T.conj() * W).real.sum() + 0.01 * W.abs().pow(4).sum()  # a coherent pull towards T
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    sigma = torch.linalg.svdvals(W.detach().to(torch.complex128))
    assert (sigma - 1).abs().max().item() <= 5e-6
    assert loss.item() < first - 20  # it moved far: the pull was followed


# -- rectangular weights and unitary_groups -----------------------------------------------------


def test_linear_with_orthonormal_rows_learns_a_stiefel_target():
    """nn.Linear(256, 64): a wide weight with orthonormal rows, stepped through its adjoint.

    The loss falls from 2 to 1e-5 in about 2,200 steps. The bar is 1e-5, not lower: near the
    optimum, Adam at a constant learning rate can bounce back up (one float32 trajectory reached
    1.2e-6 at step 2,500, then 2e-4), and which trajectory runs depends on rounding (measured:
    sketch seeds 0, 1, 2, and the order of the products in the step).
    """
    from unitary_lowrank.backends.torch import unitary_groups

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(256, 64, bias=False)
    haar_(model.weight.data, generator=g)
    W_star = haar_(torch.empty(64, 256), generator=g)
    X = torch.randn(512, 256, generator=g)
    Y = X @ W_star.T
    opt = ProjUNN(torch.optim.Adam(unitary_groups(model, [model.weight]), lr=0.01), rank=4)
    for _ in range(4000):
        opt.zero_grad()
        loss = (model(X) - Y).pow(2).sum() / Y.pow(2).sum()
        if loss.item() <= 1e-5:
            break
        loss.backward()
        opt.step()
    assert loss.item() <= 1e-5
    assert unitarity(model.weight) <= 1e-5


@pytest.mark.parametrize("method", ["transport", "project", "cayley", "dense"])
@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (2, 9, 4)])
def test_rectangular_parameters_descend_and_stay_orthonormal(method, shape):
    g = torch.Generator().manual_seed(1)
    W = torch.nn.Parameter(haar_(torch.empty(shape, dtype=torch.float64), generator=g))
    target = haar_(torch.empty(shape, dtype=torch.float64), generator=g)
    rank = "auto" if method == "dense" else 2  # dense takes no rank (the default is "auto")
    opt = ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1), rank=rank, **_rule(method))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (W - target).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    assert losses[-1] < 0.8 * losses[0]
    assert unitarity(W) <= (1e-12 if method == "dense" else 1e-13)  # matrix_exp is orthogonal to ~10 ε


def test_haar_fills_rectangular_tensors():
    for shape in [(9, 4), (4, 9), (3, 6, 2)]:
        W = haar_(torch.empty(shape, dtype=torch.complex128))
        assert unitarity(W) <= 1e-14


def test_unitary_groups_selects_by_parameter_name_or_predicate():
    from unitary_lowrank.backends.torch import unitary_groups

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    by_param = unitary_groups(model, [model[0].weight], rank=2)
    by_name = unitary_groups(model, ["0.weight"], rank=2)
    by_rule = unitary_groups(model, lambda name, p: name == "0.weight", rank=2)
    for groups in (by_param, by_name, by_rule):
        assert groups[1]["param_names"] == ["0.weight"] and groups[1]["unitary"] and groups[1]["rank"] == 2
        assert groups[0]["param_names"] == ["0.bias", "1.weight", "1.bias"]
    with pytest.raises(ValueError, match=r"no parameter named 'rnn\.weight'"):
        unitary_groups(model, ["rnn.weight"])
    with pytest.raises(ValueError, match="not a parameter of the model"):
        unitary_groups(model, [torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="no parameter selected"):
        unitary_groups(model, [])


def test_non_finite_parameter_is_named():
    W = torch.nn.Parameter(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match=r"parameter param_groups\[0\]\['params'\]\[0\] contains NaN"):
        ProjUNN(torch.optim.SGD([{"params": [W], "unitary": True}], lr=0.1))


def test_no_unitary_group_warns():
    W = torch.nn.Parameter(torch.eye(3))
    with pytest.warns(UserWarning, match="no param group is marked unitary=True"):
        ProjUNN(torch.optim.Adam([W]))


def test_repr_shows_each_unitary_groups_effective_settings():
    """A group's own rank is what the repr shows, not the wrapper's default."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    for layer in model:
        haar_(layer.weight.data)
    groups = [
        {"params": [model[0].bias, model[1].bias]},
        {"params": [model[0].weight], "unitary": True, "rank": 4},
        {"params": [model[1].weight], "unitary": True, "method": "project"},
    ]
    text = repr(ProjUNN(torch.optim.Adam(groups, lr=1e-3), rank=2))
    assert "param_groups[1], unitary, 1 parameter: rank=4, method='transport'" in text
    assert "param_groups[2], unitary, 1 parameter: rank=2, method='project'" in text
    assert "base: Adam" in text


@pytest.mark.parametrize("method", ["transport", "project", "cayley", "dense"])
def test_non_finite_update_is_skipped_and_reported(method):
    """A NaN gradient leaves the weight exactly as it was, and the check names the parameter."""
    W = torch.nn.Parameter(haar_(torch.empty(8, 8, dtype=torch.float64)))
    V = torch.nn.Parameter(haar_(torch.empty(4, 6, dtype=torch.complex128)))  # wide: stepped through its adjoint
    groups = [{"params": [W, V], "unitary": True, "param_names": ["w", "v"]}]
    opt = ProjUNN(
        torch.optim.SGD(groups, lr=0.1), **_rule(method), rank="auto" if method == "dense" else 2, check_every=2
    )
    W0, V0 = W.detach().clone(), V.detach().clone()
    W.grad = torch.full_like(W, float("nan"))
    V.grad = torch.randn_like(V)
    V.grad[0, 0] = float("inf")
    opt.step()  # step 1: no check yet; both updates skipped, nothing read back
    assert torch.equal(W.detach(), W0) and torch.equal(V.detach(), V0)
    W.grad, V.grad = torch.randn_like(W), torch.randn_like(V)
    with pytest.raises(FloatingPointError, match=r"skipped for 'w' .* \(1 step\), 'v' .* \(1 step\)"):
        opt.step()  # step 2: applied, then the periodic check raises
    assert not torch.equal(W.detach(), W0)
    assert float(ul.unitarity_error(W.detach())) < 1e-13 and float(ul.unitarity_error(V.detach().mH)) < 1e-13
    opt.status()  # the counters were reset by the report


def test_status_reports_only_when_asked_with_check_every_none():
    W = torch.nn.Parameter(haar_(torch.empty(6, 6)))
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-2), check_every=None)
    for _ in range(3):
        W.grad = torch.full_like(W, float("nan"))
        opt.step()
    with pytest.raises(FloatingPointError, match=r"param_groups\[0\]\['params'\]\[0\] \(3 steps\)"):
        opt.status()
    with pytest.raises(ValueError, match="check_every"):
        ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}]), check_every=-1)


def test_fused_and_foreach_base_optimizers_give_the_same_steps():
    """ProjUNN takes Δ from whatever implementation the base optimizer uses (fused kernels included)."""
    weights = []
    for options in ({"fused": True}, {"foreach": True}, {"foreach": False}):
        generator = torch.Generator().manual_seed(0)
        W = torch.nn.Parameter(haar_(torch.empty(16, 16, dtype=torch.float64), generator=generator))
        opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-2, **options), rank=2)
        for _ in range(5):
            opt.zero_grad()
            (W.sum() ** 2 + W[0, 1]).backward()
            opt.step()
        weights.append(W.detach())
    for W in weights[1:]:
        assert float((W - weights[0]).abs().max()) <= 1e-12
    assert float(ul.unitarity_error(weights[0])) <= 1e-13


def test_a_call_under_inference_mode_does_not_poison_later_autograd_calls():
    """Constants kept between calls (the generic shift's hash matrix) are not made under inference_mode."""
    generator = torch.Generator().manual_seed(3)
    U = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64, generator=generator))[0]
    A = torch.randn(8, 1, dtype=torch.float64, generator=generator)
    B = torch.randn(8, 1, dtype=torch.float64, generator=generator)
    with torch.inference_mode():
        ul.transport(U, A, B)
    A.requires_grad_(True)
    ul.transport(U, A, B).sum().backward()
    assert A.grad is not None and bool(torch.isfinite(A.grad).all())
