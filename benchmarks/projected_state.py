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
- ``adam``: plain Adam, nothing keeping W orthogonal (the cost baseline).
- ``moment-k``: Adam in W's coordinates, but its first moment kept at rank k
  (the basis of ``proj-momentum`` and m = Pᵀ M) and its second moment exact
  (``second="exact"``) or factored as Adafactor's (``"factored"``, the
  default); the update is formed densely and sketched as the full-state
  step's: what keeping only a rank-k first moment costs.
- ``proj-*``: Adam's moments live on ``R = Pᵀ G`` (k×N) for an orthonormal
  basis P (N×k); the step is ``transport(W, P, ΔRᵀ)``. How P follows:
  ``proj-momentum``: before the step, one subspace iteration on Adam's first
  moment ``M = β₁ P m + (1 − β₁) G`` (never formed: ``Z = Mᵀ P = (β₁ m + (1 − β₁) R)ᵀ``,
  ``P ← orth(β₁ P (m Z) + (1 − β₁) G Z)``), so the basis follows the averaged
  gradient, three passes over G per step; after the step: ``proj-power``:
  ``P ← orth(G Rᵀ)`` (one subspace iteration on the minibatch gradient);
  ``proj-ema``: the same on an exponentially averaged Gram matrix kept as a k×k
  factor (``beta``); ``proj-svd``: the top-k left singular vectors of G
  (``every`` steps). When P turns, the moments are rotated by ``C = P_newᵀ P_old``
  (``rot``: ``both``: m ← C m, v ← (C∘C) v; ``m``: m alone, v kept as it is;
  ``none``; ``reset``). ``second="column"``: one second moment per column of R
  (the mean over its k rows), which a turn of P within its span leaves unchanged.

Found with it (docs/performance.md, *The default step*): rotating v by C∘C is
what made the projected state plateau. When P turns out of its span, C is a
contraction, the rotated v shrinks and the steps it normalizes grow; with m
rotated and v kept (``rot="m"``) and the basis following the first moment
(``proj-momentum``), the plateau is gone.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from unitary_lowrank.backends.torch import ProjUNN

import unitary_lowrank as ul


class ProjectedAdam:
    """The projected state as an optimizer of the peer harness (``peers.py``, method ``projected-auto``): a prototype.

    Adam's moments on ``R = Pᴴ G`` (k×p) for each tall or square weight (..., n, p),
    the basis P (n×k) following the first moment (``proj-momentum`` above,
    ``rot="m"``), the step ``transport(W, P, ΔRᴴ)`` and one Newton–Schulz step
    every 100. Real and complex weights; k from ``rank="auto"``. State per weight:
    P, m, v: k n + 2 k p numbers (against Adam's 2 n p and the full-state step's
    Δ besides). Not the library's optimizer: no state_dict, no checks.
    """

    def __init__(self, weights: list[torch.nn.Parameter], lr: float, *, rank: int | str = "auto",
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, seed: int = 0) -> None:  # fmt: skip
        from unitary_lowrank._adapters import rank_of

        self.weights, self.lr, self.betas, self.eps, self.t = list(weights), lr, betas, eps, 0
        self.state = []
        generator = torch.Generator().manual_seed(seed)
        for W in self.weights:
            *batch, n, p = W.shape
            if p > n:
                raise ValueError("ProjectedAdam: a tall or square weight (n ≥ p)")
            k = rank_of(rank, (n, p))
            draw = torch.randn(*batch, n, k, generator=generator, dtype=W.dtype)
            self.state.append({"P": _orth(draw), "m": torch.zeros(*batch, k, p, dtype=W.dtype),
                               "v": torch.zeros(*batch, k, p, dtype=W.real.dtype)})  # fmt: skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        for W in self.weights:
            W.grad = None

    @torch.no_grad()
    def step(self) -> None:
        (b1, b2), self.t = self.betas, self.t + 1
        for W, state in zip(self.weights, self.state, strict=True):
            if W.grad is None:
                continue
            G, P = W.grad, state["P"]
            P_new, C, R = follow_first_moment(P, state["m"], G, P.mH @ G, b1)
            m = state["m"] = b1 * (C @ state["m"]) + (1 - b1) * R  # m turned with P; v is not
            v = state["v"].mul_(b2).add_((1 - b2) * R.abs().square())
            state["P"] = P_new
            dR = -self.lr * (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + self.eps)
            W.copy_(ul.transport(W, P_new, dR.mH, check_finite=False))
            if self.t % 100 == 0:
                W.sub_(W @ (W.mH @ W - torch.eye(W.shape[-1], dtype=W.dtype)) / 2)


