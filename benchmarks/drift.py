"""Unitarity drift of ProjUNN over many steps, with and without periodic Newton–Schulz.

Trains a unitary weight on a fixed least-squares problem (Adam, rank 1, projUNN-T)
and records ``max|WᴴW − I|`` every 100 steps. This is the measurement behind
``DEFAULT_REORTHONORMALIZE_EVERY``.

    python benchmarks/drift.py --steps 10000 --n 64 --out drift.json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--method", default="transport", choices=["transport", "project", "cayley"])
    parser.add_argument("--every", type=int, nargs="+", default=[0, 10, 100, 1000])
    parser.add_argument("--out", default="drift.json")
    args = parser.parse_args()
    results = {}
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
