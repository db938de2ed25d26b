"""Which sketch should the optimizer use? Randomized vs subspace, with and without error feedback, on three tasks.

    python benchmarks/sketch_study.py fit                 # (c) fitting an orthogonal map: seconds per run
    python benchmarks/sketch_study.py rnn                 # (a) adding and copy, --preset cpu: ~15 CPU-minutes a run
    python benchmarks/sketch_study.py cifar --data PATH   # (b) LipConvNet on CIFAR-10: 300 iterations a run
    python benchmarks/sketch_study.py cifar --data PATH --rank auto --variants randomized   # the default step
    python benchmarks/sketch_study.py rnn --rank auto --variants randomized                 # the same, adding and copy
    python benchmarks/sketch_study.py report              # docs/runs/sketch/study.md from the runs present

Every run is one thread; ``rnn`` and ``cifar`` run two at a time (``--workers``)
and skip runs whose summary exists. Each summary records the CPU seconds of
its training and the machine's load average at its start and end, so per-CPU-
second figures can be judged. Learning per iteration is what the defaults
are chosen on: it does not depend on the machine's load.

(c) The map: ``W`` (N×N, Haar) learns ``Y = T X`` for a Haar ``T`` and Gaussian
data ``X`` (N×4N), loss ``‖W X − Y‖² / ‖Y‖²``; ``ProjUNN(Adam, lr 2e-2)``,
projUNN-T, ranks 1 and 4, N = 48 and 128, 300 steps, seeds 0–2.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from unitary_lowrank.cli._options import rank_or_auto

VARIANTS = {  # name → (sketch, error feedback)
    "randomized": ("randomized", False),
    "subspace": ("subspace", False),
    "randomized + EF": ("randomized", True),
    "subspace + EF": ("subspace", True),
}
OUT = Path("docs/runs/sketch")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- (c) fitting an orthogonal map --------------------------------------------------------------------------


def fit(n: int, rank: int, sketch: str, error_feedback: bool, seed: int, steps: int = 300) -> dict:
    import torch
    from unitary_lowrank.backends.torch import ProjUNN, haar_

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(haar_(torch.empty(n, n, dtype=torch.float64), generator=generator))
    T = haar_(torch.empty(n, n, dtype=torch.float64), generator=generator)
    X = torch.randn(n, 4 * n, dtype=torch.float64, generator=generator)
    Y = T @ X
    scale = float(Y.pow(2).sum())
    opt = ProjUNN(
        torch.optim.Adam([{"params": [W], "unitary": True}], lr=2e-2),
        rank=rank,
        sketch=sketch,
        error_feedback=error_feedback,
        seed=seed,
    )
    losses, started = [], time.process_time()
    for _ in range(steps):
        opt.zero_grad()
        loss = (W @ X - Y).pow(2).sum() / scale
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return {"losses": losses, "cpu_seconds": time.process_time() - started}


def run_fit(args: argparse.Namespace) -> None:
    results = []
    for n in (48, 128):
        for rank in (1, 4):
            for name, (sketch, error_feedback) in VARIANTS.items():
                for seed in range(3):
                    result = fit(n, rank, sketch, error_feedback, seed)
                    results.append({"n": n, "rank": rank, "variant": name, "seed": seed, **result})
                    print(f"fit N={n} k={rank} {name:16} seed {seed}: loss {result['losses'][-1]:.3g}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fit.json").write_text(json.dumps({"load": _load(), "results": results}))


# -- (a) adding and copy, --preset cpu ------------------------------------------------------------------------


def _rnn_one(task: str, name: str, seed: int, rank: int | str = 1) -> str:
    from unitary_lowrank.tasks.train_rnn import PRESETS, Config, run

    sketch, error_feedback = VARIANTS[name]
    load = _load()
    settings = {**PRESETS["cpu"][task], "sketch": sketch, "error_feedback": error_feedback, "seed": seed, "rank": rank}
    config = Config(task=task, **settings, threads=1, out=str(OUT / "rnn"))
    summary = run(config, progress=False)
    path = OUT / "rnn" / f"{summary['name']}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "load_start": load, "load_end": _load()}, indent=1))
    return f"{summary['name']}: {summary['metric_name']} {summary['final_metric']:.4g}"


def _rnn_name(task: str, name: str, seed: int, rank: int | str = 1) -> str:
    sketch, error_feedback = VARIANTS[name]
    suffix = ("" if sketch == "randomized" else f"-{sketch}") + ("-ef" if error_feedback else "")
    return f"{task}-transport-k{rank}{suffix}" + (f"-seed{seed}" if seed else "")


def run_rnn(args: argparse.Namespace) -> None:
    jobs = [
        (task, name, seed, args.rank)
        for seed in args.seeds
        for task in ("adding", "copy")
        for name in args.variants
        if not (OUT / "rnn" / f"{_rnn_name(task, name, seed, args.rank)}.json").exists()
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(_rnn_one, *zip(*jobs, strict=True)) if jobs else []:
            print(line, flush=True)


# -- (b) LipConvNet on CIFAR-10 -----------------------------------------------------------------------------------


def _cifar_one(data: str, name: str, seed: int, iterations: int, rank: int | str = 1) -> str:
    from unitary_lowrank.tasks.train_cifar10 import CifarConfig, run

    sketch, error_feedback = VARIANTS[name]
    load = _load()
    config = CifarConfig(
        data=data,
        sketch=sketch,
        error_feedback=error_feedback,
        rank=rank,
        seed=seed,
        minutes=None,
        epochs=1,
        limit=128 * iterations,  # one epoch of this many batches: every variant sees the same images in order
        threads=1,
        eval_every=50,
        out=str(OUT / "cifar"),
    )
    summary = run(config, progress=False)
    path = OUT / "cifar" / f"{summary['name']}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "load_start": load, "load_end": _load()}, indent=1))
    certified = summary["certified_accuracy"] or {}
    return f"{summary['name']}: clean {summary['test_accuracy']:.3f}, certified {certified.get('36/255')}"


def run_cifar(args: argparse.Namespace) -> None:
    from unitary_lowrank.tasks.cifar10 import load_cifar10

    load_cifar10(args.data)  # decode (and cache) once, before the workers start
    jobs = [(args.data, name, seed, args.iterations, args.rank) for seed in args.seeds for name in args.variants]
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(_cifar_one, *zip(*jobs, strict=True)):
            print(line, flush=True)


# -- the report -----------------------------------------------------------------------------------------------------


def _mean_spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3g} ({min(values):.3g} – {max(values):.3g})"


def report(args: argparse.Namespace) -> None:
    lines = ["# Sketch study: randomized vs subspace, with and without error feedback", ""]
    fit_file = OUT / "fit.json"
    if fit_file.exists():
        stored = json.loads(fit_file.read_text())
        lines += [
            "## (c) Fitting an orthogonal map (ProjUNN(Adam, lr 2e-2), projUNN-T, 300 steps, 3 seeds)",
            "",
            "Relative loss ‖W X − Y‖²/‖Y‖², mean (min – max) over seeds; CPU ms per step (whole training step).",
            "",
            "| N | k | variant | loss at step 100 | loss at step 300 | CPU ms / step |",
            "|---:|---:|---|---|---|---:|",
        ]
        groups: dict[tuple, list[dict]] = {}
        for r in stored["results"]:
            groups.setdefault((r["n"], r["rank"], r["variant"]), []).append(r)
        for (n, rank, variant), runs in groups.items():
            at100 = [r["losses"][99] for r in runs]
            final = [r["losses"][-1] for r in runs]
            ms = statistics.mean(1e3 * r["cpu_seconds"] / len(r["losses"]) for r in runs)
            lines.append(f"| {n} | {rank} | {variant} | {_mean_spread(at100)} | {_mean_spread(final)} | {ms:.2f} |")
        lines += ["", f"Load average at the end: {stored['load']}.", ""]
    for part, title in (("rnn", "(a) Adding and copy, --preset cpu"), ("cifar", "(b) LipConvNet on CIFAR-10")):
        folder = OUT / part
        summaries = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []
        if not summaries:
            continue
        if part == "rnn":
            note = "Final test loss and figure of merit, one seed; wall-clock seconds of the run (two runs at a time)."
            header = "| run | iterations | seconds | final figure | load start → end |"
        else:
            note = (
                "300 iterations (batch 128) from the same images in the same order; final training loss (running "
                "mean), clean and certified test accuracy; CPU seconds of training (two runs at a time)."
            )
            header = "| run | iterations | CPU s | final figure | load start → end |"
        lines += [f"## {title}", "", note, "", header, "|---|---:|---:|---|---|"]
        for s in summaries:
            if part == "rnn":
                figure = f"{s['metric_name']} {s['final_metric']:.4g}, test loss {s['final_test_loss']:.3g}"
                iterations, seconds = s["steps"], s["seconds"]
            else:
                train_loss = float(list(csv.DictReader(open(folder / s["log"])))[-1]["train_loss"])
                certified = (s["certified_accuracy"] or {}).get("36/255")
                figure = f"train loss {train_loss:.3f}, clean {s['test_accuracy']:.3f}, certified (36/255) {certified}"
                iterations, seconds = s["iterations"], s["cpu_seconds"]
            lines.append(
                f"| {s['name']} | {iterations} | {seconds:.0f} | {figure} | {s['load_start']} → {s['load_end']} |"
            )
        lines.append("")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "study.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fit").set_defaults(run=run_fit)
    rnn = commands.add_parser("rnn")
    rnn.add_argument("--seeds", type=int, nargs="+", default=[0])
    rnn.add_argument("--workers", type=int, default=2)
    rnn.add_argument("--rank", type=rank_or_auto, default=1, help="the sketch's rank: 1 (the study's) or 'auto'")
    rnn.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    rnn.set_defaults(run=run_rnn)
    cifar = commands.add_parser("cifar")
    cifar.add_argument("--data", required=True)
    cifar.add_argument("--seeds", type=int, nargs="+", default=[0])
    cifar.add_argument("--iterations", type=int, default=300)
    cifar.add_argument("--workers", type=int, default=2)
    cifar.add_argument("--rank", type=rank_or_auto, default=1, help="the sketch's rank: 1 (the study's) or 'auto'")
    cifar.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    cifar.set_defaults(run=run_cifar)
    commands.add_parser("report").set_defaults(run=report)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
