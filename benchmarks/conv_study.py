"""The deep-CNN stability study: orthogonal (projUNN-T, projUNN-D, dense) against plain convolutions.

Runs ``unitary-lowrank train conv`` for every depth and method (two runs at a
time, one thread each, the same CPU-time budget per run; a run already in the
output folder is read back, one stopped before its end continues from its
checkpoint), then writes into
the output folder a table (``study.md``), the per-run logs, curves and JSON
summaries, and ``gradient-norms.png``: the norm of the gradient reaching each
layer's input, at initialization and after training, orthogonal vs plain::

    python benchmarks/conv_study.py                       # depths 8 32 128, 2 CPU-minutes a run
    python benchmarks/conv_study.py --depths 8 --minutes 0.5 --out /tmp/study
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from unitary_lowrank.tasks import checkpoints
from unitary_lowrank.tasks.train_conv import ConvConfig, run, run_name

METHODS = ("transport", "project", "dense", "plain")


def one(config: ConvConfig) -> dict:
    """One run: a finished one's summary is read back, one stopped before its end continues from its checkpoint."""
    summary, resume = checkpoints.progress_of(config.out, run_name(config))
    return summary if summary is not None else run(config, progress=False, resume=resume)


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({s["config"]["depth"] for s in summaries})
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.8), squeeze=False)
    colors = {"transport": "C0", "project": "C1", "dense": "C2", "plain": "C3"}
    for ax, depth in zip(axes[0], depths, strict=True):
        for s in summaries:
            if s["config"]["depth"] != depth:
                continue
            method = s["config"]["method"]
            layers = range(1, depth + 1)
            ax.semilogy(layers, s["gradient_norm_per_layer_init"], ":", color=colors[method], label=f"{method}, init")
            ax.semilogy(layers, s["gradient_norm_per_layer_end"], "-", color=colors[method], label=f"{method}, trained")
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("layer (input side = 1)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("‖∂loss/∂(layer input)‖")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Gradient reaching each layer: orthogonal convolutions (projUNN) vs plain nn.Conv2d", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(summaries: list[dict]) -> str:
    lines = [
        "| depth | method | iterations | test accuracy (best) | grad first/last, init | grad first/last, trained "
        "| max unitarity error |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries, key=lambda s: (s["config"]["depth"], METHODS.index(s["config"]["method"]))):
        unitarity = "—" if s["max_unitarity_error"] is None else f"{s['max_unitarity_error']:.1e}"
        lines.append(
            f"| {s['config']['depth']} | {s['config']['method']} | {s['steps']} | "
            f"{s['final_test_accuracy']:.3f} ({s['best_test_accuracy']:.3f}) | {s['first_over_last_init']:.3g} | "
            f"{s['first_over_last_end']:.3g} | {unitarity} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--minutes", type=float, default=2.0, help="CPU minutes per run (default 2)")
    parser.add_argument(
        "--minutes-deepest", type=float, help="CPU minutes for the deepest stack's runs (default: --minutes)"
    )
    parser.add_argument("--channels", type=int, default=8, help="channels of every layer (default 8)")
    parser.add_argument("--size", type=int, default=14, help="digits averaged down to size×size (default 14)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="docs/runs/conv")
    args = parser.parse_args()
    configs = [
        ConvConfig(
            depth=d,
            method=m,
            minutes=args.minutes_deepest if args.minutes_deepest and d == max(args.depths) else args.minutes,
            channels=args.channels,
            size=args.size,
            out=args.out,
            threads=1,
        )
        for d in args.depths
        for m in args.methods
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        summaries = list(pool.map(one, configs))
    out = Path(args.out)
    plot(summaries, out / "gradient-norms.png")
    text = table(summaries)
    (out / "study.md").write_text(text + "\n")
    (out / "study.json").write_text(json.dumps(summaries, indent=1))
    print(text)


if __name__ == "__main__":
    main()
