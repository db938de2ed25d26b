"""A prototype of optimizer state of O(k N) (the default-step issue, item 3), beside today's full-state step.

    python benchmarks/projected_state.py 1024 20 '[{"method": "full-randomized", "k": 32, "lr": 0.01},
                                                 {"method": "proj-power", "k": 32, "lr": 0.003}]'

Not the library's step: a measurement of a design. The task is the peer
harness's teacher fit (a Haar rotation from minibatches of 64, noise 0.05;
teacher and start drawn from one generator, here in the same component of
O(n)), float32, one thread, for a budget of timed seconds; the relative
test error is printed as one JSON line per configuration.

- ``full-randomized`` / ``full-subspace``: ``ProjUNN(Adam, rank=k, sketch=...)``,
  Adam's moments N×N, the update Δ sketched to rank k.
- ``proj-*``: Adam's moments live on ``R = Pᵀ G`` (k×N) for an orthonormal
  basis P (N×k); the step is ``transport(W, P, ΔRᵀ)``; P then advances:
  ``proj-power``: ``P ← orth(G Rᵀ)`` (one subspace iteration on the minibatch
  gradient); ``proj-ema``: the same on an exponentially averaged Gram matrix kept
  as a k×k factor (``beta``); ``proj-svd``: the top-k left singular vectors of G
  (``every`` steps). When P turns, the moments are rotated by ``C = P_newᵀ P_old``
  (``rot``: ``both``: m ← C m, v ← (C∘C) v; ``m``; ``none``; ``reset``).
"""

from __future__ import annotations

import json
import sys
import time

import torch
from unitary_lowrank.backends.torch import ProjUNN

import unitary_lowrank as ul


def _haar(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator))
    return q * torch.sign(torch.diagonal(r))


def _error(W: torch.Tensor, teacher: torch.Tensor, x: torch.Tensor) -> float:
    y = teacher @ x
    return float((W @ x - y).pow(2).sum() / y.pow(2).sum())


def _orth(X: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(X)[0]


def run(n: int, method: str, k: int, lr: float, seconds: float, seed: int = 0, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    teacher, start = _haar(n, g), _haar(n, g)
    test = torch.randn(n, 512, generator=g)
    W = torch.nn.Parameter(start.clone())
    if method.startswith("full"):
        base = torch.optim.Adam([{"params": [W], "unitary": True, "lr": lr}])
        opt = ProjUNN(base, rank=k, sketch=method.split("-")[1], seed=0)
    else:
        P = _orth(torch.randn(n, k, generator=torch.Generator().manual_seed(99)))
        m, v, D, t = torch.zeros(k, n), torch.zeros(k, n), torch.zeros(k, k), 0
    b1, b2, eps = 0.9, 0.999, 1e-8
    curve, spent, step, next_evaluation = [], 0.0, 0, 0.0
    while spent < seconds:
        if spent >= next_evaluation:
            curve.append((step, spent, _error(W.detach(), teacher, test)))
            next_evaluation += seconds / 20
        x = torch.randn(n, 64, generator=g)
        y = teacher @ x + 0.05 * torch.randn(n, 64, generator=g)
        started = time.perf_counter()
        loss = (W @ x - y).pow(2).sum() / y.pow(2).sum()
        W.grad = None
        loss.backward()
        with torch.no_grad():
            if method.startswith("full"):
                opt.step()
            else:
                G = W.grad
                R = P.T @ G
                t += 1
                m.mul_(b1).add_(R, alpha=1 - b1)
                v.mul_(b2).addcmul_(R, R, value=1 - b2)
                dR = -lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
                W.copy_(ul.transport(W, P, dR.T, check_finite=False))
                every = kw.get("every", 1)
                P_new = P
                if method == "proj-power" and t % every == 0:
                    P_new = _orth(G @ R.T)
                elif method == "proj-ema" and t % every == 0:
                    beta = kw.get("beta", 0.9)
                    P_new = _orth(beta * (P @ D) + G @ R.T)
                    C0, R_new = P_new.T @ P, P_new.T @ G
                    D = beta * (C0 @ D @ C0.T) + R_new @ R_new.T
                elif method == "proj-svd" and (t - 1) % every == 0:
                    P_new = torch.linalg.svd(G, full_matrices=False)[0][:, :k]
                if P_new is not P:
                    C = P_new.T @ P
                    rotation = kw.get("rot", "both")
                    if rotation in ("both", "m"):
                        m = C @ m
                    if rotation == "both":
                        v = (C * C) @ v
                    elif rotation == "reset":
                        m.zero_()
                        v.zero_()
                        t = 0
                    P = P_new
        spent += time.perf_counter() - started
        step += 1
    curve.append((step, spent, _error(W.detach(), teacher, test)))
    return {"n": n, "method": method, "k": k, "lr": lr, **kw, "steps": step, "ms_per_step": 1e3 * spent / step,
            "final": curve[-1][2], "curve": curve}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    torch.set_num_threads(1)
    n, seconds = int(args[0]), float(args[1])
    for config in json.loads(args[2]):
        result = run(n, seconds=seconds, **config)
        print(json.dumps({key: value for key, value in result.items() if key != "curve"}), flush=True)


if __name__ == "__main__":
    main()