def _haar(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator))
    return q * torch.sign(torch.diagonal(r))


def _error(W: torch.Tensor, teacher: torch.Tensor, x: torch.Tensor) -> float:
    y = teacher @ x
    return float((W @ x - y).pow(2).sum() / y.pow(2).sum())


def _orth(X: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(X)[0]


def follow_first_moment(
    P: torch.Tensor, m: torch.Tensor, G: torch.Tensor, R: torch.Tensor, beta1: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One subspace iteration on Adam's first moment ``M = β₁ P m + (1 − β₁) G``, never formed.

    ``R = Pᴴ G`` (already computed by the caller). With ``Z = Mᴴ P = (β₁ m + (1 − β₁) R)ᴴ``, the new basis is
    ``orth(M Z) = orth(β₁ P (m Z) + (1 − β₁) G Z)``. Returns it, ``C = P_newᴴ P`` (m turns as ``C m``) and
    ``P_newᴴ G``: two more passes over G.
    """
    Z = (beta1 * m + (1 - beta1) * R).mH
    P_new = _orth(beta1 * (P @ (m @ Z)) + (1 - beta1) * (G @ Z))
    return P_new, P_new.mH @ P, P_new.mH @ G


def run(n: int, method: str, k: int, lr: float, seconds: float, seed: int = 0, **kw) -> dict:
    g = torch.Generator().manual_seed(seed)
    teacher, start = _haar(n, g), _haar(n, g)
    test = torch.randn(n, 512, generator=g)
    W = torch.nn.Parameter(start.clone())
    if method == "adam":  # plain Adam, nothing keeping W orthogonal: the cost baseline
        opt = torch.optim.Adam([W], lr=lr)
    elif method.startswith("full"):
        base = torch.optim.Adam([{"params": [W], "unitary": True, "lr": lr}])
        opt = ProjUNN(base, rank=k, sketch=method.split("-")[1], seed=0)
    else:
        P = _orth(torch.randn(n, k, generator=torch.Generator().manual_seed(99)))
        m, v, D, t = torch.zeros(k, n), torch.zeros(k, n), torch.zeros(k, k), 0
        rows, columns, v_full = torch.zeros(n, 1), torch.zeros(1, n), None
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
            if method == "adam" or method.startswith("full"):
                opt.step()
            elif method == "moment-k":
                # Adam in W's coordinates with a first moment of rank k (tracked as proj-momentum's), the
                # second moment exact (second="exact", N×N) or factored (second="factored": Adafactor's row
                # and column means, O(N)); the update formed densely and sketched to rank k, as today's step.
                G = W.grad
                t += 1
                P, C, R = follow_first_moment(P, m, G, P.T @ G, b1)
                m = b1 * (C @ m) + (1 - b1) * R
                if kw.get("second", "factored") == "factored":
                    rows.mul_(b2).add_(G.square().mean(dim=1, keepdim=True), alpha=1 - b2)
                    columns.mul_(b2).add_(G.square().mean(dim=0, keepdim=True), alpha=1 - b2)
                    v_hat = rows @ columns / rows.mean() / (1 - b2**t)
                else:
                    v_full = torch.zeros(n, n) if v_full is None else v_full
                    v_hat = v_full.mul_(b2).addcmul_(G, G, value=1 - b2) / (1 - b2**t)
                update = -lr * (P @ m / (1 - b1**t)) / (v_hat.sqrt() + eps)
                A, B = ul.sketch(update, k, seed=torch.tensor([0, t]), check_finite=False)
                W.copy_(ul.transport(W, A, B, check_finite=False))
            else:
                G = W.grad
                R = P.T @ G
                t += 1
                if method == "proj-momentum":
                    # P first follows Adam's first moment; m becomes its projection on the new basis
                    # (after the update below); v is turned too only with rot="both"
                    P, C, R = follow_first_moment(P, m, G, R, b1)
                    m = C @ m
                    if kw.get("rot", "both") == "both":
                        v = (C * C) @ v
                m.mul_(b1).add_(R, alpha=1 - b1)
                v.mul_(b2).addcmul_(R, R, value=1 - b2)
                if kw.get("second") == "column":  # a second moment per column of R: unchanged by P's turns
                    v_used = v.mean(dim=0, keepdim=True)
                else:
                    v_used = v
                dR = -lr * (m / (1 - b1**t)) / ((v_used / (1 - b2**t)).sqrt() + eps)
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
