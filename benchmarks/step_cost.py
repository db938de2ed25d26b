"""The optimizer step against the forward + backward it serves: the targets of the stateful-step issue (27).

    python benchmarks/step_cost.py [--repeats 7] [--json out.json]

One thread (``torch.set_num_threads(1)``). For each case the contenders run
interleaved, round by round, and the median over rounds is reported, so that
a burst of load hits all of them alike:

- ``LipConvNet(3, 10, 32, 16, 5)``, batch 128: ``ProjUNN(Adam, rank=R)`` step / forward + backward;
- ``UnitaryConv2d(c, c, s)``, batch 64, c = 16, s = 32 and c = 64, s = 8: step / forward + backward;
- ``Linear(1024)``, batch 64: a whole training step with ``ProjUNN(Adam, rank=R)`` / with plain Adam.

``R`` is ``--rank``: ``auto`` (the default step's rule, per weight) or an integer.

Each ``ProjUNN`` case runs with every sketch given (``--sketches``, default the
randomized range finder and the subspace iteration), so the table shows what
the choice of sketch costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d, haar_

from unitary_lowrank.cli._options import rank_or_auto
from unitary_lowrank.tasks.models.lipconvnet import LipConvNet

TARGETS = {"lipconvnet": 0.1, "conv c=16 s=32": 0.5, "conv c=64 s=8": 0.5, "linear 1024": 1.3}


def seconds(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def interleaved(contenders: dict[str, Callable[[], object]], calls: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each contender, measured in alternation (after a warm-up of each)."""
    for function in contenders.values():
        seconds(function, 2)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            times[name].append(seconds(function, calls))
    return {name: statistics.median(values) for name, values in times.items()}


def model_case(model: torch.nn.Module, x: torch.Tensor, sketches: list[str], rank: int | str, calls: int, repeats: int):
    """Forward + backward of ``model`` on ``x``, and one ``ProjUNN(Adam)`` step per sketch, on stored gradients."""
    params = model.unitary_parameters() if hasattr(model, "unitary_parameters") else list(model.parameters())
    others = [p for p in model.parameters() if all(p is not q for q in params)]

    def forward_backward() -> None:
        model.zero_grad()
        model(x).pow(2).sum().backward()

    forward_backward()
    grads = {id(p): p.grad.clone() for p in model.parameters()}
    contenders: dict[str, Callable[[], object]] = {"forward + backward": forward_backward}
    for sketch in sketches:
        groups = [{"params": params, "unitary": True, "rank": rank}] + ([{"params": others}] if others else [])
        opt = ProjUNN(torch.optim.Adam(groups, lr=1e-4), rank=rank, sketch=sketch)

        def step(opt=opt) -> None:
            for p in model.parameters():
                p.grad = grads[id(p)]
            opt.step()

        contenders[f"step, {sketch}"] = step
    return interleaved(contenders, calls, repeats)


def linear_case(sketches: list[str], rank: int | str, calls: int, repeats: int) -> dict[str, float]:
    """A whole training step of ``Linear(1024)`` (batch 64): ``ProjUNN(Adam, rank=rank)`` against plain Adam."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1024, generator=generator)
    contenders: dict[str, Callable[[], object]] = {}
    for name in ["adam", *sketches]:
        layer = torch.nn.Linear(1024, 1024, bias=False)
        haar_(layer.weight.data, generator=torch.Generator().manual_seed(1))
        base = torch.optim.Adam([{"params": [layer.weight], "unitary": name != "adam"}], lr=1e-4)
        opt = base if name == "adam" else ProjUNN(base, rank=rank, sketch=name)

        def training_step(layer=layer, opt=opt) -> None:
            opt.zero_grad()
            layer(x).pow(2).sum().backward()
            opt.step()

        contenders["Adam" if name == "adam" else f"ProjUNN(Adam), {name}"] = training_step
    return interleaved(contenders, calls, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the interleaved measurement")
    parser.add_argument("--sketches", nargs="+", default=["randomized", "subspace"])
    parser.add_argument(
        "--rank", type=rank_or_auto, default="auto", help="the sketch's rank: auto (default) or an integer"
    )
    parser.add_argument("--json", help="also write the medians here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    results: dict[str, dict[str, float]] = {}

    def say(case: str) -> None:  # progress on stderr: the table goes to stdout
        print(f"measuring {case} ({args.repeats} rounds) ...", file=sys.stderr, flush=True)

    say("lipconvnet")
    model = LipConvNet(3, 10, 32, 16, 5, generator=generator)
    results["lipconvnet"] = model_case(
        model, torch.randn(128, 3, 32, 32, generator=generator), args.sketches, args.rank, 1, args.repeats
    )
    for channels, size in ((16, 32), (64, 8)):
        say(f"conv c={channels} s={size}")
        layer = UnitaryConv2d(channels, size, generator=generator)
        x = torch.randn(64, channels, size, size, generator=generator)
        results[f"conv c={channels} s={size}"] = model_case(layer, x, args.sketches, args.rank, 3, args.repeats)
    say("linear 1024")
    results["linear 1024"] = linear_case(args.sketches, args.rank, 5, args.repeats)

    print(f"{'case':18} {'contender':28} {'ms':>8} {'ratio':>7}  target")
    for case, times in results.items():
        baseline = times.get("forward + backward", times.get("Adam"))
        for name, value in times.items():
            ratio = value / baseline
            mark = (
                ""
                if name in ("forward + backward", "Adam")
                else f"≤ {TARGETS[case]}: " + ("met" if ratio <= TARGETS[case] else "missed")
            )
            print(f"{case:18} {name:28} {1e3 * value:8.2f} {ratio:7.2f}  {mark}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
