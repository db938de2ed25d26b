"""Recurrent layers: the hand-written backward equals autograd's, the initializations, the task conventions."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from unitary_lowrank.backends.torch import ModReLU, OrthogonalRNN, UnitaryRNN  # noqa: E402
from unitary_lowrank.backends.torch.layers import _RealRecurrence, _recur  # noqa: E402


def _activation(kind: str, n: int) -> torch.nn.Module:
    if kind == "modrelu":
        return ModReLU(n, torch.float64, torch.Generator().manual_seed(3))
    return torch.nn.ReLU() if kind == "relu" else torch.nn.Tanh()


@pytest.mark.parametrize("kind", ["relu", "tanh", "modrelu"])
@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("T", [1, 2, 9])
def test_hand_backward_equals_autograd_loop(kind, readout, T):
    g = torch.Generator().manual_seed(T)
    n, batch = 6, 4
    drive = torch.randn(T, batch, n, dtype=torch.float64, generator=g)
    W = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))[0]
    act = _activation(kind, n)
    upstream = torch.randn((batch, n) if readout == "last" else (T, batch, n), dtype=torch.float64, generator=g)
    results = []
    for fast in (True, False):
        d, w = drive.clone().requires_grad_(), W.clone().requires_grad_()
        if kind == "modrelu":
            act.bias.grad = None
        if fast:
            out = _RealRecurrence.apply(d, w, act.bias if kind == "modrelu" else None, kind, readout == "last")
        else:
            out = _recur(d, w, act, readout)
        (out * upstream).sum().backward()
        results.append((out.detach(), d.grad, w.grad, act.bias.grad.clone() if kind == "modrelu" else None))
    for fast, slow in zip(*results, strict=True):
        if fast is None:
            assert slow is None
        else:
            torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["relu", "tanh", "modrelu"])
def test_hand_backward_gradcheck(kind):
    g = torch.Generator().manual_seed(7)
    drive = torch.randn(5, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=g))[0].requires_grad_()
    bias = (torch.rand(4, dtype=torch.float64, generator=g) - 0.5).requires_grad_()
    if kind == "modrelu":
        assert torch.autograd.gradcheck(lambda d, w, b: _RealRecurrence.apply(d, w, b, kind, False), (drive, W, bias))
    else:
        assert torch.autograd.gradcheck(lambda d, w: _RealRecurrence.apply(d, w, None, kind, True), (drive, W))


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "modrelu"])
def test_model_fast_path_equals_autograd_loop(nonlinearity):
    x = torch.randn(12, 5, 3, generator=torch.Generator().manual_seed(0))
    grads = []
    for backward in ("manual", "autograd"):
        model = OrthogonalRNN(
            3, 8, 2, nonlinearity=nonlinearity, init="haar", backward=backward,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        torch.manual_seed(2)
        model.input.reset_parameters(), model.output.reset_parameters()
        model(x).square().sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for fast, slow in zip(*grads, strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backward", ["autograd", "manual"])
def test_empty_sequence_is_refused(backward):
    model = OrthogonalRNN(2, 4, 1, backward=backward)
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(0, 3, 2))


def test_defaults_follow_the_authors_scripts():
    g = torch.Generator().manual_seed(0)
    model = OrthogonalRNN(10, 64, 9, nonlinearity="modrelu", output_init="kaiming", generator=g)
    assert model.input.bias is None  # no constant drive into an orthogonal recurrence
    bound = math.sqrt(6 / (10 + 64))  # xavier-uniform
    assert model.input.weight.abs().max() <= bound and model.input.weight.abs().max() > 0.8 * bound
    bias = model.activation.bias.detach()
    assert bias.abs().max() < 0.01 and bias.std() > 0.002  # uniform(−0.01, 0.01), not a constant
    assert torch.all(model.output.bias == 0)
    assert 0.5 < model.output.weight.std() * math.sqrt(64 / 2) < 1.5  # kaiming-normal: std √(2 / fan_in)
    xavier = OrthogonalRNN(2, 64, 1, output_init="xavier", input_bias=True)
    assert torch.all(xavier.input.bias == 0) and torch.all(xavier.output.bias == 0)
    assert xavier.output.weight.abs().max() <= 0.5 * math.sqrt(6 / 65)
    with pytest.raises(ValueError, match="output_init"):
        OrthogonalRNN(2, 4, 1, output_init="zeros")
    assert UnitaryRNN(2, 4, 1).input.bias is None


def test_copy_task_marker_at_T_plus_10_and_recall_from_the_marker_step():
    from unitary_lowrank.tasks.copying import copy_batch

    T = 15
    inputs, targets = copy_batch(T, 3, torch.Generator().manual_seed(0))
    assert inputs.shape == (T + 20, 3, 10)
    marker = inputs.argmax(-1)
    assert torch.all(marker[T + 10] == 9) and torch.all(marker[T + 11 :] == 0) and torch.all(marker[10 : T + 10] == 0)
    assert torch.all(targets[: T + 10] == 0) and torch.equal(targets[T + 10 :], marker[:10])


def test_adding_task_marker_halves():
    from unitary_lowrank.tasks.adding import adding_batch

    T, half = 200, 99  # ⌊(T − 1)/2⌋
    inputs, targets = adding_batch(T, 2000, torch.Generator().manual_seed(0))
    first = inputs[..., 1][:half].argmax(0)
    second = inputs[..., 1][half:].argmax(0) + half
    assert torch.all(inputs[..., 1].sum(0) == 2)
    assert first.max() == half - 1 and second.min() == half and second.max() == T - 1
    columns = torch.arange(2000)
    torch.testing.assert_close(targets[:, 0], inputs[first, columns, 0] + inputs[second, columns, 0])
    with pytest.raises(ValueError, match="T >= 3"):
        adding_batch(2, 1, torch.Generator())


def test_backward_choice():
    assert OrthogonalRNN(2, 4, 1, nonlinearity="modrelu").backward == "manual"
    assert OrthogonalRNN(2, 4, 1, nonlinearity="relu").backward == "autograd"
    assert OrthogonalRNN(2, 4, 1, backward="manual").backward == "manual"
    with pytest.raises(ValueError, match="backward"):
        OrthogonalRNN(2, 4, 1, backward="fused")
