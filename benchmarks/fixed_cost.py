"""The fixed cost of one step on the CPU: operators issued, synchronizing operators, microseconds.

    python benchmarks/fixed_cost.py [--out table.md]

Measures, for torch CPU tensors, the default route and the device-resident one
(``ul.device_resident()``, what a compiled or captured GPU step runs):

- the non-view aten operators one eager call issues (a ``TorchDispatchMode`` log),
  and which of them read a value back or run a status-checking factorization;
- the time of one in-place step at N = 128, k = 1, float32 (NumPy and torch);
- batched steps (512 matrices of 64×64, k = 1) against one batched ``U @ X``
  (X: 64×2, the memory floor) and against a full 64×64 product;
- a ``UnitaryConv2d`` layer's ``ProjUNN`` step against its forward and backward.

Single-threaded (``torch.set_num_threads(1)``), best of 5 repeats of many calls;
run it on a quiet machine. Issue 18's targets are printed beside the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d, haar_
from unitary_lowrank.backends.torch.oplog import SYNCHRONIZING, VIEWS, operators

import unitary_lowrank as ul


def operator_counts(function: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """(non-view operators, synchronizing ones) of one call, after a warm-up call."""
    counts = operators(function)
    return sum(v for k, v in counts.items() if k not in VIEWS), {k: v for k, v in counts.items() if k in SYNCHRONIZING}


def best_us(function: Callable[[], object], calls: int) -> float:
    for _ in range(max(3, calls // 20)):
        function()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the tables (Markdown) here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines: list[str] = []

    def show(line: str) -> None:
        lines.append(line)
        if line.startswith("| ") and lines[-2:-1] in ([], [""]):  # a table begins: say which, on stderr
            print(f"measuring: {line.split('|')[1].strip()} ...", file=sys.stderr, flush=True)

    generator = torch.Generator().manual_seed(0)
    show("| call (torch CPU, float32, N = 128) | route | non-view operators | synchronizing operators |")
    show("|---|---|---|---|")
    for k in (1, 4):
        U = haar_(torch.empty(128, 128), generator=generator)
        A, B = torch.randn(128, k, generator=generator), torch.randn(128, k, generator=generator) * 1e-3
        G, key = torch.randn(128, 128, generator=generator), torch.tensor([1, 2, 3])
        W = torch.nn.Parameter(U.clone())
        W2 = torch.nn.Parameter(U.clone())
        projunn = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-3), rank=k)
        adam = torch.optim.Adam([W2], lr=1e-3)
        W.grad, W2.grad = G.clone(), G.clone()
        calls = {
            f"transport, k = {k}": lambda U=U, A=A, B=B: ul.transport(U, A, B, check_finite=False),
            f"project, k = {k}": lambda U=U, A=A, B=B: ul.project(U, A, B, check_finite=False),
            f"sketch, k = {k}": lambda G=G, k=k, key=key: ul.sketch(G, k, seed=key, check_finite=False),
            f"ProjUNN(Adam) step, rank {k}, beyond Adam's own": None,
        }
        for route, context in (("default", contextlib.nullcontext), ("resident", ul.device_resident)):
            with context():
                for name, function in calls.items():
                    if function is None:
                        count, sync = operator_counts(projunn.step)
                        alone, alone_sync = operator_counts(adam.step)
                        count -= alone
                        sync = {op: n - alone_sync.get(op, 0) for op, n in sync.items() if n > alone_sync.get(op, 0)}
                    else:
                        count, sync = operator_counts(function)
                    show(f"| {name} | {route} | {count} | {sync or 'none'} |")

    show("")
    show("| step at N = 128, k = 1, float32, in place, `check_finite=False` | µs | target |")
    show("|---|---|---|")
    rng = np.random.default_rng(0)
    U = ul.random_unitary(128, dtype="float32", seed=0)
    A = rng.standard_normal((128, 1)).astype(np.float32)
    B = (rng.standard_normal((128, 1)) * 1e-3).astype(np.float32)
    for library in ("numpy", "torch"):
        X, a, b = (
            (U.copy(), A, B)
            if library == "numpy"
            else (torch.from_numpy(U.copy()), torch.from_numpy(A), torch.from_numpy(B))
        )
        for name, step in (("transport", ul.transport), ("project", ul.project)):
            us = best_us(lambda X=X, a=a, b=b, step=step: step(X, a, b, out=X, check_finite=False), 300)
            show(f"| {library} {name} | {us:.0f} | ≤ {100 if library == 'numpy' else 150} |")

    show("")
    show("| batch (512, 64, 64), k = 1, in place | ms | × `U @ X` (X 64×2) | × `U @ M` (M 64×64) |")
    show("|---|---|---|---|")
    for library in ("numpy", "torch"):
        for dtype in ("float32", "complex64"):
            Ub = np.stack([ul.random_unitary(64, dtype=dtype, seed=i) for i in range(512)])
            Ab = rng.standard_normal((512, 64, 1)).astype(dtype)
            Bb = (rng.standard_normal((512, 64, 1)) * 1e-3).astype(dtype)
            Xs, Ms = rng.standard_normal((512, 64, 2)).astype(dtype), rng.standard_normal((512, 64, 64)).astype(dtype)
            if library == "torch":
                Ub, Ab, Bb, Xs, Ms = map(torch.from_numpy, (Ub, Ab, Bb, Xs, Ms))
            floor = best_us(lambda Ub=Ub, Xs=Xs: Ub @ Xs, 20) / 1e3
            full = best_us(lambda Ub=Ub, Ms=Ms: Ub @ Ms, 10) / 1e3
            W = Ub.copy() if library == "numpy" else Ub.clone()
            for name, step in (("transport", ul.transport), ("project", ul.project)):
                ms = best_us(lambda W=W, Ab=Ab, Bb=Bb, step=step: step(W, Ab, Bb, out=W, check_finite=False), 10) / 1e3
                show(f"| {library} {dtype} {name} | {ms:.2f} | {ms / floor:.1f} | {ms / full:.1f} |")

    show("")
    show("| `UnitaryConv2d` (batch 64), ProjUNN(Adam) step, rank 1 | step ms | forward + backward ms | ratio |")
    show("|---|---|---|---|")
    for channels, size in ((64, 8), (16, 32)):
        layer = UnitaryConv2d(channels, size)
        x = torch.randn(64, channels, size, size, generator=generator)
        params = list(layer.parameters())
        opt = ProjUNN(torch.optim.Adam([{"params": params, "unitary": True}], lr=1e-3), rank=1)

        def forward_backward(layer=layer, x=x):
            layer.zero_grad()
            layer(x).pow(2).sum().backward()

        fb = best_us(forward_backward, 5) / 1e3
        grads = [p.grad.clone() for p in params]

        def step(params=params, grads=grads, opt=opt):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()

        st = best_us(step, 5) / 1e3
        show(f"| c = {channels}, {size}×{size} | {st:.1f} | {fb:.1f} | {st / fb:.2f} |")

    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
