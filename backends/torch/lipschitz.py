"""1-Lipschitz building blocks and certificates: norm-preserving reshapes, MaxMin, the margin loss, certified accuracy.

A network built only from layers of Lipschitz constant ≤ 1 in ℓ2 is itself
1-Lipschitz, so a margin between the top two logits certifies its prediction:
if ``f(x)_y − max_{j≠y} f(x)_j > √2 ε L`` (``L`` the network's Lipschitz
constant), no perturbation of norm ≤ ε changes the class (Tsuzuku, Sato,
Sugiyama 2018: the difference of two logits is √2 L-Lipschitz).

    MaxMin, InvertibleDownsampling, FirstChannels, ZeroChannelPad   layers of norm 1
    lipschitz_bound(model, input_shape)                             L as a product of layer norms, and an estimate
    certified_accuracy(model, inputs, labels, eps)                  correct and margin > √2 ε L
    lipschitz_margin_loss(logits, labels, margin, temperature)      the training loss of Prach et al.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "FirstChannels",
    "InvertibleDownsampling",
    "LipschitzBound",
    "MaxMin",
    "ZeroChannelPad",
    "certified_accuracy",
    "layer_lipschitz",
    "lipschitz_bound",
    "lipschitz_margin_loss",
]


class MaxMin(nn.Module):
    """Sort each pair of channels ``(x_2i, x_2i+1)`` into ``(max, min)`` (GroupSort of size 2).

    A permutation of the entries that depends on the input: norm-preserving and
    1-Lipschitz, with a gradient of norm 1 everywhere (Anil, Lucas, Grosse 2019).
    The first half of the output channels holds the maxima, the second the minima.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"MaxMin: the channel count must be even; got input of shape {tuple(x.shape)}")
        a, b = x[:, 0::2], x[:, 1::2]
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)


class InvertibleDownsampling(nn.PixelUnshuffle):
    """Each 2×2 (``factor``×``factor``) block of pixels to channels: (c, H, W) → (c f², H/f, W/f).

    A permutation of the entries: norm-preserving, exactly invertible
    (:meth:`inverse`, ``nn.PixelShuffle``). How a 1-Lipschitz network halves its
    resolution without a strided (contracting) convolution.
    """

    def __init__(self, factor: int = 2) -> None:
        super().__init__(factor)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(y, self.downscale_factor)


class FirstChannels(nn.Module):
    """Keep the first ``channels`` channels: an orthogonal projection, 1-Lipschitz."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.channels:
            raise ValueError(f"FirstChannels({self.channels}): input has only {x.shape[1]} channels")
        return x[:, : self.channels]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class ZeroChannelPad(nn.Module):
    """Append zero channels up to ``channels``: an isometry (``FirstChannels`` undoes it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.channels:
            raise ValueError(f"ZeroChannelPad({self.channels}): input already has {x.shape[1]} channels")
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.channels - x.shape[1]))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


#: Layers whose Lipschitz constant is 1 whatever their input: permutations, projections, isometries.
_NORM_ONE = (MaxMin, InvertibleDownsampling, FirstChannels, ZeroChannelPad, nn.Flatten, nn.Identity, nn.ReLU)


def image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair, both positive."""
    H, W = (size, size) if isinstance(size, int) else tuple(size)
    if H < 1 or W < 1:
        raise ValueError(f"size must be positive; got {size!r}")
    return H, W


def circular_spectrum(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The per-frequency matrices (H, W//2 + 1, c_out, c_in) of the circular convolution with ``kernel`` on H×W.

    Taps beyond the image wrap around (a k×k kernel on a smaller torus adds
    the taps that land on the same pixel), as circular padding does.
    """
    H, W = size
    k_h, k_w = kernel.shape[-2:]
    rows = torch.arange(k_h, device=kernel.device) % H
    cols = torch.arange(k_w, device=kernel.device) % W
    wrapped = kernel.new_zeros(*kernel.shape[:2], H, k_w).index_add(2, rows, kernel)
    wrapped = kernel.new_zeros(*kernel.shape[:2], H, W).index_add(3, cols, wrapped)
    return torch.fft.rfft2(wrapped).permute(2, 3, 0, 1)


def largest_norm(M: torch.Tensor) -> float:
    """The largest spectral norm ‖·‖₂ over a batch of matrices, in complex128."""
    return float(torch.linalg.matrix_norm(M.detach().to(torch.complex128), ord=2).max())


def _circular_conv_norm(weight: torch.Tensor, size: tuple[int, int]) -> float:
    """‖·‖₂ of the circular convolution with ``weight`` (c_out, c_in, k, k) on H×W images: max over frequencies."""
    return largest_norm(circular_spectrum(weight.detach().to(torch.float64), size))


