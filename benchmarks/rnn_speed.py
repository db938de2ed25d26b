"""Iterations per second of one training step (forward, backward, ProjUNN step) of the paper's RNNs.

Compares the recurrence through autograd's Python loop (``backward="autograd"``)
with the hand-written backward (``backward="manual"``), on the adding task (T = 200,
hidden 170, batch 50, ReLU) and permuted MNIST (T = 784, hidden 170, batch
128, modReLU), one torch thread. The two variants alternate, round after
round, so that a busy machine slows both alike; the median per variant is
reported. A second table times the LSTM baseline with subnormal floats kept
and flushed to zero (``torch.set_flush_denormal``, which ``train`` sets)::

    python benchmarks/rnn_speed.py            # 5 rounds of 20 (adding) / 3 (pMNIST) iterations
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from unitary_lowrank.backends.torch import OrthogonalRNN, ProjUNN

from unitary_lowrank.tasks.models.lstm import LSTMBaseline

CASES = {
    "adding T = 200": dict(T=200, batch=50, inputs=2, outputs=1, nonlinearity="relu", iterations=20),
    "pMNIST T = 784": dict(T=784, batch=128, inputs=1, outputs=10, nonlinearity="modrelu", iterations=3),
}


def _training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, case: dict):
    x = torch.rand(case["T"], case["batch"], case["inputs"])

    def step() -> None:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()

    return step


def trainer(case: dict, autograd_loop: bool):  # True: backward="autograd"; False: "manual"
    torch.manual_seed(0)
    model = OrthogonalRNN(
        case["inputs"], 170, case["outputs"], nonlinearity=case["nonlinearity"], init="identity",
        backward="autograd" if autograd_loop else "manual",
    )  # fmt: skip
    groups = [{"params": model.other_parameters()}, {"params": model.unitary_parameters(), "unitary": True}]
    return _training_step(model, ProjUNN(torch.optim.RMSprop(groups, lr=1e-3), rank=1), case)


def lstm_trainer(case: dict):
    torch.manual_seed(0)
    model = LSTMBaseline(case["inputs"], 170, case["outputs"])
    return _training_step(model, torch.optim.RMSprop(model.parameters(), lr=1e-3), case)


def alternate(steps: dict, iterations: int, rounds: int, setup=lambda variant: None) -> dict:
    """Median iterations per second of each variant, the variants taking turns."""
    rates: dict = {variant: [] for variant in steps}
    for variant, step in steps.items():
        setup(variant)
        step()  # warm-up
    for _ in range(rounds):
        for variant, step in steps.items():
            setup(variant)
            started = time.perf_counter()
            for _ in range(iterations):
                step()
            rates[variant].append(iterations / (time.perf_counter() - started))
    return {variant: statistics.median(r) for variant, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| case | autograd loop (it/s) | hand-written backward (it/s) | speed-up |\n|---|---:|---:|---:|")
    torch.set_flush_denormal(True)
    for name, case in CASES.items():
        steps = {variant: trainer(case, variant) for variant in (True, False)}
        rates = alternate(steps, case["iterations"], args.rounds)
        print(f"| {name} | {rates[True]:.2f} | {rates[False]:.2f} | {rates[False] / rates[True]:.2f}× |", flush=True)
    print("\n| LSTM baseline | subnormals kept (it/s) | flushed to zero (it/s) | speed-up |\n|---|---:|---:|---:|")
    for name, case in CASES.items():
        step = lstm_trainer(case)
        rates = alternate({False: step, True: step}, max(1, case["iterations"] // 10), args.rounds,
                          setup=torch.set_flush_denormal)  # fmt: skip
        print(f"| {name} | {rates[False]:.2f} | {rates[True]:.2f} | {rates[True] / rates[False]:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
