"""The baselines' forward + backward against the fastest correct implementation measured beside them.

    python benchmarks/baseline_cost.py [--repeats 7] [--batch 128] [--json out.json]

One thread. For every convolution shape of a width-16 ``LipConvNet`` (channels
c → c at sides 32, 16, 8, 4, 2, and the 4c → 2c convolutions between blocks),
the contenders run interleaved, round by round, and the median over rounds is
reported (a burst of load hits all alike):

- ``CayleyConv2d`` with each :data:`~unitary_lowrank.tasks.models.baselines.SOLVERS`
  route, against a reference written here for speed alone: the kernel's
  ``rfft2`` padded to the image, one ``torch.linalg.solve`` per frequency in
  complex64, the einsum and the inverse FFT (Trockman & Kolter's formulation);
- ``AOLConv2d`` against a reference that scales the input channels by the
  AOL factors and convolves with the raw kernel (the same operator, the
  rescaling moved onto the activations);
- deel-torchlip's layer (when installed) and a plain circular ``nn.Conv2d``, for scale.

Ratios are to the fastest correct implementation in the row (the reference, or
the layer itself where it is faster). The target of issue 29: every baseline,
as the study builds it (Cayley by ``solve``), ≤ 1.3×.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from step_cost import interleaved  # the same interleaved medians as the step-cost study (benchmarks/ is on the path)
from torch.nn import functional

from unitary_lowrank.tasks.models.baselines import SOLVERS, AOLConv2d, CayleyConv2d

TARGET = 1.3


def reference_cayley(weight: torch.Tensor, x: torch.Tensor, c_out: int) -> torch.Tensor:
    """The Cayley-FFT layer, written for speed: kernel FFT padded to the image, a complex64 solve, einsum, iFFT."""
    H, W = x.shape[-2:]
    c_in, k = x.shape[1], weight.shape[-1]
    if k <= min(H, W):
        V = torch.fft.rfft2(weight, s=(H, W)).permute(2, 3, 0, 1)
    else:  # taps wrap around a torus smaller than the kernel
        rows, cols = torch.arange(k) % H, torch.arange(k) % W
        wrapped = weight.new_zeros(*weight.shape[:2], H, k).index_add(2, rows, weight)
        wrapped = weight.new_zeros(*weight.shape[:2], H, W).index_add(3, cols, wrapped)
        V = torch.fft.rfft2(wrapped).permute(2, 3, 0, 1)
    S = V - V.mH
    eye = torch.eye(S.shape[-1], dtype=S.dtype)
    Q = torch.linalg.solve(eye + S, eye - S)[..., :c_out, :c_in]
    X = torch.fft.rfft2(x, norm="ortho")
    return torch.fft.irfft2(torch.einsum("hwoi,bihw->bohw", Q, X), s=(H, W), norm="ortho")


def reference_aol(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """AOL with the rescaling applied to the input channels: conv(x · d, P) = conv(x, P diag(d))."""
    k = weight.shape[-1]
    per_input = weight.transpose(0, 1)
    gram = functional.conv2d(per_input, per_input, padding=k - 1)
    d = gram.abs().sum(dim=(1, 2, 3)).clamp_min(torch.finfo(weight.dtype).tiny).rsqrt()
    p = k // 2
    return functional.conv2d(functional.pad(x * d[:, None, None], (p, p, p, p), mode="circular"), weight)


def shapes(width: int = 16) -> list[tuple[int, int, int]]:
    """(c_in, c_out, side) of a LipConvNet(3, 10, 32, width, 5)'s convolutions, one of each."""
    out, channels = [], width
    for side in (32, 16, 8, 4, 2):
        out.append((channels, channels, side))
        if side > 2:
            out.append((4 * channels, 2 * channels, side // 2))
            channels *= 2
    return out


def case(c_in: int, c_out: int, side: int, batch: int, calls: int, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, side, side, generator=g)

    def training(layer: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            layer.zero_grad()
            layer(x).square().sum().backward()

        return step

    def reference(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], weight) -> Callable[[], None]:
        def step() -> None:
            weight.grad = None
            function(weight, x).square().sum().backward()

        return step

    contenders: dict[str, Callable[[], None]] = {}
    cayleys = {solver: CayleyConv2d(c_in, c_out, side, solver=solver, generator=g) for solver in SOLVERS}
    weight = cayleys["solve"].weight.detach().clone().requires_grad_(True)
    contenders["cayley reference"] = reference(lambda w, x: reference_cayley(w, x, c_out), weight)
    for solver, layer in cayleys.items():
        contenders[f"cayley {solver}"] = training(layer)
    aol = AOLConv2d(c_in, c_out, side)
    with torch.no_grad():
        aol.weight.add_(0.1 * torch.randn(aol.weight.shape, generator=g))
    contenders["aol reference"] = reference(reference_aol, aol.weight.detach().clone().requires_grad_(True))
    contenders["aol"] = training(aol)
    plain = torch.nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular", bias=False)
    contenders["plain conv"] = training(plain)
    try:
        from unitary_lowrank.tasks.models.baselines import TorchlipConv2d

        contenders["torchlip"] = training(TorchlipConv2d(c_in, c_out, side, generator=g))
    except ImportError:
        pass
    return interleaved(contenders, calls, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--calls", type=int, default=2, help="calls per round (default 2)")
    parser.add_argument("--batch", type=int, default=128, help="images per batch (default 128, the study's)")
    parser.add_argument("--width", type=int, default=16, help="LipConvNet width (default 16)")
    parser.add_argument("--json", help="write the medians here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    print(
        "| c_in → c_out, side | Cayley ref (ms) | Cayley solve | cholesky | eigh (before) | AOL ref (ms) | AOL "
        "| plain conv (ms) | torchlip (ms) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for c_in, c_out, side in shapes(args.width):
        t = case(c_in, c_out, side, args.batch, args.calls, args.repeats)
        results[f"{c_in}->{c_out}@{side}"] = t
        # against the fastest correct implementation measured: the reference or any route of the layer itself
        fastest_cayley = min(t[name] for name in t if name.startswith("cayley"))
        ratios = {name: t[name] / fastest_cayley for name in ("cayley solve", "cayley cholesky", "cayley eigh")}
        aol = t["aol"] / min(t["aol"], t["aol reference"])
        worst = max(worst, ratios["cayley solve"], aol)
        torchlip = f"{1e3 * t['torchlip']:.1f}" if "torchlip" in t else "—"
        print(
            f"| {c_in} → {c_out}, {side} | {1e3 * t['cayley reference']:.1f} | {ratios['cayley solve']:.2f}× | "
            f"{ratios['cayley cholesky']:.2f}× | {ratios['cayley eigh']:.2f}× | {1e3 * t['aol reference']:.1f} | "
            f"{aol:.2f}× | {1e3 * t['plain conv']:.1f} | {torchlip} |",
            flush=True,
        )
    verdict = "met" if worst <= TARGET else "missed"
    print(f"\nworst baseline / fastest: {worst:.2f}× (target ≤ {TARGET}×: {verdict})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
