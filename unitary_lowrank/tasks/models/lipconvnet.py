"""``LipConvNet``: a 1-Lipschitz convolutional classifier built from exact orthogonal convolutions.

The architecture of the 1-Lipschitz literature (Singla & Feizi 2021; Prach et al.
2024): blocks of convolution + MaxMin at spatial sizes 32, 16, 8, 4, 2, the
resolution halved between blocks by an invertible 2×2-to-channels reshape and
the channels then doubled by a convolution from 4c to 2c (orthonormal rows per
frequency: 1-Lipschitz), and a linear head with orthonormal rows. Every layer
has norm ≤ 1, so the network is 1-Lipschitz in ℓ2 by construction, for any
width and depth.
"""

from __future__ import annotations

import torch
from torch import nn

from ...backends.torch.conv import UnitaryConv2d
from ...backends.torch.init import haar_
from ...backends.torch.lipschitz import InvertibleDownsampling, MaxMin
from .baselines import AOLConv2d, CayleyConv2d, TorchlipConv2d

__all__ = ["CONVOLUTIONS", "LipConvNet"]

#: The convolutions a LipConvNet can be built from.
CONVOLUTIONS = ("projunn", "cayley", "aol", "torchlip", "plain")


class LipConvNet(nn.Sequential):
    """A 1-Lipschitz CNN: stem, blocks of convolution + MaxMin, invertible downsampling, orthonormal head.

    Parameters
    ----------
    in_channels : int, default 3
    num_classes : int, default 10
    image_size : int, default 32
        Side of the square input; the blocks run at ``image_size``, then half of
        it, down to 2 (or while the side stays even).
    width : int, default 16
        Channels of the first block (even); each later block doubles them.
    depth : int, default 5
        Convolutions c → c in the blocks, spread over them as evenly as possible
        (at least one per block). The stem and the convolutions between blocks
        come on top.
    conv : {"projunn", "cayley", "aol", "torchlip", "plain"}, default "projunn"
        ``UnitaryConv2d`` (exact, stepped by ProjUNN), the Cayley-FFT, AOL or
        deel-torchlip baselines (k×k kernels, any optimizer; torchlip needs the
        ``[torchlip]`` extra), or ``nn.Conv2d`` + ``BatchNorm2d`` (unconstrained,
        not 1-Lipschitz).
    kernel_size : int, default 3
        Kernel side of the baselines (``UnitaryConv2d``'s spans the image).
    init : {"haar", "identity"}, default "haar"
        Initial frequency matrices of ``UnitaryConv2d``.
    dtype : torch.float32 or torch.float64
    generator : torch.Generator, optional

    Notes
    -----
    Layers and their norms: ``UnitaryConv2d`` 1 (c_out ≥ c_in an isometry,
    c_out < c_in orthonormal rows), MaxMin and :class:`InvertibleDownsampling`
    1 (permutations), the head's orthonormal rows 1. So
    ``lipschitz_bound(model, (3, 32, 32)).product`` is 1 to rounding, and
    :func:`certified_accuracy` certifies with L = that product.
    :meth:`unitary_parameters` are the weights to keep unitary (all
    ``UnitaryConv2d`` matrices, and the head for every ``conv`` but plain);
    :meth:`other_parameters` the rest.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import LipConvNet, lipschitz_bound
    >>> model = LipConvNet(3, 10, image_size=8, width=4, depth=3, generator=torch.Generator().manual_seed(0))
    >>> model(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 10])
    >>> bound = lipschitz_bound(model, (3, 8, 8))
    >>> bool(bound.estimate <= bound.product <= 1 + 1e-5)
    True
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        width: int = 16,
        depth: int = 5,
        *,
        conv: str = "projunn",
        kernel_size: int = 3,
        init: str = "haar",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        if conv not in CONVOLUTIONS:
            raise ValueError(f"LipConvNet: conv must be one of {CONVOLUTIONS}; got {conv!r}")
        if width < 2 or width % 2:
            raise ValueError(f"LipConvNet: width must be even and ≥ 2 (MaxMin sorts pairs of channels); got {width}")
        sizes = [image_size]
        while sizes[-1] % 2 == 0 and sizes[-1] > 2:
            sizes.append(sizes[-1] // 2)
        if depth < len(sizes):
            raise ValueError(
                f"LipConvNet: depth must be ≥ the number of blocks ({len(sizes)} at image_size {image_size}); "
                f"got {depth}"
            )
        per_block = [depth // len(sizes) + (b < depth % len(sizes)) for b in range(len(sizes))]

        def convolution(c_in: int, c_out: int, size: int) -> nn.Module:
            if conv == "projunn":
                return UnitaryConv2d(c_in, c_out, size, init=init, dtype=dtype, generator=generator)
            if conv == "cayley":
                return CayleyConv2d(c_in, c_out, size, kernel_size=kernel_size, dtype=dtype, generator=generator)
            if conv == "aol":
                return AOLConv2d(c_in, c_out, size, kernel_size=kernel_size, dtype=dtype)
            if conv == "torchlip":
                return TorchlipConv2d(c_in, c_out, size, kernel_size=kernel_size, dtype=dtype, generator=generator)
            padding = kernel_size // 2
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size, padding=padding, padding_mode="circular", bias=False, dtype=dtype),
                nn.BatchNorm2d(c_out, dtype=dtype),
            )

        layers: list[nn.Module] = [convolution(in_channels, width, sizes[0]), MaxMin()]
        channels = width
        for b, (size, count) in enumerate(zip(sizes, per_block, strict=True)):
            for _ in range(count):
                layers += [convolution(channels, channels, size), MaxMin()]
            if b + 1 < len(sizes):
                layers += [InvertibleDownsampling(2), convolution(4 * channels, 2 * channels, size // 2), MaxMin()]
                channels *= 2
        features = channels * sizes[-1] ** 2
        if features < num_classes and conv != "plain":
            raise ValueError(f"LipConvNet: {features} features cannot give {num_classes} orthonormal rows")
        head = nn.Linear(features, num_classes, dtype=dtype)
        if conv != "plain":
            with torch.no_grad():
                haar_(head.weight, generator=generator)
                head.bias.zero_()
        super().__init__(*layers, nn.Flatten(), head)
        self.conv, self.sizes, self.blocks = conv, tuple(sizes), tuple(per_block)

    @property
    def head(self) -> nn.Linear:
        head = self[-1]
        assert isinstance(head, nn.Linear)
        return head

    def unitary_parameters(self) -> list[torch.Tensor]:
        """Parameters to keep unitary (ProjUNN's ``unitary=True`` group): frequency matrices and the head's weight."""
        if self.conv == "plain":
            return []
        convolutions = [p for m in self.modules() if isinstance(m, UnitaryConv2d) for p in m.unitary_parameters()]
        return [*convolutions, self.head.weight]

    def other_parameters(self) -> list[nn.Parameter]:
        """Everything else (the head's bias, the baselines' kernels, BatchNorm): an ordinary group."""
        marked = {id(p) for p in self.unitary_parameters()}
        return [p for p in self.parameters() if id(p) not in marked]
