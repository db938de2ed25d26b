"""Certified robustness at equal CPU time: LipConvNet on CIFAR-10 with each 1-Lipschitz convolution.

Three phases, each a subcommand; every run is ``unitary-lowrank train cifar10``
(:func:`unitary_lowrank.tasks.train_cifar10.run`) with one thread, two runs at a
time, the same budget of CPU time (of its own process) per run:

``sweep``
    the learning rate of each convolution, chosen on held-out training images
    (never the test set): every candidate trains on the rest of the training
    set and is scored by certified accuracy at ε = 36/255 on the held-out ones;
``study``
    every convolution at its chosen learning rate, for each seed, on the whole
    training set, scored on the test set;
``report``
    the tables (``study.md``) and plots (certified accuracy against ε, clean
    accuracy against CPU time) from the JSON summaries already written.

::

    python benchmarks/lipschitz_study.py sweep  --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/lipschitz_study.py study  --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/lipschitz_study.py report
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from unitary_lowrank.tasks.train_cifar10 import RADII, CifarConfig, run, run_name

#: The convolutions compared: label → (conv, method, rank).
VARIANTS = {
    "projUNN-T, k = 1": ("projunn", "transport", 1),
    "projUNN-T, k = 4": ("projunn", "transport", 4),
    "projUNN-D, k = 1": ("projunn", "project", 1),
    "projUNN-D, k = 4": ("projunn", "project", 4),
    "dense Riemannian": ("projunn", "dense", 1),
    "Cayley-FFT": ("cayley", "transport", 1),
    "AOL": ("aol", "transport", 1),
}
#: Which variants the sweep tunes; the rank-4 variants take their rank-1 sibling's learning rate.
SWEPT = {
    "projUNN-T, k = 1": "projUNN-T, k = 1",
    "projUNN-T, k = 4": "projUNN-T, k = 1",
    "projUNN-D, k = 1": "projUNN-D, k = 1",
    "projUNN-D, k = 4": "projUNN-D, k = 1",
    "dense Riemannian": "dense Riemannian",
    "Cayley-FFT": "Cayley-FFT",
    "AOL": "AOL",
}
LEARNING_RATES = (1e-3, 3e-3)


def one(config: CifarConfig) -> dict | None:
    """One run; a run whose summary is already in its folder is not repeated, a failing one is reported."""
    if (Path(config.out) / f"{run_name(config)}.json").exists():
        return None
    try:
        return run(config, progress=False)
    except Exception as err:  # one bad run must not stop the others
        print(f"{run_name(config)}: failed: {type(err).__name__}: {err}", flush=True)
        return None


def config_for(label: str, **options) -> CifarConfig:
    conv, method, rank = VARIANTS[label]
    return CifarConfig(conv=conv, method=method, rank=rank, threads=1, eval_every=25, **options)


def label_of(summary: dict, variants: dict[str, tuple[str, str, int]] = VARIANTS) -> str:
    """The label of ``variants`` whose (conv, method, rank) the run's config has."""
    c = summary["config"]
    for label, (conv, method, rank) in variants.items():
        if c["conv"] == conv and (conv != "projunn" or (c["method"] == method and c["rank"] == rank)):
            return label
    raise KeyError(summary["name"])


def run_all(configs: list[CifarConfig], workers: int) -> list[dict]:
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(one, configs))


def read(folder: Path, pattern: str = "cifar10-*.json") -> list[dict]:
    """The run summaries (JSON) in ``folder``, each with the folder it came from."""
    summaries = []
    for path in sorted(folder.glob(pattern)):
        summary = json.loads(path.read_text())
        summary["_folder"] = folder
        summaries.append(summary)
    return summaries


def chosen_learning_rates(sweep: Path) -> dict[str, float]:
    """Per swept variant, the learning rate of best held-out certified accuracy at 36/255 (ties: the smaller)."""
    best: dict[str, tuple[float, float]] = {}
    for s in read(sweep):
        label = label_of(s)
        if SWEPT[label] != label:
            continue
        score = s["certified_accuracy"]["36/255"]
        lr = s["config"]["lr"]
        if label not in best or (score, -lr) > (best[label][0], -best[label][1]):
            best[label] = (score, lr)
    missing = {SWEPT[label] for label in VARIANTS} - set(best)
    if missing:
        raise SystemExit(f"lipschitz_study: no sweep result for {sorted(missing)} in {sweep}; run the sweep first")
    return {label: best[SWEPT[label]][1] for label in VARIANTS}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def sweep_table(summaries: list[dict]) -> str:
    lines = [
        "| convolution | learning rate | iterations | held-out clean | held-out certified 36/255 |",
        "|---|---|---|---|---|",
    ]
    for s in sorted(summaries, key=lambda s: (list(VARIANTS).index(label_of(s)), s["config"]["lr"])):
        lines.append(
            f"| {label_of(s)} | {s['config']['lr']:g} | {s['iterations']} | {100 * s['test_accuracy']:.1f} | "
            f"{100 * s['certified_accuracy']['36/255']:.1f} |"
        )
    return "\n".join(lines)