def layer_lipschitz(module: nn.Module, input_shape: Sequence[int]) -> float:
    """The ℓ2 Lipschitz constant (operator norm) of one layer, exact (to rounding), for an input of ``input_shape``.

    Known layers: any layer that states its exact norm in a ``lipschitz()``
    method (``UnitaryConv2d``, and the baselines ``CayleyConv2d``, ``AOLConv2d``
    and ``TorchlipConv2d``; such a layer counts as one, whatever it holds),
    circularly padded stride-1 ``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``
    in eval mode (a diagonal scaling), and the norm-1 reshapes and activations
    of this module. Raises ``TypeError`` for any other layer (no guess is made).
    """
    if isinstance(module, _NORM_ONE):
        return 1.0
    bound = getattr(module, "lipschitz", None)
    if callable(bound):
        return float(bound())
    if isinstance(module, nn.Linear):
        return float(torch.linalg.matrix_norm(module.weight.detach().to(torch.float64), ord=2))
    if isinstance(module, nn.Conv2d):
        same = tuple(module.padding) == tuple(k // 2 for k in module.kernel_size) and all(
            k % 2 for k in module.kernel_size
        )
        circular = same and (module.padding_mode == "circular" or max(module.kernel_size) == 1)
        if module.stride != (1, 1) or module.dilation != (1, 1) or module.groups != 1 or not circular:
            raise TypeError(
                f"layer_lipschitz: {module} — only stride-1, undilated, ungrouped convolutions with an odd kernel "
                "and circular 'same' padding have an exact norm here"
            )
        height, width = input_shape[-2:]
        return _circular_conv_norm(module.weight, (height, width))
    if isinstance(module, nn.BatchNorm2d):
        if module.training:
            raise TypeError("layer_lipschitz: BatchNorm2d in training mode depends on the batch; call model.eval()")
        variance = module.running_var
        assert variance is not None  # an eval-mode BatchNorm2d tracks its running statistics
        scale = torch.rsqrt(variance.detach().to(torch.float64) + module.eps)
        if module.affine:
            scale = scale * module.weight.detach().to(torch.float64)
        return float(scale.abs().max())
    raise TypeError(
        f"layer_lipschitz: no exact Lipschitz constant is known for {type(module).__name__}; build the network from "
        "UnitaryConv2d, CayleyConv2d, AOLConv2d, circular nn.Conv2d, nn.Linear, BatchNorm2d (eval), MaxMin, "
        "InvertibleDownsampling, FirstChannels, ZeroChannelPad, nn.Flatten"
    )


@dataclass(frozen=True)
class LipschitzBound:
    """``product``: Π of the layers' norms, a certified upper bound; ``estimate``: the largest ‖J(x)‖₂ found."""

    product: float
    estimate: float
    layers: tuple[float, ...]


def _input_like(model: nn.Module) -> dict:
    """dtype and device for inputs of ``model``: double precision if its parameters are, else single."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return {"dtype": torch.float32, "device": "cpu"}
    double = parameter.dtype in (torch.float64, torch.complex128)
    return {"dtype": torch.float64 if double else torch.float32, "device": parameter.device}


def _leaves_in_order(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """The leaf modules of a composition of ``nn.Sequential`` containers, in order, with the shape each receives."""

    units: list[nn.Module] = []  # the layers whose norms multiply: leaves, or modules that state their own norm

    def check(module: nn.Module, where: str) -> None:
        children = list(module.named_children())
        if not children or callable(getattr(module, "lipschitz", None)):  # a wrapper (TorchlipConv2d) is one layer
            units.append(module)
            return
        if not isinstance(module, nn.Sequential):
            raise TypeError(
                f"lipschitz_bound: {where} is a {type(module).__name__}, not an nn.Sequential: the product of layer "
                "norms bounds a plain composition only (a residual or branching forward needs its own bound)"
            )
        for name, child in children:
            check(child, f"{where}.{name}")

    check(model, "the model")
    order: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args: order.append((m, tuple(args[0].shape)))) for module in units
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, **_input_like(model)))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _layer_norms(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, ...]:
    """Each leaf layer's exact norm, in the order the input meets them (model in eval mode)."""
    return tuple(layer_lipschitz(module, shape[1:]) for module, shape in _leaves_in_order(model, input_shape))


def lipschitz_bound(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    points: int = 8,
    iterations: int = 30,
    generator: torch.Generator | None = None,
) -> LipschitzBound:
    """The network's ℓ2 Lipschitz constant: the product of its layers' norms, and a power-iteration estimate.

    Parameters
    ----------
    model : nn.Module
        A composition of ``nn.Sequential`` containers whose leaves
        :func:`layer_lipschitz` knows. Put it in eval mode (BatchNorm).
    input_shape : sequence of int
        The shape of one input, e.g. (3, 32, 32).
    points, iterations : int
        The estimate: ``iterations`` steps of power iteration on ``Jᵀ J`` (the
        Jacobian, by forward- and reverse-mode products) at ``points`` random
        Gaussian inputs.

    Returns
    -------
    LipschitzBound
        ``product`` (an upper bound on the Lipschitz constant: the number a
        certificate uses), ``estimate`` (a lower bound: max over the points of
        ‖J(x)‖₂) and each layer's norm, in order.

    Notes
    -----
    For a network of :class:`UnitaryConv2d`, MaxMin, the reshapes of this
    module and a head with orthonormal rows, every layer's norm is 1 to
    rounding, so ``product`` is 1 to rounding (computed per layer in double
    precision) and ``estimate`` ≤ ``product``.
    """
    was_training = model.training
    model.eval()
    try:
        norms = _layer_norms(model, input_shape)
        estimate = _power_iteration(model, input_shape, points, iterations, generator)
    finally:
        model.train(was_training)
    return LipschitzBound(product=math.prod(norms), estimate=estimate, layers=norms)


