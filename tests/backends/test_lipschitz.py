"""Certifiably robust networks: semi-unitary convolutions, norm-1 layers, LipConvNet, certificates, the margin loss."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from unitary_lowrank.backends.torch import (  # noqa: E402
    AOLConv2d,
    CayleyConv2d,
    FirstChannels,
    InvertibleDownsampling,
    LipConvNet,
    MaxMin,
    ProjUNN,
    UnitaryConv2d,
    ZeroChannelPad,
    certified_accuracy,
    layer_lipschitz,
    lipschitz_bound,
    lipschitz_margin_loss,
)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def fit(model: nn.Module, x, target, unitary, steps: int = 50, others=()):
    """ProjUNN(Adam) steps pulling model(x) toward target; returns the losses."""
    groups = [{"params": list(unitary), "unitary": True}]
    if others:
        groups.append({"params": list(others)})
    opt = ProjUNN(torch.optim.Adam(groups, lr=0.02), rank=1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - target).pow(2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# -- 1. UnitaryConv2d from c_in to c_out channels --------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(8, 6), (7, 5)])
@pytest.mark.parametrize(("c_in", "c_out"), [(3, 5), (2, 8), (6, 4), (8, 3)])
@pytest.mark.parametrize("trained", [False, True])
def test_semi_unitary_convolution(dtype, shape, c_in, c_out, trained):
    """c_out ≥ c_in: ‖y‖ = ‖x‖ per sample, adjoint is a left inverse; c_out < c_in: ‖y‖ ≤ ‖x‖, forward∘adjoint = I."""
    g = torch.Generator().manual_seed(c_in * 10 + c_out)
    layer = UnitaryConv2d(c_in, c_out, shape, dtype=dtype, init="haar", generator=g)
    x = torch.randn(5, c_in, *shape, dtype=dtype, generator=g)
    if trained:
        target = torch.randn(5, c_out, *shape, dtype=dtype, generator=g)
        losses = fit(layer, x, target, layer.unitary_parameters())
        assert losses[-1] < losses[0]  # it learns
    y = layer(x)
    tol = TOLERANCE[dtype]
    if c_out >= c_in:
        assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=tol, atol=0)
        assert (layer.inverse(y) - x).norm() <= tol * x.norm()
    else:
        assert bool((y.flatten(1).norm(dim=1) <= x.flatten(1).norm(dim=1) * (1 + tol)).all())
        z = torch.randn(5, c_out, *shape, dtype=dtype, generator=g)
        assert (layer(layer.inverse(z)) - z).norm() <= tol * z.norm()
    assert abs(layer.lipschitz() - 1) <= 10 * tol


def test_semi_unitary_convolution_is_the_circular_convolution_with_its_kernel():
    layer = UnitaryConv2d(2, 3, (5, 4), dtype=torch.float64, init="haar", generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    K = layer.kernel()
    direct = torch.zeros(1, 3, 5, 4, dtype=torch.float64)
    for p in range(5):
        for q in range(4):
            for a in range(5):
                for b in range(4):
                    direct[0, :, p, q] += K[:, :, a, b] @ x[0, :, (p - a) % 5, (q - b) % 4]
    assert torch.allclose(layer(x), direct, atol=1e-12)


def test_old_two_argument_form_and_bad_channels():
    layer = UnitaryConv2d(4, (6, 5))
    assert (layer.in_channels, layer.out_channels, layer.size, layer.channels) == (4, 4, (6, 5), 4)
    assert UnitaryConv2d(3, 8).size == (8, 8)  # (channels, size), as before
    with pytest.raises(ValueError, match="in_channels or out_channels"):
        _ = UnitaryConv2d(3, 5, 8).channels
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        UnitaryConv2d(3, 0, 8)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 5, 8, 8\)"):
        UnitaryConv2d(3, 5, 8).inverse(torch.zeros(1, 3, 8, 8))


def test_support_fraction_is_one_for_a_pointwise_kernel_and_differentiable():
    layer = UnitaryConv2d(3, 4, 8)  # identity init: a 1×1 kernel
    assert abs(float(layer.support_fraction(1).detach()) - 1) < 1e-6
    haar = UnitaryConv2d(3, 4, 8, init="haar", generator=torch.Generator().manual_seed(0))
    fraction = haar.support_fraction(3)
    assert 0 < float(fraction.detach()) < 0.5  # a random full-size kernel spreads its energy over the whole image
    (1 - fraction).backward()
    assert all(p.grad is not None for p in haar.unitary_parameters())


# -- 2. norm-1 layers -------------------------------------------------------------------------------


def test_reshapes_and_maxmin_preserve_or_contract_norms():
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    down = InvertibleDownsampling(2)
    assert down(x).shape == (4, 24, 4, 4) and torch.equal(down.inverse(down(x)), x)
    assert torch.allclose(down(x).norm(), x.norm())
    assert torch.allclose(MaxMin()(x).norm(), x.norm())
    padded = ZeroChannelPad(9)(x)
    assert padded.shape[1] == 9 and torch.equal(FirstChannels(6)(padded), x)
    assert FirstChannels(2)(x).norm() <= x.norm()
    with pytest.raises(ValueError, match="even"):
        MaxMin()(torch.zeros(1, 3, 2, 2))


# -- 3. LipConvNet ----------------------------------------------------------------------------------


def _pairs_ratio(model, shape, generator, n=16):
    x = torch.randn(n, *shape, generator=generator)
    y = x + 0.3 * torch.randn(n, *shape, generator=generator)
    with torch.no_grad():
        return ((model(x) - model(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)).max().item()


@pytest.mark.parametrize(("image", "width", "depth"), [(8, 4, 3), (16, 6, 4), (32, 4, 5)])
def test_lipconvnet_is_1_lipschitz_at_init_and_after_training(image, width, depth):
    g = torch.Generator().manual_seed(image + width)
    model = LipConvNet(3, 10, image, width, depth, generator=g)
    assert model.sizes[-1] == 2 and sum(model.blocks) == depth
    assert _pairs_ratio(model, (3, image, image), g) <= 1 + 1e-5
    x = torch.randn(32, 3, image, image, generator=g)
    labels = torch.randint(0, 10, (32,), generator=g)
    groups = [{"params": model.unitary_parameters(), "unitary": True}, {"params": model.other_parameters()}]
    opt = ProjUNN(torch.optim.Adam(groups, lr=0.01), rank=1)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = lipschitz_margin_loss(model(x), labels, margin=0.1, temperature=0.25)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    bound = lipschitz_bound(model, (3, image, image), generator=g)
    assert bound.product <= 1 + 1e-4 and bound.estimate <= bound.product
    assert _pairs_ratio(model, (3, image, image), g) <= 1 + 1e-5


@pytest.mark.parametrize("conv", ["cayley", "aol", "torchlip"])
def test_baseline_networks_pass_the_same_lipschitz_tests(conv):
    if conv == "torchlip":
        pytest.importorskip("deel.torchlip")
    g = torch.Generator().manual_seed(1)
    model = LipConvNet(3, 10, 8, 4, 3, conv=conv, generator=g)
    x = torch.randn(16, 3, 8, 8, generator=g)
    labels = torch.randint(0, 10, (16,), generator=g)
    groups = [{"params": model.unitary_parameters(), "unitary": True}, {"params": model.other_parameters()}]
    opt = ProjUNN(torch.optim.Adam(groups, lr=0.01), rank=1)
    for _ in range(10):
        opt.zero_grad()
        lipschitz_margin_loss(model(x), labels, 0.1, 0.25).backward()
        opt.step()
    bound = lipschitz_bound(model, (3, 8, 8), generator=g)
    assert bound.product <= 1 + 1e-4 and bound.estimate <= bound.product * (1 + 1e-5)
    assert _pairs_ratio(model, (3, 8, 8), g) <= 1 + 1e-5


@pytest.mark.parametrize("layer_type", [CayleyConv2d, AOLConv2d, "TorchlipConv2d", UnitaryConv2d])
@pytest.mark.parametrize(("c_in", "c_out", "size"), [(3, 5, 6), (6, 4, 5), (4, 4, 2)])
def test_layer_norm_is_the_operator_norm_of_the_dense_matrix(layer_type, c_in, c_out, size):
    """layer_lipschitz against the largest singular value of the layer's dense matrix, built column by column."""
    g = torch.Generator().manual_seed(c_in + c_out + size)
    if layer_type == "TorchlipConv2d":
        pytest.importorskip("deel.torchlip")
        from unitary_lowrank.tasks.models.baselines import TorchlipConv2d

        layer = TorchlipConv2d(c_in, c_out, size, dtype=torch.float64, generator=g)
        layer.eval()
    elif layer_type is UnitaryConv2d:
        layer = UnitaryConv2d(c_in, c_out, size, dtype=torch.float64, init="haar", generator=g)
    else:
        layer = layer_type(c_in, c_out, size, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.add_(0.3 * torch.randn(layer.weight.shape, dtype=torch.float64, generator=g))
    n = c_in * size * size
    with torch.no_grad():
        dense = layer(torch.eye(n, dtype=torch.float64).reshape(n, c_in, size, size)).reshape(n, -1).T
    exact = torch.linalg.matrix_norm(dense, ord=2).item()
    assert abs(layer_lipschitz(layer, (c_in, size, size)) - exact) <= 1e-10
    assert exact <= 1 + 1e-10


def test_plain_conv_and_batchnorm_norms_are_exact():
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", bias=False, dtype=torch.float64)
    bn = nn.BatchNorm2d(3, dtype=torch.float64).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, dtype=torch.float64, generator=g))
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.weight.uniform_(-2, 2, generator=g)
    n = 2 * 5 * 5
    with torch.no_grad():
        dense = conv(torch.eye(n, dtype=torch.float64).reshape(n, 2, 5, 5)).reshape(n, -1).T
    assert abs(layer_lipschitz(conv, (2, 5, 5)) - torch.linalg.matrix_norm(dense, ord=2).item()) <= 1e-10
    expected = (bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)).max().item()
    assert abs(layer_lipschitz(bn, (3, 5, 5)) - expected) <= 1e-12
    with pytest.raises(TypeError, match="training mode"):
        layer_lipschitz(bn.train(), (3, 5, 5))
    with pytest.raises(TypeError, match="stride-1"):
        layer_lipschitz(nn.Conv2d(2, 3, 3, stride=2), (2, 5, 5))


