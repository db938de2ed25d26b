"""``UnitaryConv2d``: an exactly norm-preserving circular convolution, stored as one unitary per frequency.

A circular convolution whose kernel spans the whole H×W image is diagonal in
the 2-D Fourier domain: with ``X = rfft2(x)`` (orthonormal scaling), the output
is ``Y[f] = M[f] X[f]`` for one c×c channel-mixing matrix ``M[f]`` per
frequency ``f``, and the operator is orthogonal exactly when every ``M[f]`` is
unitary. For a *real* operator the matrix at ``−f`` must be the conjugate of
the one at ``f``. ``rfft2`` keeps the columns ``0 ≤ w ≤ W//2``; inside them the
columns ``w = 0`` and (even W) ``w = W/2`` are their own mirror images, so there
the rows ``h`` and ``H − h`` are tied, and the rows ``h = 0`` and (even H)
``h = H/2`` are self-conjugate: their matrices must be real orthogonal.

The layer stores only the independent matrices, so the tying holds on every
step by construction, whatever the optimizer does:

``interior``  complex (H, n_interior, c, c): the columns 0 < w < W/2, every row;
``paired``    complex (n_boundary, n_paired, c, c): rows 0 < h < H/2 of the boundary columns;
``real``      real (n_boundary, n_self, c, c): the self-conjugate rows of the boundary columns.

Each is a batch of unitary (orthogonal) matrices, stepped by
:class:`~unitary_lowrank.backends.torch.ProjUNN` in one batched call.
"""

from __future__ import annotations

import torch
from torch import nn

from .init import haar_

__all__ = ["UnitaryConv2d"]

_DTYPES = {torch.float32: torch.complex64, torch.float64: torch.complex128}


