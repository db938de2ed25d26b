"""Iterations per second of one training step (forward, backward, ProjUNN step) of the paper's RNNs.

Compares the recurrence through autograd's Python loop (``autograd_loop=True``)
with the hand-written backward (the default), on the adding task (T = 200,
hidden 170, batch 50, ReLU) and permuted MNIST (T = 784, hidden 170, batch
128, modReLU), one torch thread. The two variants alternate, round after
round, so that a busy machine slows both alike; the median per variant is
reported::

    python benchmarks/rnn_speed.py            # 5 rounds of 20 (adding) / 3 (pMNIST) iterations
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from unitary_lowrank.backends.torch import OrthogonalRNN, ProjUNN

CASES = {
    "adding T = 200": dict(T=200, batch=50, inputs=2, outputs=1, nonlinearity="relu", iterations=20),
    "pMNIST T = 784": dict(T=784, batch=128, inputs=1, outputs=10, nonlinearity="modrelu", iterations=3),
}


def trainer(case: dict, autograd_loop: bool):
    torch.manual_seed(0)
    model = OrthogonalRNN(
        case["inputs"], 170, case["outputs"], nonlinearity=case["nonlinearity"], init="identity",
        autograd_loop=autograd_loop,
    )  # fmt: skip
    optimizer = ProjUNN(
        torch.optim.RMSprop(
            [{"params": model.other_parameters()}, {"params": model.unitary_parameters(), "unitary": True}], lr=1e-3
        ),
        rank=1,
    )
    x = torch.rand(case["T"], case["batch"], case["inputs"])

    def step() -> None:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| case | autograd loop (it/s) | hand-written backward (it/s) | speed-up |\n|---|---:|---:|---:|")
    for name, case in CASES.items():
        steps = {variant: trainer(case, variant) for variant in (True, False)}
        rates: dict[bool, list[float]] = {True: [], False: []}
        for step in steps.values():
            step()  # warm-up
        for _ in range(args.rounds):
            for variant, step in steps.items():
                started = time.perf_counter()
                for _ in range(case["iterations"]):
                    step()
                rates[variant].append(case["iterations"] / (time.perf_counter() - started))
        slow, fast = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"| {name} | {slow:.2f} | {fast:.2f} | {fast / slow:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