def _power_iteration(
    model: nn.Module, input_shape: Sequence[int], points: int, iterations: int, generator: torch.Generator | None
) -> float:
    """max over ``points`` random inputs of ‖J(x)‖₂, by power iteration on ``Jᵀ J`` with reverse-mode products only.

    ``J v`` is the derivative in ``u`` of ``⟨Jᵀ u, v⟩`` (a second reverse pass):
    forward-mode derivatives of some layers (batched complex solves) are not
    reliable on every LAPACK build.
    """
    like = _input_like(model)
    x = torch.randn(points, *input_shape, generator=generator, dtype=like["dtype"]).to(like["device"])
    v = torch.randn(points, *input_shape, generator=generator, dtype=like["dtype"]).to(like["device"])
    dims = tuple(range(1, v.ndim))
    v = v / torch.linalg.vector_norm(v, dim=dims, keepdim=True)
    x.requires_grad_(True)
    with torch.enable_grad():
        out = model(x)  # per-sample Jacobians: the model acts on each sample alone (eval mode), J is block diagonal
        u = torch.zeros_like(out, requires_grad=True)
        (pullback,) = torch.autograd.grad(out, x, u, create_graph=True)  # Jᵀ u, linear in u
        sigma = torch.zeros(points, **like)
        for _ in range(iterations):
            (Jv,) = torch.autograd.grad(pullback, u, v, retain_graph=True)
            (JtJv,) = torch.autograd.grad(out, x, Jv, retain_graph=True)
            sigma = torch.linalg.vector_norm(Jv.flatten(1), dim=1)
            norm = torch.linalg.vector_norm(JtJv, dim=dims, keepdim=True)
            v = JtJv / torch.where(norm > 0, norm, torch.ones_like(norm))
    return float(sigma.detach().max())


def certified_accuracy(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    eps: float | Iterable[float],
    *,
    lipschitz: float | None = None,
    batch_size: int = 500,
) -> dict[float, float]:
    """The fraction of ``inputs`` classified correctly with a margin above √2 ε L, for each ε.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode, without gradients.
    inputs, labels : tensors
        A batch (N, ...) and its classes (N,).
    eps : float or iterable of float
        Radii ε (ℓ2). ε = 0 gives the clean accuracy.
    lipschitz : float, optional
        L; by default ``lipschitz_bound(model, inputs.shape[1:]).product`` (the
        product of layer norms, never an estimate).

    Returns
    -------
    dict
        ``{ε: fraction}``: correct and ``f_y − max_{j≠y} f_j > √2 ε L``.
    """
    radii = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    was_training = model.training
    model.eval()
    try:
        if lipschitz is None:
            lipschitz = math.prod(_layer_norms(model, tuple(inputs.shape[1:])))  # the product: no estimate needed
        margins, correct = [], []
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                logits = model(inputs[start : start + batch_size]).double()
                y = labels[start : start + batch_size].to(logits.device)
                true = logits.gather(1, y[:, None])[:, 0]
                others = logits.scatter(1, y[:, None], -math.inf).max(dim=1).values
                margins.append(true - others)
                correct.append(logits.argmax(dim=1) == y)
        margin, right = torch.cat(margins), torch.cat(correct)
    finally:
        model.train(was_training)
    return {e: float((right & (margin > math.sqrt(2) * e * lipschitz)).double().mean()) for e in radii}


def lipschitz_margin_loss(
    logits: torch.Tensor, labels: torch.Tensor, margin: float, temperature: float = 1.0
) -> torch.Tensor:
    """Cross-entropy with the true class's logit lowered by ``margin``, at ``temperature`` τ (Prach & Lampert 2022).

    ``τ · CE((f(x) − margin · onehot(y)) / τ, y)``, averaged over the batch.
    Asking for a margin of u over the other logits before the loss flattens
    trains a 1-Lipschitz network toward certified margins; for a target radius
    ε, Prach et al. (2024) use u = 2√2 ε. Usable with any model.

    References
    ----------
    B. Prach, C. H. Lampert, "Almost-orthogonal layers for efficient general-purpose
    Lipschitz networks", ECCV 2022.
    B. Prach, F. Brau, G. Buttazzo, C. H. Lampert, "1-Lipschitz layers compared:
    memory, speed, and certifiable robustness", CVPR 2024.
    """
    if temperature <= 0:
        raise ValueError(f"lipschitz_margin_loss: temperature must be positive; got {temperature}")
    shifted = logits - margin * nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return temperature * nn.functional.cross_entropy(shifted / temperature, labels)
