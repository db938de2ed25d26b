"""The paper's ResNet9 on CIFAR-10 at a CPU budget: projUNN-T, projUNN-D, Cayley-FFT and plain convolutions.

Every run is ``unitary-lowrank train cifar10 --preset cpu`` (ResNet9 at width
16, Adam lr 1e-3, 5 CPU-minutes of training, one thread) with one convolution
and one seed, under the same control as ``lipschitz_study.py``: **one run at a
time** by default, each variant first timed alone (``calibrate``, 30
CPU-seconds), and a study run whose wall seconds per iteration are more than
25 % off its calibration flagged and run again, once. ``report`` writes
``study.md`` (table) and ``curves.png`` (test accuracy against CPU time) in the
output folder::

    python benchmarks/resnet9_study.py calibrate --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/resnet9_study.py study     --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/resnet9_study.py report
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import lipschitz_study  # one run (skipped if done, reported if it fails), a pool of them, reading summaries

from unitary_lowrank.tasks.train_cifar10 import PRESETS, CifarConfig

#: label → (conv, method, rank); the last two are not in the paper: they tell the rank's part from the layers'
VARIANTS = {
    "projUNN-T (k = 1)": ("projunn", "transport", 1),
    "projUNN-D (k = 1)": ("projunn", "project", 1),
    "Cayley-FFT": ("cayley", "transport", 1),
    "plain (unconstrained)": ("plain", "transport", 1),
    "projUNN-T (k = 8)": ("projunn", "transport", 8),
    "dense Riemannian (same layers)": ("projunn", "dense", 1),
}
#: The paper's Table (ResNet9, CIFAR-10, full training on a GPU; Kiani et al. 2022, §5).
PUBLISHED = {
    "projUNN-T (k = 1)": 80.75,
    "projUNN-D (k = 1)": 82.06,
    "Cayley-FFT": 81.70,
    "plain (unconstrained)": 92.26,
}


def label_of(summary: dict) -> str:
    return lipschitz_study.label_of(summary, VARIANTS)


PATTERN = "cifar10-resnet9-*.json"


def read(folder: Path) -> list[dict]:
    return lipschitz_study.read(folder, PATTERN)


def table(summaries: list[dict]) -> str:
    lines = [
        "| convolution | seeds | iterations | test accuracy (ours, %) | gap to plain (points) | paper (%) "
        "| paper gap | s/it forward+backward | s/it optimizer step | it/CPU-min | off solo (%) | load at start/end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    means = {}
    for label in VARIANTS:
        runs = [s for s in summaries if label_of(s) == label]
        if runs:
            means[label] = statistics.mean(100 * s["test_accuracy"] for s in runs)
    plain = means.get("plain (unconstrained)")
    for label in VARIANTS:
        runs = [s for s in summaries if label_of(s) == label]
        if not runs:
            continue
        accuracies = [100 * s["test_accuracy"] for s in runs]
        shown = f"{means[label]:.1f}" + (f" ± {statistics.stdev(accuracies):.1f}" if len(runs) > 1 else "")
        gap = "—" if plain is None or label.startswith("plain") else f"{plain - means[label]:.1f}"
        published = f"{PUBLISHED[label]:.2f}" if label in PUBLISHED else "—"
        paper_gap = (
            f"{PUBLISHED['plain (unconstrained)'] - PUBLISHED[label]:.1f}"
            if label in PUBLISHED and not label.startswith("plain")
            else "—"
        )
        lines.append(
            f"| {label} | {len(runs)} | {' / '.join(str(s['iterations']) for s in runs)} | {shown} | {gap} | "
            f"{published} | {paper_gap} | "
            f"{statistics.mean(s['seconds_forward_backward'] for s in runs):.3f} | "
            f"{statistics.mean(s['seconds_optimizer_step'] for s in runs):.3f} | "
            f"{lipschitz_study.conditions(runs)} |"
        )
    return "\n".join(lines)


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, label in enumerate(VARIANTS):
        for j, s in enumerate(s for s in summaries if label_of(s) == label):
            with open(s["_folder"] / s["log"]) as log:
                rows = list(csv.DictReader(log))
            ax.plot(
                [float(r["cpu_seconds"]) / 60 for r in rows],
                [float(r["test_accuracy"]) for r in rows],
                "-o",
                markersize=3,
                color=f"C{i}",
                alpha=0.8,
                label=label if j == 0 else None,
            )
    ax.axhline(0.1, color="grey", linestyle="--", label="chance")
    ax.set_xlabel("training CPU minutes (one thread)")
    ax.set_ylabel("test accuracy")
    ax.set_title("ResNet9 (width 16) on CIFAR-10, --preset cpu", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path) -> str:
    summaries = read(out)
    text = table(summaries)
    if summaries:
        plot(summaries, out / "curves.png")
    (out / "study.md").write_text(text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["calibrate", "study", "report"])
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="CIFAR-10 (see train cifar10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="study: seeds (default 0 1)")
    parser.add_argument("--minutes", type=float, help="study: CPU minutes per run (default: the cpu preset's 5)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (default 1: timings need it)")
    parser.add_argument("--calibration-minutes", type=float, default=0.5, help="calibrate: CPU minutes (default 0.5)")
    parser.add_argument("--out", default="docs/runs/cifar10/resnet9", help="default docs/runs/cifar10/resnet9")
    args = parser.parse_args()
    out = Path(args.out)
    variants = args.variants or list(VARIANTS)
    settings = {**PRESETS["cpu"], "data": args.data, "threads": 1}

    def config(label: str, **options) -> CifarConfig:
        conv, method, rank = VARIANTS[label]
        return CifarConfig(**{**settings, **options}, conv=conv, method=method, rank=rank)

    if args.phase == "calibrate":
        configs = [
            # the test subset only shortens the final evaluation; the yardstick is the training's s/it
            config(label, minutes=args.calibration_minutes, test_limit=1000, out=str(out / "calibration"))
            for label in variants
        ]
        lipschitz_study.run_all(configs, 1, None, VARIANTS)
        calibration = lipschitz_study.calibration_of(out, VARIANTS, PATTERN) or {}
        print("\n".join(f"{label}: {seconds:.3f} s/it alone" for label, seconds in calibration.items()))
        return
    if args.phase == "study":
        calibration = lipschitz_study.calibration_of(out, VARIANTS, PATTERN)
        if calibration is None:
            print(f"resnet9_study: no calibration in {out / 'calibration'}: runs are not checked (run calibrate first)")
        configs = [
            config(label, seed=seed, out=str(out), **({"minutes": args.minutes} if args.minutes else {}))
            for seed in args.seeds
            for label in variants
        ]
        lipschitz_study.run_all(configs, args.workers, calibration, VARIANTS)
    print(report(out))


if __name__ == "__main__":
    main()
