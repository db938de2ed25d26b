"""What one optimizer step costs against the rank k: the curve that ``rank="auto"`` is read from.

    python benchmarks/rank_cost.py            # the table of docs/choosing.md (*Rank*)
    python benchmarks/rank_cost.py --json     # the same, one JSON line per shape

One thread, float32, ``ProjUNN(Adam)`` with no Newton–Schulz step; the
median of 20 timed steps after 3 untimed ones, each on a fresh Gaussian
gradient. Plain Adam's step on the same weight is timed beside it. The rule
of ``rank="auto"`` (``unitary_lowrank._adapters.AUTO_RANK_DIVISOR``,
``AUTO_RANK_CAP``) is the largest power of two k whose step costs at most
twice the rank-1 step, read from this table for N = 256 and 1024.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from unitary_lowrank.backends.torch import ProjUNN, haar_

#: (batch shape, n, p, ranks): a square weight of a linear layer, and the per-frequency batches of convolutions
SHAPES = [
    ((), 256, 256, (1, 4, 8, 16, 32, 64)),
    ((), 1024, 1024, (1, 4, 8, 16, 32, 64, 128)),
    ((32, 17), 16, 16, (1, 2, 4, 8, 16)),
    ((8, 5), 64, 64, (1, 4, 8, 16, 32)),
]


def _median_ms(weight: torch.nn.Parameter, optimizer: torch.optim.Optimizer, repeats: int = 20) -> float:
    times = []
    for i in range(repeats + 3):
        weight.grad = torch.randn_like(weight)
        start = time.perf_counter()
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def projunn_ms(batch: tuple[int, ...], n: int, p: int, rank: int, sketch: str) -> float:
    weight = torch.nn.Parameter(haar_(torch.empty(*batch, n, p)))
    base = torch.optim.Adam([{"params": [weight], "unitary": True}], lr=1e-3)
    return _median_ms(weight, ProjUNN(base, rank=rank, sketch=sketch, reorthonormalize_every=None))


def adam_ms(batch: tuple[int, ...], n: int, p: int) -> float:
    weight = torch.nn.Parameter(torch.randn(*batch, n, p))
    return _median_ms(weight, torch.optim.Adam([weight], lr=1e-3))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rank_cost.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per shape instead of the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.json:
        print(
            "| weight | sketch | Adam alone | " + " | ".join(f"k = {k}" for k in (1, 2, 4, 8, 16, 32, 64, 128)) + " |"
        )
        print("|---|---|---|" + "---|" * 8)
    for batch, n, p, ranks in SHAPES:
        name = " × ".join(map(str, (*batch, n, p)))
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        row = {"shape": [*batch, n, p], "adam_ms": round(adam_ms(batch, n, p), 3)}
        for sketch in ("randomized", "subspace"):
            row[sketch] = {k: round(projunn_ms(batch, n, p, k, sketch), 3) for k in ranks}
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        for sketch in ("randomized", "subspace"):
            one = row[sketch][1]
            cells = [f"{row[sketch][k]:.2f} ms ({row[sketch][k] / one:.2f}×)" if k in row[sketch] else "—"
                     for k in (1, 2, 4, 8, 16, 32, 64, 128)]  # fmt: skip
            print(f"| {name} | {sketch} | {row['adam_ms']:.2f} ms | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
