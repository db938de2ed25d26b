"""The paper's RNN tasks at CPU scale: every method side by side, over several seeds.

Runs ``unitary-lowrank train TASK --preset cpu`` for every task, method and
seed (two runs at a time, one thread each; with ``--workers 1`` one after the
other in this process; a run whose JSON summary already exists in the output
folder is not run again, and one stopped before its end — Ctrl-C, a kill —
continues from its checkpoint), then writes into the output
folder, per task, one plot with every method's test-loss curve (mean over the
seeds, the band from the lowest to the highest seed) and ``study.md``: a table
of the final test figures, mean and spread over the seeds::

    python benchmarks/rnn_study.py                                  # adding, copy, pmnist; 5 methods, 2 seeds
    python benchmarks/rnn_study.py --tasks adding --methods transport project --seeds 0
    python benchmarks/rnn_study.py --report-only                    # tables and plots from the runs present
    python benchmarks/rnn_study.py --preset quick --tasks copy adding --seeds 0 --out docs/runs/quick
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from unitary_lowrank.tasks import checkpoints
from unitary_lowrank.tasks.train_rnn import METHODS, PRESETS, Config, run, run_name

TAIL = 5  # evaluations averaged for the late figure of merit, which is noisy from one evaluation to the next

LABELS = {
    "transport": "projUNN-T (k = 1)",
    "project": "projUNN-D (k = 1)",
    "dense": "dense Riemannian step",
    "rnn": "unconstrained RNN",
    "lstm": "LSTM",
}


def one(config: Config) -> dict:
    """One run; one stopped before its end (a checkpoint not marked finished) continues where it stopped."""
    return run(config, progress=False, resume=checkpoints.progress_of(config.out, run_name(config))[1])


def finished(config: Config) -> bool:
    """The run's summary is there, and it did not stop early by Ctrl-C or a kill."""
    return checkpoints.progress_of(config.out, run_name(config))[0] is not None


def summaries_in(folder: Path) -> list[dict]:
    """The JSON summaries in ``folder``, each with the rows of its CSV log under ``"rows"``."""
    summaries = []
    for path in sorted(folder.glob("*.json")):
        summary = json.loads(path.read_text())
        summary["rows"] = list(csv.DictReader(open(folder / summary["log"])))
        summaries.append(summary)
    return summaries


def _curves(summaries: list[dict]) -> dict[str, list[list[dict]]]:
    by_method: dict[str, list[list[dict]]] = {}
    for s in summaries:
        by_method.setdefault(s["config"]["method"], []).append(s["rows"])
    return by_method


def plot(folder: Path, task: str, summaries: list[dict], preset: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metric_name = summaries[0]["metric_name"]
    keys = ("test_loss",) if metric_name == "test MSE" else ("test_loss", "metric")  # adding: the loss is the MSE
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    axes = axes[0]
    curves = sorted(_curves(summaries).items(), key=lambda m: METHODS.index(m[0]))
    for index, (method, runs) in enumerate(curves):
        length = min(len(rows) for rows in runs)
        steps = [int(r["step"]) for r in runs[0][:length]]
        for ax, key in zip(axes, keys, strict=True):
            values = np.array([[float(r[key]) for r in rows[:length]] for rows in runs])
            label = f"{LABELS[method]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
            ax.plot(steps, values.mean(0), color=f"C{index}", label=label)
            ax.fill_between(steps, values.min(0), values.max(0), color=f"C{index}", alpha=0.2, linewidth=0)
    axes[0].axhline(summaries[0]["baseline"], color="grey", linestyle="--", label="memoryless baseline")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("test loss" if len(keys) > 1 else "test loss (MSE)")
    if len(keys) > 1:
        axes[1].set_ylabel(metric_name)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}, --preset {preset} ({summaries[0]['note']}): mean over seeds, band = min to max", fontsize=10)
    fig.tight_layout()
    path = folder / f"{task}-methods.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(summaries: list[dict]) -> str:
    import numpy as np

    def spread(values: list[float], spec: str) -> str:
        if any(math.isnan(v) for v in values):
            return "NaN (diverged)"
        if min(values) == max(values):
            return format(values[0], spec)
        return f"{format(np.mean(values), spec)} ({format(min(values), spec)} – {format(max(values), spec)})"

    lines = [
        "| task | method | seeds | iterations | minutes per run | final test loss, mean (min – max) "
        f"| figure of merit, final | same, mean of the last {TAIL} evaluations | memoryless baseline "
        "| max unitarity error |",
        "|---|---|---:|---:|---:|---|---|---|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for s in summaries:
        groups.setdefault((s["task"], s["config"]["method"]), []).append(s)
    for (task, method), runs in sorted(groups.items(), key=lambda g: (g[0][0], METHODS.index(g[0][1]))):
        unitarity = [r["unitarity"] for r in runs if r["unitarity"] is not None]
        steps = spread([r["steps"] for r in runs], ".0f")
        minutes = spread([r["seconds"] / 60 for r in runs], ".1f")
        loss = spread([r["final_test_loss"] for r in runs], ".3g")
        metric = spread([r["final_metric"] for r in runs], ".4g")
        late = spread([float(np.mean([float(row["metric"]) for row in r["rows"][-TAIL:]])) for r in runs], ".4g")
        where = f"{task} ({runs[0]['note']})" if len(runs[0]["note"]) < 20 else task  # "T = 200", not the MNIST note
        lines.append(
            f"| {where} | {LABELS[method]} | {len(runs)} | {steps} | {minutes} | {loss} "
            f"| {runs[0]['metric_name']} {metric} | {late} | {runs[0]['baseline']:.3g} | "
            f"{f'{max(unitarity):.1e}' if unitarity else '—'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "quick"])
    parser.add_argument("--tasks", nargs="+", default=["adding", "copy", "pmnist"], choices=sorted(PRESETS["quick"]))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, help="iterations per run instead of the preset's (smoke runs)")
    parser.add_argument("--out", help="output folder (default docs/runs/PRESET)")
    parser.add_argument("--report-only", action="store_true", help="only tables and plots from the runs present")
    args = parser.parse_args(argv)
    root = Path(args.out or f"docs/runs/{args.preset}")
    if not args.report_only:
        configs = []
        for task in args.tasks:
            for seed in args.seeds:
                for method in args.methods:
                    settings = {**PRESETS[args.preset][task], "task": task, "method": method, "seed": seed}
                    if args.steps:
                        settings.update(steps=args.steps, eval_every=max(1, args.steps // 4))
                    config = Config(**settings, out=str(root / task), threads=1)
                    if not finished(config):
                        configs.append(config)
        with ProcessPoolExecutor(args.workers) if args.workers > 1 else nullcontext() as pool:
            for summary in pool.map(one, configs) if pool else map(one, configs):
                print(f"{summary['name']}: test loss {summary['final_test_loss']:.4g}, "
                      f"{summary['metric_name']} {summary['final_metric']:.4g}", flush=True)  # fmt: skip
    everything = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        summaries = summaries_in(folder)
        if summaries:
            plot(folder, folder.name, summaries, args.preset)
            everything += summaries
    text = table(everything)
    (root / "study.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
