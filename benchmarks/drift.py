"""Unitarity drift of ProjUNN over many steps, with and without periodic Newton–Schulz.

``matrix`` (the default) trains one unitary weight on a fixed least-squares
problem (Adam, rank 1) in four dtypes and records ``max|WᴴW − I|`` every 100
steps: the measurement behind ``DEFAULT_REORTHONORMALIZE_EVERY``.

``lipconvnet`` trains a LipConvNet on CIFAR-10 (float32, the margin loss, Adam
1e-3: the certified study's settings) and records the certificate's Lipschitz
bound, the product of the layers' exact norms, every ``--record`` steps, at the
step before each re-orthonormalization (the worst point of its cycle).

``--core single`` is an ablation: the projUNN-D step's r×r polar core in the
working precision, as before it was computed in double.

    python benchmarks/drift.py --steps 10000 --n 64 --out drift.json
    python benchmarks/drift.py lipconvnet --data ../shared/data/cifar10-jpeg.tar.gz --steps 3000 --out lip.json
"""

from __future__ import annotations

import argparse
import json

import torch
from tqdm import trange
from unitary_lowrank.backends.torch import ProjUNN, haar_

import unitary_lowrank as ul


def measure(dtype: torch.dtype, every: int | None, steps: int, n: int, method: str) -> list[tuple[int, float]]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4 * n, dtype=dtype, generator=g)
    Y = torch.randn(n, 4 * n, dtype=dtype, generator=g)
    W = torch.nn.Parameter(haar_(torch.empty(n, n, dtype=dtype), generator=g))
    opt = ProjUNN(
        torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-2),
        rank=1,
        method=method,
        reorthonormalize_every=every,
    )
    trace = []
    for step in trange(1, steps + 1, desc=f"{dtype} every={every} {method}", leave=False):
        opt.zero_grad()
        ((W @ X - Y).abs().pow(2).sum() / Y.abs().pow(2).sum()).backward()
        opt.step()
        if step % 100 == 0:
            trace.append((step, float(ul.unitarity_error(W.detach()))))
    return trace


def lipconvnet(
    data: str, steps: int, width: int, method: str, rank: int, every: int | None, record: int, batch: int
) -> list[tuple[int, float]]:
    """(step, Lipschitz bound) of a LipConvNet trained ``steps`` steps on CIFAR-10; the bound at step 0 first."""
    import math

    from unitary_lowrank.backends.torch import lipschitz_bound
    from unitary_lowrank.backends.torch.lipschitz import lipschitz_margin_loss

    from unitary_lowrank.tasks.cifar10 import load_cifar10
    from unitary_lowrank.tasks.train_cifar10 import CifarConfig, build

    torch.set_num_threads(1)
    images = load_cifar10(data)
    x = torch.from_numpy(images.x_train).permute(0, 3, 1, 2).float().div_(255)
    x = x - x.mean(dim=(0, 2, 3), keepdim=True)
    y = torch.from_numpy(images.y_train).long()
    config = CifarConfig(conv="projunn", method=method, rank=rank, width=width, lr=1e-3, batch=batch)
    model, optimizer = build(config)
    for group in optimizer.param_groups:
        if group.get("unitary"):
            group["reorthonormalize_every"] = every
    margin = 2 * math.sqrt(2) * config.margin_eps
    g = torch.Generator().manual_seed(0)

    def bound() -> float:
        return lipschitz_bound(model, (3, 32, 32), points=1, iterations=1).product

    trace = [(0, bound())]
    for step in trange(1, steps + 1, desc=f"LipConvNet {method} k={rank} every={every}", leave=False):
        chosen = torch.randint(0, len(x), (batch,), generator=g)
        optimizer.zero_grad()
        lipschitz_margin_loss(model(x[chosen]), y[chosen], margin, config.temperature).backward()
        optimizer.step()
        if (step + 1) % record == 0 or step == steps:  # just before the step that re-orthonormalizes
            trace.append((step, bound()))
    return trace


def single_precision_core() -> None:
    """The ablation: no backend offers a double-precision dtype for the r×r core."""
    from unitary_lowrank.backends import Backend

    Backend.wide_dtype = lambda self, xp, dtype, device: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="matrix", choices=["matrix", "lipconvnet"])
    parser.add_argument("--core", default="double", choices=["double", "single"], help="see above (default double)")
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="lipconvnet: CIFAR-10")
    parser.add_argument("--width", type=int, default=16, help="lipconvnet: width (default 16)")
    parser.add_argument("--rank", type=int, default=4, help="lipconvnet: rank (default 4)")
    parser.add_argument("--batch", type=int, default=128, help="lipconvnet: batch (default 128)")
    parser.add_argument("--record", type=int, default=100, help="lipconvnet: record every this many steps (= --every)")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--method", default="transport", choices=["transport", "project", "cayley"])
    parser.add_argument("--every", type=int, nargs="+", help="default: matrix 0 10 100 1000, lipconvnet 100")
    parser.add_argument("--out", default="drift.json")
    args = parser.parse_args()
    if args.mode == "lipconvnet" and args.method == "cayley":
        parser.error("lipconvnet: --method must be transport or project")
    args.every = args.every or ([100] if args.mode == "lipconvnet" else [0, 10, 100, 1000])
    if args.core == "single":
        single_precision_core()
    results = {}
    if args.mode == "lipconvnet":
        for every in args.every:
            options = (args.width, args.method, args.rank, every or None, args.record, args.batch)
            trace = lipconvnet(args.data, args.steps, *options)
            results[f"{args.method} k={args.rank} every={every} core={args.core}"] = trace
            print(f"LipConvNet {args.method} k={args.rank} every={every:<5d} core={args.core}: bound at the end "
                  f"{trace[-1][1]:.7f}, worst {max(b for _, b in trace):.7f}", flush=True)  # fmt: skip
        with open(args.out, "w") as handle:
            json.dump(results, handle)
        return
    for dtype in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        for every in args.every:
            trace = measure(dtype, every or None, args.steps, args.n, args.method)
            results[f"{str(dtype).removeprefix('torch.')} every={every}"] = trace
            worst = max(e for _, e in trace)
            print(f"{dtype!s:16s} reorthonormalize_every={every:<5d} final {trace[-1][1]:.2e}  worst {worst:.2e}")
    with open(args.out, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