def test_bound_refuses_unknown_layers_and_non_sequential_models():
    with pytest.raises(TypeError, match="no exact Lipschitz constant is known for GELU"):
        lipschitz_bound(nn.Sequential(nn.Flatten(), nn.GELU()), (4,))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.inner(x)

    with pytest.raises(TypeError, match=r"not an nn\.Sequential"):
        lipschitz_bound(nn.Sequential(Residual()), (4,))


# -- 4. certificates and the loss -------------------------------------------------------------------


def test_certified_accuracy_equals_a_direct_count():
    g = torch.Generator().manual_seed(5)
    model = LipConvNet(3, 10, 8, 4, 3, generator=g)
    x = torch.randn(200, 3, 8, 8, generator=g)
    labels = torch.randint(0, 10, (200,), generator=g)
    with torch.no_grad():  # make some predictions right, with margins of every size
        logits = model(x)
    labels[:120] = logits[:120].argmax(dim=1)
    radii = [0.0, 0.01, 0.05, 0.2]
    got = certified_accuracy(model, x, labels, radii, lipschitz=1.0, batch_size=64)
    top2 = logits.topk(2, dim=1).values
    for eps in radii:
        direct = sum(
            int(logits[i].argmax() == labels[i] and top2[i, 0] - top2[i, 1] > math.sqrt(2) * eps) for i in range(200)
        )
        assert got[eps] == pytest.approx(direct / 200, abs=1e-12)
    assert got[0.0] >= 0.6 and got[0.2] < got[0.0]
    default = certified_accuracy(model, x, labels, 0.05)  # L from the product of layer norms (1 to rounding)
    assert default[0.05] == pytest.approx(got[0.05], abs=1 / 200)


def test_margin_loss_equals_a_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    margin, tau = 0.4, 0.25
    expected = 0.0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        shifted = [(v - margin * (j == y)) / tau for j, v in enumerate(row)]
        expected += tau * (math.log(sum(math.exp(s) for s in shifted)) - shifted[y])
    assert lipschitz_margin_loss(logits, labels, margin, tau).item() == pytest.approx(expected / 2, rel=1e-14)
    with pytest.raises(ValueError, match="temperature"):
        lipschitz_margin_loss(logits, labels, margin, 0.0)