class UnitaryConv2d(nn.Module):
    """Circular 2-D convolution, ``in_channels`` → ``out_channels``, that is an isometry or a co-isometry.

    ``UnitaryConv2d(in_channels, out_channels, size)``, or ``UnitaryConv2d(channels, size)`` for
    c → c (an orthogonal operator).

    Parameters
    ----------
    in_channels : int
        c_in, input channels.
    out_channels : int
        c_out, output channels. With two positional arguments (the c → c form) this is the size.
    size : int or (int, int)
        Spatial size (H, W) of the images; the kernel spans all of it.
    dtype : torch.float32 or torch.float64, default torch.float32
        Precision of the images; the frequency matrices are complex of the same precision.
    init : {"identity", "haar"}, default "identity"
        The first min(c_in, c_out) channels passed through (the identity for c → c), or
        independent Haar-random frequency matrices (a random orthogonal convolution).
    generator : torch.Generator, optional
        For ``init="haar"``.

    Notes
    -----
    ``y = irfft2(M[f] · rfft2(x)[f])`` with orthonormal FFTs and one c_out×c_in
    matrix ``M[f]`` per frequency. c_out ≥ c_in: every ``M[f]`` has orthonormal
    columns, so ``‖y‖ = ‖x‖`` for every real ``x`` (an isometry; orthogonal when
    c_out = c_in) and :meth:`inverse` (the adjoint, ``M[f]ᴴ`` per frequency)
    recovers ``x``. c_out < c_in: orthonormal rows, so ``‖y‖ ≤ ‖x‖``
    (1-Lipschitz) and ``forward(inverse(y)) = y``. Conjugate frequencies are
    tied, so the operator is real. Cost per image: two FFTs and H (W/2 + 1)
    products of c_out×c_in matrices with vectors. The equivalent spatial
    kernel (:meth:`kernel`) is dense, c_out×c_in×H×W. ProjUNN steps the
    matrices as square or rectangular (Stiefel) weights.

    References
    ----------
    B. T. Kiani, R. Balestriero, Y. LeCun, S. Lloyd, "projUNN: efficient method
    for training deep networks with unitary matrices", NeurIPS 2022 (section 4,
    orthogonal convolutions as per-frequency unitaries).
    A. Trockman, J. Z. Kolter, "Orthogonalizing convolutional layers with the
    Cayley transform", ICLR 2021.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import UnitaryConv2d
    >>> layer = UnitaryConv2d(3, (8, 6), init="haar", dtype=torch.float64)
    >>> x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    >>> y = layer(x)
    >>> bool(torch.isclose(y.norm(), x.norm())), bool(torch.allclose(layer.inverse(y), x))
    (True, True)
    >>> wider = UnitaryConv2d(3, 5, (8, 6), init="haar", dtype=torch.float64)
    >>> wider(x).shape, bool(torch.isclose(wider(x).norm(), x.norm()))
    (torch.Size([2, 5, 8, 6]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | tuple[int, int],
        size: int | tuple[int, int] | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        init: str = "identity",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if size is None:  # the c → c form: UnitaryConv2d(channels, size)
            out_channels, size = in_channels, out_channels
        if not isinstance(out_channels, int):
            raise ValueError(f"UnitaryConv2d: out_channels must be a positive int; got {out_channels!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UnitaryConv2d: {name} must be a positive int; got {value!r}")
        H, W = (size, size) if isinstance(size, int) else tuple(size)
        if H < 1 or W < 1:
            raise ValueError(f"UnitaryConv2d: size must be positive; got {size!r}")
        if dtype not in _DTYPES:
            raise TypeError(f"UnitaryConv2d: dtype must be torch.float32 or torch.float64; got {dtype}")
        if init not in ("identity", "haar"):
            raise ValueError(f"UnitaryConv2d: init must be 'identity' or 'haar'; got {init!r}")
        self.in_channels, self.out_channels, self.size, self.dtype = in_channels, out_channels, (H, W), dtype
        complex_dtype = _DTYPES[dtype]
        columns = W // 2 + 1
        boundary = [0] + ([W // 2] if W % 2 == 0 and W > 1 else [])
        interior = [w for w in range(columns) if w not in boundary]
        paired = list(range(1, (H + 1) // 2))  # rows h whose mirror H − h is another row
        selfconj = [0] + ([H // 2] if H % 2 == 0 and H > 1 else [])
        self._layout = {"boundary": boundary, "interior": interior, "paired": paired, "selfconj": selfconj}

        def matrices(batch: tuple[int, ...], matrix_dtype: torch.dtype) -> nn.Parameter | None:
            if 0 in batch:
                return None
            tensor = torch.empty(*batch, out_channels, in_channels, dtype=matrix_dtype)
            with torch.no_grad():
                if init == "haar":
                    haar_(tensor, generator=generator)
                else:
                    tensor.copy_(torch.eye(out_channels, in_channels, dtype=matrix_dtype).expand_as(tensor))
            return nn.Parameter(tensor)

        self.interior = matrices((H, len(interior)), complex_dtype)
        self.paired = matrices((len(boundary), len(paired)), complex_dtype)
        self.real = matrices((len(boundary), len(selfconj)), dtype)

    @property
    def channels(self) -> int:
        """c for a c → c layer (the two-argument form); for c_in ≠ c_out use ``in_channels``/``out_channels``."""
        if self.in_channels != self.out_channels:
            raise ValueError(
                f"UnitaryConv2d maps {self.in_channels} → {self.out_channels} channels: use in_channels or out_channels"
            )
        return self.in_channels

    # -- parameters -------------------------------------------------------------------
    def unitary_parameters(self) -> list[nn.Parameter]:
        """The frequency matrices (all of the layer's parameters): put them in a ``unitary=True`` group."""
        return [p for p in (self.interior, self.paired, self.real) if p is not None]

    def frequencies(self) -> torch.Tensor:
        """``M``, shape (H, W//2 + 1, c_out, c_in), complex: the matrix of every ``rfft2`` frequency, ties applied."""
        H, W = self.size
        layout = self._layout
        M = torch.zeros(
            H, W // 2 + 1, self.out_channels, self.in_channels, dtype=_DTYPES[self.dtype], device=self._device()
        )
        if self.interior is not None:
            M[:, layout["interior"]] = self.interior
        rows = torch.tensor(layout["paired"], dtype=torch.long)
        for j, w in enumerate(layout["boundary"]):
            if self.paired is not None:
                M[rows, w] = self.paired[j]
                M[H - rows, w] = self.paired[j].conj()
            if self.real is not None:  # a boundary column always has its self-conjugate rows
                M[layout["selfconj"], w] = self.real[j].to(M.dtype)
        return M

    def _device(self) -> torch.device:
        return self.unitary_parameters()[0].device

    # -- the operator -------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor, name: str, channels: int) -> None:
        H, W = self.size
        expected = f"(batch, {channels}, {H}, {W})"
        if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[-2:]) != (H, W):
            raise ValueError(f"UnitaryConv2d.{name}: expected input of shape {expected}; got {tuple(x.shape)}")
        if x.is_complex():
            raise TypeError(f"UnitaryConv2d.{name}: the layer acts on real images; got {x.dtype}")

    def _per_frequency(self, x: torch.Tensor, M: torch.Tensor, equation: str) -> torch.Tensor:
        X = torch.fft.rfft2(x.to(self.dtype), norm="ortho")
        Y = torch.einsum(equation, M, X)
        return torch.fft.irfft2(Y, s=self.size, norm="ortho").to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, c_in, H, W) real → (batch, c_out, H, W): ``irfft2(M[f] rfft2(x)[f])``."""
        self._check_input(x, "forward", self.in_channels)
        return self._per_frequency(x, self.frequencies(), "hwoi,bihw->bohw")

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint, ``irfft2(M[f]ᴴ rfft2(y)[f])``, (batch, c_out, H, W) → (batch, c_in, H, W).

        The exact inverse of :meth:`forward` for c_out = c_in; a left inverse
        for c_out > c_in (``inverse(forward(x)) = x``), a right inverse for
        c_out < c_in (``forward(inverse(y)) = y``).
        """
        self._check_input(y, "inverse", self.out_channels)
        return self._per_frequency(y, self.frequencies().conj(), "hwoi,bohw->bihw")

    def lipschitz(self) -> float:
        """The operator norm, max over frequencies of ‖M[f]‖₂ (computed in double precision): 1 to rounding."""
        M = self.frequencies().detach().to(torch.complex128)
        return float(torch.linalg.matrix_norm(M, ord=2).max()) if M.numel() else 0.0

    def kernel(self) -> torch.Tensor:
        """The equivalent spatial kernel ``K`` (c_out, c_in, H, W), real.

        ``forward(x)[o, p] = Σ_{i, q} K[o, i, q] x[i, p − q]`` with indices modulo (H, W):
        a circular convolution whose kernel spans the image.
        """
        M = self.frequencies().permute(2, 3, 0, 1)  # (c_out, c_in, H, W//2 + 1)
        return torch.fft.irfft2(M, s=self.size)  # unnormalized inverse: fft2(K) = M

    def support_fraction(self, k: int = 3) -> torch.Tensor:
        """The fraction of the kernel's energy ‖K‖² within the k×k window around offset 0 (circularly).

        A kernel that spans the image can be pulled toward local support with
        ``1 − support_fraction(k)`` as a penalty (differentiable); the paper names
        this as future work.
        """
        K = self.kernel()
        H, W = self.size
        rows = [h % H for h in range(-(k // 2), k - k // 2)]
        cols = [w % W for w in range(-(k // 2), k - k // 2)]
        inside = K[:, :, sorted(set(rows))][:, :, :, sorted(set(cols))].pow(2).sum()
        return inside / K.pow(2).sum()

    def extra_repr(self) -> str:
        channels = (
            f"channels={self.in_channels}"
            if self.in_channels == self.out_channels
            else (f"in_channels={self.in_channels}, out_channels={self.out_channels}")
        )
        return f"{channels}, size={self.size}, dtype={self.dtype}"