def study_table(summaries: list[dict]) -> str:
    lines = [
        "| convolution | lr | seeds | iterations | clean | certified 36/255 | 72/255 | 108/255 | max Lipschitz bound "
        "| s/it forward+backward | s/it optimizer step | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in VARIANTS:
        runs = [s for s in summaries if label_of(s) == label]
        if not runs:
            continue

        def column(key: str, runs: list[dict] = runs) -> list:
            return [s[key] for s in runs]

        certified = {eps: [s["certified_accuracy"][eps] for s in runs] for eps in RADII}
        lines.append(
            f"| {label} | {runs[0]['config']['lr']:g} | {len(runs)} | "
            f"{' / '.join(str(i) for i in column('iterations'))} | {spread(column('test_accuracy'))} | "
            + " | ".join(spread(certified[eps]) for eps in RADII)
            + f" | {max(column('lipschitz_bound')):.7f} | {statistics.mean(column('seconds_forward_backward')):.3f} | "
            f"{statistics.mean(column('seconds_optimizer_step')):.3f} | {max(column('peak_memory_mb')):.0f} |"
        )
    return "\n".join(lines)


def plot(summaries: list[dict], path: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, label in enumerate(VARIANTS):
        runs = [s for s in summaries if label_of(s) == label]
        if not runs:
            continue
        color = f"C{i}"
        radii = [0.0, *RADII.values()]
        for j, s in enumerate(runs):
            values = [s["test_accuracy"], *(s["certified_accuracy"][eps] for eps in RADII)]
            left.plot([255 * r for r in radii], values, "o-", color=color, alpha=0.8, label=label if j == 0 else None)
            with open(s["_folder"] / s["log"]) as log:
                rows = list(csv.DictReader(log))
            right.plot(
                [float(r["cpu_seconds"]) / 60 for r in rows],
                [float(r["test_accuracy"]) for r in rows],
                "-",
                color=color,
                alpha=0.8,
                label=label if j == 0 else None,
            )
    left.set_xlabel("ε × 255")
    left.set_ylabel("certified accuracy (ε = 0: clean)")
    left.set_title("Certified accuracy against radius, at the end", fontsize=10)
    right.set_xlabel("CPU minutes (one thread)")
    right.set_ylabel("clean test accuracy")
    right.set_title("Clean accuracy against training time", fontsize=10)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path) -> str:
    """Write ``study.md``, ``study.json`` and ``certified.png`` from the summaries in ``out`` and ``out/sweep``."""
    parts = []
    sweep = read(out / "sweep")
    if sweep:
        parts += ["## Learning-rate sweep (held-out training images)", "", sweep_table(sweep), ""]
    study = [s for s in read(out / "study")]
    if study:
        parts += ["## Equal CPU time, test set", "", study_table(study), ""]
        plot(study, out / "certified.png")
        (out / "study.json").write_text(
            json.dumps([{k: v for k, v in s.items() if k != "_folder"} for s in study], indent=1)
        )
    text = "\n".join(parts)
    (out / "study.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["sweep", "study", "report"])
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="CIFAR-10 (see train cifar10)")
    parser.add_argument("--minutes", type=float, help="CPU minutes per run (default: sweep 2, study 6)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="study: seeds (default 0 1)")
    parser.add_argument("--holdout", type=int, default=5000, help="sweep: held-out training images (default 5000)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--width", type=int, default=16, help="LipConvNet width (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--out", default="docs/runs/cifar10", help="default docs/runs/cifar10")
    args = parser.parse_args()
    out = Path(args.out)
    variants = args.variants or list(VARIANTS)
    if args.phase == "sweep":
        configs = [
            config_for(
                label,
                data=args.data,
                lr=lr,
                holdout=args.holdout,
                minutes=args.minutes or 2.0,
                width=args.width,
                out=str(out / "sweep"),
            )
            for label in dict.fromkeys(SWEPT[v] for v in variants)
            for lr in LEARNING_RATES
        ]
        run_all(configs, args.workers)
    elif args.phase == "study":
        rates = chosen_learning_rates(out / "sweep")
        configs = [
            config_for(
                label,
                data=args.data,
                lr=rates[label],
                seed=seed,
                minutes=args.minutes or 6.0,
                width=args.width,
                out=str(out / "study"),
            )
            for seed in args.seeds
            for label in variants
        ]
        run_all(configs, args.workers)
    print(report(out))


if __name__ == "__main__":
    main()
