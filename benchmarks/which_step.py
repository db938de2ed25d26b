"""Which step, which rank? One learning problem, every method and a few ranks, side by side.

Fits an orthogonal N×N map to samples (``Y = W* X``, ``W*`` Haar, loss
``‖W X − Y‖² / ‖Y‖²``) with ``ProjUNN(Adam)`` for a fixed number of steps, and
prints, per method and rank: the loss reached, the steps to reach 1e-3 and
1e-6, the time per optimizer step and the final unitarity error. The table
in ``docs/choosing.md`` is this script's output::

    python benchmarks/which_step.py            # N = 256, 600 steps
    python benchmarks/which_step.py --n 128 --steps 300
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from unitary_lowrank.backends.torch import ProjUNN, haar_

import unitary_lowrank as ul


def fit(n: int, steps: int, method: str, rank: int, lr: float, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    W_star = haar_(torch.empty(n, n, dtype=torch.float64), generator=g)
    X = torch.randn(n, 4 * n, dtype=torch.float64, generator=g)
    Y = W_star @ X
    W0 = haar_(torch.empty(n, n, dtype=torch.float64), generator=g)
    if torch.linalg.det(W0) * torch.linalg.det(W_star) < 0:
        W0[:, 0] = -W0[:, 0]  # O(n) has two components; a continuous path cannot cross between them
    W = torch.nn.Parameter(W0)
    rule = {"method": "transport", "retraction": "cayley"} if method == "cayley" else {"method": method}
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=lr), rank=rank, **rule)
    reached: dict[float, int | None] = {1e-3: None, 1e-6: None}
    spent = 0.0
    loss = float("nan")
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss_t = (W @ X - Y).pow(2).sum() / Y.pow(2).sum()
        loss = loss_t.item()
        for threshold in reached:
            if reached[threshold] is None and loss <= threshold:
                reached[threshold] = step
        loss_t.backward()
        start = time.perf_counter()
        opt.step()
        spent += time.perf_counter() - start
    return {
        "method": method,
        "rank": rank,
        "final loss": loss,
        "steps to 1e-3": reached[1e-3],
        "steps to 1e-6": reached[1e-6],
        "ms per optimizer step": 1e3 * spent / steps,
        "unitarity": float(ul.unitarity_error(W.detach())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [(method, rank) for method in ("transport", "project", "cayley") for rank in (1, 4, 16)] + [("dense", 1)]
    rows = []
    for number, (method, rank) in enumerate(runs, 1):  # progress on stderr: the table alone goes to stdout
        print(f"[{number}/{len(runs)}] {method}, rank {rank}: {args.steps} steps ...", file=sys.stderr, flush=True)
        rows.append(fit(args.n, args.steps, method, rank, args.lr))
    print(f"N = {args.n}, {args.steps} steps of ProjUNN(Adam, lr={args.lr}), float64, {args.threads} threads\n")
    print("| method | rank | final loss | steps to 1e-3 | steps to 1e-6 | ms per optimizer step | max abs(WᴴW − I) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rank = "full" if r["method"] == "dense" else r["rank"]
        print(
            f"| {r['method']} | {rank} | {r['final loss']:.2e} | {r['steps to 1e-3'] or '—'} | "
            f"{r['steps to 1e-6'] or '—'} | {r['ms per optimizer step']:.2f} | {r['unitarity']:.1e} |"
        )


if __name__ == "__main__":
    main()
