"""``ResNet9``: the paper's CIFAR-10 network, with orthogonal (projUNN, Cayley) or plain convolutions.

The layout of the projUNN paper's experiment (Kiani et al. 2022, §5; the
DAWNBench ResNet9 of D. Page with its 3×3 convolutions after the stem
replaced by full-image orthogonal ones): a plain 3×3 stem to ``width``
channels, then convolution + BatchNorm + ReLU blocks at widths 2w, 2w, 2w
(residual), 4w, 4w, 4w, 4w (residual), max-pooling to 16, 8, 4 and 2 pixels,
and a linear classifier on the 16w features (w = 64: 1024 features, as
published). BatchNorm, ReLU and the residual sums make the network neither
1-Lipschitz nor certifiable; the orthogonal convolutions only constrain
each convolution's spectrum.
"""

from __future__ import annotations

import torch
from torch import nn

from ...backends.torch.conv import UnitaryConv2d
from .baselines import CayleyConv2d

__all__ = ["RESNET9_CONVOLUTIONS", "ResNet9"]

#: The convolutions a ResNet9 can be built from.
RESNET9_CONVOLUTIONS = ("projunn", "cayley", "plain")


class ResNet9(nn.Module):
    """ResNet9 for 32×32 images whose convolutions after the stem are orthogonal (or plain).

    Parameters
    ----------
    in_channels, num_classes : int, default 3, 10
    width : int, default 64
        Channels after the stem (the paper's 64); the blocks use 2 × and 4 × this.
    conv : {"projunn", "cayley", "plain"}, default "projunn"
        ``projunn``: :class:`UnitaryConv2d` (a matrix per frequency over the whole image,
        Haar-random at init, an isometry from w to 2w channels, stepped by ``ProjUNN``);
        ``cayley``: :class:`CayleyConv2d` (3×3 real kernel, Cayley transform per frequency);
        ``plain``: ``nn.Conv2d`` 3×3, zero padding (the unconstrained baseline).
    generator : torch.Generator, optional
        Seeds the orthogonal layers' initialization.

    Notes
    -----
    Where ours differs from the authors' code: there the 64 → 128 convolution
    repeats its input twice along the channels and applies a 128×128 unitary
    per frequency (norm × √2); here it is a 128×64 isometry per frequency.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import ResNet9
    >>> model = ResNet9(width=4, generator=torch.Generator().manual_seed(0))
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
        *,
        conv: str = "projunn",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if conv not in RESNET9_CONVOLUTIONS:
            raise ValueError(f"ResNet9: conv must be one of {RESNET9_CONVOLUTIONS}; got {conv!r}")
        if width < 1:
            raise ValueError(f"ResNet9: width must be positive; got {width}")

        def block(c_in: int, c_out: int, size: int, pool: bool = False) -> nn.Sequential:
            if conv == "projunn":
                layer: nn.Module = UnitaryConv2d(c_in, c_out, size, init="haar", generator=generator)
            elif conv == "cayley":
                layer = CayleyConv2d(c_in, c_out, size, generator=generator)
            else:
                layer = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            parts = [layer, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            return nn.Sequential(*parts, *([nn.MaxPool2d(2)] if pool else []))

        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layer1 = block(w, 2 * w, 32, pool=True)
        self.residual1 = nn.Sequential(block(2 * w, 2 * w, 16), block(2 * w, 2 * w, 16))
        self.layer2 = block(2 * w, 4 * w, 16, pool=True)
        self.layer3 = block(4 * w, 4 * w, 8, pool=True)
        self.residual2 = nn.Sequential(block(4 * w, 4 * w, 4), block(4 * w, 4 * w, 4))
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * w, num_classes))
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (32, 32):
            raise ValueError(f"ResNet9: expects 32×32 images; got {tuple(x.shape)}")
        x = self.layer1(self.stem(x))
        x = x + self.residual1(x)
        x = self.layer3(self.layer2(x))
        x = x + self.residual2(x)
        return self.head(x)

    def unitary_parameters(self) -> list[nn.Parameter]:
        """The frequency matrices of every :class:`UnitaryConv2d` (empty unless ``conv="projunn"``)."""
        return [p for m in self.modules() if isinstance(m, UnitaryConv2d) for p in m.unitary_parameters()]

    def other_parameters(self) -> list[nn.Parameter]:
        """Every parameter not in :meth:`unitary_parameters`."""
        unitary = {id(p) for p in self.unitary_parameters()}
        return [p for p in self.parameters() if id(p) not in unitary]
