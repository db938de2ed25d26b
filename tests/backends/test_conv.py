"""UnitaryConv2d: an orthogonal circular convolution stored as one unitary per frequency."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d  # noqa: E402

import unitary_lowrank as ul  # noqa: E402

SHAPES = [(8, 6), (7, 5), (6, 7), (1, 4), (2, 2)]
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def full_spectrum(layer: UnitaryConv2d) -> torch.Tensor:
    """M for every fft2 frequency (H, W, c, c): the rfft2 half, and its mirror conj(M[−f]) for the rest."""
    H, W = layer.size
    half = layer.frequencies().detach()
    full = torch.zeros(H, W, *half.shape[-2:], dtype=half.dtype)
    full[:, : W // 2 + 1] = half
    for w in range(W // 2 + 1, W):
        full[:, w] = half[(-torch.arange(H)) % H, W - w].conj()
    return full


def train(layer: UnitaryConv2d, make_optimizer, steps: int = 50, seed: int = 0):
    """ProjUNN steps fitting the layer's output to a random target."""
    g = torch.Generator().manual_seed(seed)
    H, W = layer.size
    x = torch.randn(4, layer.channels, H, W, dtype=layer.dtype, generator=g)
    target = torch.randn(4, layer.channels, H, W, dtype=layer.dtype, generator=g)
    opt = ProjUNN(make_optimizer([{"params": layer.unitary_parameters(), "unitary": True}]), rank=1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (layer(x) - target).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses


OPTIMIZERS = {
    "adam": lambda groups: torch.optim.Adam(groups, lr=0.05),
    "rmsprop": lambda groups: torch.optim.RMSprop(groups, lr=0.01),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels", [1, 3, 8])
@pytest.mark.parametrize("trained", [None, "adam", "rmsprop"])
def test_norm_preserving_and_exactly_invertible(dtype, shape, channels, trained):
    layer = UnitaryConv2d(channels, shape, dtype=dtype, init="haar", generator=torch.Generator().manual_seed(1))
    if trained:
        losses = train(layer, OPTIMIZERS[trained])
        # c = 1 on an all-self-conjugate grid leaves only ±1 entries, which no continuous step can change
        assert losses[-1] < losses[0] if channels > 1 else losses[-1] <= losses[0] * (1 + 1e-6)
        for p in layer.unitary_parameters():
            assert float(ul.unitarity_error(p.detach()).max()) <= 50 * torch.finfo(dtype).eps * channels
    x = torch.randn(5, channels, *shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = layer(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert abs(float(y.norm() / x.norm()) - 1) <= TOLERANCE[dtype]
        assert relative(layer.inverse(y), x) <= TOLERANCE[dtype]
        # the layer is a real operator: the full inverse FFT of the tied spectrum has no imaginary part
        X = torch.fft.fft2(x.to(torch.float64), norm="ortho")
        full = full_spectrum(layer).to(torch.complex128)
        complex_y = torch.fft.ifft2(torch.einsum("hwoi,bihw->bohw", full, X), norm="ortho")
        assert float(complex_y.imag.norm() / complex_y.real.norm()) <= TOLERANCE[dtype]
        assert relative(complex_y.real.to(dtype), y) <= 10 * TOLERANCE[dtype]


@pytest.mark.parametrize("shape", SHAPES)
def test_equals_a_direct_circular_convolution_with_its_kernel(shape):
    H, W = shape
    layer = UnitaryConv2d(3, shape, init="haar", generator=torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(4))
    K = layer.kernel().detach()
    assert K.shape == (3, 3, H, W) and not K.is_complex()
    direct = torch.zeros_like(x)
    for qh in range(H):
        for qw in range(W):  # y[o, p] = Σ_{i,q} K[o, i, q] x[i, p − q], indices modulo (H, W)
            direct += torch.einsum("oi,bihw->bohw", K[:, :, qh, qw], torch.roll(x, shifts=(qh, qw), dims=(2, 3)))
    with torch.no_grad():
        assert relative(layer(x), direct) <= 1e-5


def test_identity_init_is_the_identity():
    layer = UnitaryConv2d(4, (6, 5))
    x = torch.randn(3, 4, 6, 5)
    with torch.no_grad():
        assert relative(layer(x), x) <= 1e-6


@pytest.mark.parametrize("method", ["transport", "project"])
def test_batched_step_equals_a_loop_of_per_frequency_core_calls(method):
    """One batched call over the frequency axes = the core applied to each frequency's matrix."""
    g = torch.Generator().manual_seed(5)
    layer = UnitaryConv2d(4, (6, 6), dtype=torch.float64, init="haar", generator=g)
    for U in layer.unitary_parameters():
        U = U.detach()
        A = torch.randn(*U.shape[:-1], 2, dtype=U.dtype, generator=g)
        B = torch.randn(*U.shape[:-1], 2, dtype=U.dtype, generator=g)
        step = getattr(ul, method)
        batched = step(U, A, B)
        flat = [
            step(u, a, b) for u, a, b in zip(U.reshape(-1, 4, 4), A.reshape(-1, 4, 2), B.reshape(-1, 4, 2), strict=True)
        ]
        looped = torch.stack(flat).reshape(U.shape)
        assert float((batched - looped).abs().max()) <= 1e-12


def test_parameters_keep_the_tying_by_construction():
    """Every step moves only independent frequencies; the self-conjugate ones are real orthogonal."""
    layer = UnitaryConv2d(3, (6, 6), init="haar", generator=torch.Generator().manual_seed(6))
    assert layer.real.dtype == torch.float32 and layer.interior.dtype == torch.complex64
    H, W = layer.size
    assert layer.interior.shape[:2] == (H, W // 2 - 1)  # columns 1, 2 of 0..3
    assert layer.paired.shape[:2] == (2, 2) and layer.real.shape[:2] == (2, 2)  # rows 1, 2; rows 0, 3
    train(layer, OPTIMIZERS["adam"], steps=5)
    M = layer.frequencies().detach()
    for w in (0, W // 2):
        for h in range(H):
            torch.testing.assert_close(M[(-h) % H, w], M[h, w].conj())


def test_bad_input_names_the_expected_shape():
    layer = UnitaryConv2d(3, (8, 6))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3, 8, 6\); got \(2, 4, 8, 6\)"):
        layer(torch.zeros(2, 4, 8, 6))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3, 8, 6\); got \(2, 3, 6, 8\)"):
        layer.inverse(torch.zeros(2, 3, 6, 8))
    with pytest.raises(TypeError, match="real images"):
        layer(torch.zeros(2, 3, 8, 6, dtype=torch.complex64))
    with pytest.raises(ValueError, match="channels must be a positive int"):
        UnitaryConv2d(0, 4)
    with pytest.raises(TypeError, match=r"float32 or torch\.float64"):
        UnitaryConv2d(2, 4, dtype=torch.float16)
