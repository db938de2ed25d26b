"""Baseline 1-Lipschitz convolutions for comparisons in the same harness: Cayley-FFT, AOL, deel-torchlip.

Cayley-FFT and AOL are written from their papers; :class:`TorchlipConv2d` wraps
an external library's layer (``deel-torchlip``, the optional extra
``[torchlip]``). All act on H×W images with circular padding like
:class:`~unitary_lowrank.backends.torch.UnitaryConv2d` and report their exact
operator norm (:meth:`lipschitz`, max over frequencies), so that
:func:`~unitary_lowrank.backends.torch.lipschitz_bound` certifies them alike.
They are trained by any plain ``torch.optim`` optimizer (no projUNN step).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ...backends.torch.lipschitz import _circular_conv_norm, circular_spectrum, image_size, largest_norm

__all__ = ["SOLVERS", "AOLConv2d", "CayleyConv2d", "TorchlipConv2d", "cayley"]


def _describe(layer: Any) -> str:
    """The ``extra_repr`` the baselines share: channels, image size, kernel size."""
    return f"{layer.in_channels}, {layer.out_channels}, size={layer.size}, kernel_size={layer.weight.shape[-1]}"


#: How :func:`cayley` computes ``(I + S)⁻¹ (I − S)``, fastest first.
SOLVERS = ("solve", "cholesky", "eigh")


def cayley(S: torch.Tensor, solver: str = "solve") -> torch.Tensor:
    """The Cayley transform ``(I + S)⁻¹ (I − S)`` of a batch of skew-Hermitian matrices ``S``, in ``S``'s precision.

    ``solver``:

    - ``"solve"``: one LU solve per matrix (Trockman & Kolter's formulation).
      ``I + S`` has eigenvalues ``1 + iλ``, all of modulus ≥ 1, so partial
      pivoting is stable;
    - ``"cholesky"``: ``(I − S²)⁻¹ (I − S)²`` by a Cholesky solve (``I − S² = I + SᴴS``
      is Hermitian positive definite): a route without pivoting;
    - ``"eigh"``: ``W diag((1 + iλ)/(1 − iλ)) Wᴴ`` from the Hermitian eigendecomposition
      ``iS = W Λ Wᴴ`` in double precision (about 5× slower): the reference.

    A route whose factorization reports failure, or whose result is not finite
    for a finite ``S``, hands over to the next one (with a warning); a
    non-finite ``S`` gives a non-finite result. That check reads one flag on
    the host per call: fine for a baseline on the CPU, a synchronization on a GPU.

    Examples
    --------
    >>> import torch
    >>> V = torch.randn(5, 4, 4, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    >>> S = V - V.mH
    >>> Q = cayley(S)
    >>> bool(torch.allclose(Q.mH @ Q, torch.eye(4, dtype=Q.dtype).expand_as(Q)))
    True
    >>> bool(torch.allclose(Q, cayley(S, "eigh")) and torch.allclose(Q, cayley(S, "cholesky")))
    True
    """
    if solver not in SOLVERS:
        raise ValueError(f"cayley: solver must be one of {SOLVERS}; got {solver!r}")
    if not S.is_complex():
        S = S.to(torch.complex128 if S.dtype == torch.float64 else torch.complex64)
    if solver == "eigh":
        lam, W = torch.linalg.eigh(1j * S.to(torch.complex128))
        phase = (1 + 1j * lam) / (1 - 1j * lam)
        return ((W * phase[..., None, :]) @ W.mH).to(S.dtype)
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    if solver == "solve":
        Q, info = torch.linalg.solve_ex(eye + S, eye - S)
    else:
        L, info = torch.linalg.cholesky_ex(eye - S @ S)
        M = eye - S
        Q = torch.cholesky_solve(M @ M, L)
    if bool(info.any()) or not bool(torch.isfinite(torch.view_as_real(Q)).all()):
        if not bool(torch.isfinite(torch.view_as_real(S)).all()):
            return Q  # a NaN or Inf in the weights: it reaches the loss, as in any layer
        following = SOLVERS[SOLVERS.index(solver) + 1]
        warnings.warn(
            f"cayley: the {solver} route failed on this batch; using {following}", RuntimeWarning, stacklevel=2
        )
        return cayley(S, following)
    return Q


class CayleyConv2d(nn.Module):
    """Orthogonal convolution by the Cayley transform of each frequency's skew-Hermitian matrix (Trockman & Kolter).

    The parameter is a real kernel ``V`` (n, n, k, k), n = max(c_in, c_out).
    Per ``rfft2`` frequency f of the H×W image, ``S[f] = V̂[f] − V̂[f]ᴴ`` is
    skew-Hermitian and ``Q[f] = (I + S[f])⁻¹ (I − S[f])`` unitary; the layer
    applies its top-left c_out×c_in block (orthonormal columns when
    c_out ≥ c_in, rows otherwise). ``V`` real makes ``Q[−f] = conj(Q[f])``: a real
    operator. Cost per forward pass: a batch of H (W/2 + 1) n×n complex solves in
    the working precision (:func:`cayley`; ``solver`` picks another route), which
    the layer repeats on every forward pass (projUNN instead keeps ``Q``).

    References
    ----------
    A. Trockman, J. Z. Kolter, "Orthogonalizing convolutional layers with the
    Cayley transform", ICLR 2021.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | tuple[int, int],
        *,
        kernel_size: int = 3,
        solver: str = "solve",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"CayleyConv2d: solver must be one of {SOLVERS}; got {solver!r}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, image_size(size)
        self.solver = solver
        n = max(in_channels, out_channels)
        weight = torch.randn(n, n, kernel_size, kernel_size, dtype=dtype, generator=generator)
        self.weight = nn.Parameter(weight / (n * kernel_size))  # small S: Q starts near the identity

    def frequencies(self) -> torch.Tensor:
        """``Q[f]`` cut to c_out×c_in, shape (H, W//2 + 1, c_out, c_in), complex."""
        V = circular_spectrum(self.weight, self.size)
        return cayley(V - V.mH, self.solver)[..., : self.out_channels, : self.in_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        X = torch.fft.rfft2(x, norm="ortho")
        Y = torch.einsum("hwoi,bihw->bohw", self.frequencies(), X)
        return torch.fft.irfft2(Y, s=self.size, norm="ortho")

    def lipschitz(self) -> float:
        """Max over frequencies of ‖Q[f]‖₂ (double precision): 1 to rounding."""
        return largest_norm(self.frequencies())

    def extra_repr(self) -> str:
        return _describe(self) + ("" if self.solver == "solve" else f", solver={self.solver!r}")


class AOLConv2d(nn.Module):
    """Almost-orthogonal (AOL) convolution: a k×k kernel rescaled per input channel to be 1-Lipschitz.

    With kernel ``P`` (c_out, c_in, k, k) and ``G = Pᵀ P`` the Gram kernel
    ((2k − 1)×(2k − 1), computed by convolving ``P`` with itself), the input
    channels are scaled by ``d_i = (Σ_{j, Δ} |G[i, j, Δ]|)^{−1/2}``; the layer
    applies the circular convolution with ``P diag(d)``, whose norm is ≤ 1 by
    Prach & Lampert's theorem (the rescaled Gram operator has ℓ∞ row sums ≤ 1;
    on a small torus wrapped terms only merge, which cannot raise a row sum
    of absolute values). Not exactly orthogonal: its norm can be below 1.

    References
    ----------
    B. Prach, C. H. Lampert, "Almost-orthogonal layers for efficient general-purpose
    Lipschitz networks", ECCV 2022.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | tuple[int, int],
        *,
        kernel_size: int = 3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"AOLConv2d: kernel_size must be odd; got {kernel_size}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, image_size(size)
        if kernel_size // 2 > min(self.size):
            raise ValueError(f"AOLConv2d: kernel_size {kernel_size} needs images of side ≥ {kernel_size // 2}")
        weight = torch.zeros(out_channels, in_channels, kernel_size, kernel_size, dtype=dtype)
        center = kernel_size // 2
        with torch.no_grad():  # the identity on the first min(c_in, c_out) channels: no contraction at the start
            for c in range(min(in_channels, out_channels)):
                weight[c, c, center, center] = 1.0
        self.weight = nn.Parameter(weight)

    def rescaled_kernel(self) -> torch.Tensor:
        P = self.weight
        k = P.shape[-1]
        per_input = P.transpose(0, 1)  # (c_in, c_out, k, k): channel i's kernels as one "image" of c_out channels
        gram = nn.functional.conv2d(per_input, per_input, padding=k - 1)  # (c_in, c_in, 2k − 1, 2k − 1)
        d = gram.abs().sum(dim=(1, 2, 3)).clamp_min(torch.finfo(P.dtype).tiny).rsqrt()
        return P * d[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = self.rescaled_kernel()
        p = K.shape[-1] // 2
        return nn.functional.conv2d(nn.functional.pad(x, (p, p, p, p), mode="circular"), K)

    def lipschitz(self) -> float:
        """Max over frequencies of the rescaled kernel's ‖·‖₂ (double precision): ≤ 1."""
        # conv2d is a cross-correlation: the same singular values as the convolution with the kernel
        return _circular_conv_norm(self.rescaled_kernel(), self.size)

    def extra_repr(self) -> str:
        return _describe(self)


class TorchlipConv2d(nn.Module):
    """``deel-torchlip``'s ``SpectralConv2d`` with circular padding: a maintained library's layer in the same harness.

    The library normalizes the kernel reshaped to c_out × (c_in k²) (power
    iteration, then Björck orthonormalization) and divides it by k (its
    ``lconv`` coefficient for stride 1), so that the convolution is
    1-Lipschitz for any padding: :attr:`library_bound` = 1. With circular
    padding the exact norm, max over frequencies (:meth:`lipschitz`), is
    usually well below that (0.65 for a fresh 16-channel layer on 32×32):
    certificates use the exact value. Needs ``pip install "unitary-lowrank[torchlip]"``.

    References
    ----------
    M. Serrurier, F. Mamalet, A. González-Sanz, T. Boissin, J.-M. Loubes, E. del Barrio,
    "Achieving robustness in classification using optimal transport with hinge
    regularization", CVPR 2021 (the library: github.com/deel-ai/deel-torchlip).
    """

    #: The library's own guarantee for the layer (its ``k_coef_lip``).
    library_bound = 1.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int | tuple[int, int],
        *,
        kernel_size: int = 3,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        try:
            from deel.torchlip import SpectralConv2d
        except ImportError as err:
            raise ImportError('TorchlipConv2d needs deel-torchlip: pip install "unitary-lowrank[torchlip]"') from err
        if kernel_size % 2 == 0:
            raise ValueError(f"TorchlipConv2d: kernel_size must be odd; got {kernel_size}")
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, image_size(size)
        # the library draws its initial kernel from torch's global generator: seed it from ours, then restore it
        seed = int(torch.randint(2**62, (1,), generator=generator)) if generator is not None else None
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            conv = SpectralConv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=kernel_size // 2,
                padding_mode="circular",
                bias=False,
                k_coef_lip=self.library_bound,
            )
        self.conv = conv.to(dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The normalized kernel the layer applies (c_out, c_in, k, k)."""
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def lipschitz(self) -> float:
        """Max over frequencies of the normalized kernel's ‖·‖₂ (double precision): ≤ :attr:`library_bound`."""
        # conv2d is a cross-correlation: the same singular values as the convolution with the kernel
        return _circular_conv_norm(self.weight, self.size)

    def extra_repr(self) -> str:
        return _describe(self)
