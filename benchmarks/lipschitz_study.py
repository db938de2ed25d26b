"""Certified robustness at equal CPU time: LipConvNet on CIFAR-10 with each 1-Lipschitz convolution.

Four phases, each a subcommand; every run is ``unitary-lowrank train cifar10``
(:func:`unitary_lowrank.tasks.train_cifar10.run`) with one thread, the same
budget of CPU time (of its own process) per run, **one run at a time** by
default (``--workers``; runs that share the machine slow each other down in CPU
time too, through caches and memory bandwidth):

``calibrate``
    each variant alone for ``--calibration-minutes`` (default 0.5): its wall
    seconds per iteration, the yardstick of the phases below;
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

After each sweep or study run, its wall seconds per iteration are compared with
the calibration's: a run more than 25 % off is flagged (its summary kept as
``NAME.flagged.json``) and run again, once; the summary records the
comparison (``timing_check``), and every summary the machine's load average at
the start and end of training.

::

    python benchmarks/lipschitz_study.py calibrate --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/lipschitz_study.py sweep     --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/lipschitz_study.py study     --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/lipschitz_study.py report
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from unitary_lowrank.tasks import checkpoints
from unitary_lowrank.tasks.train_cifar10 import RADII, CifarConfig, run, run_name

#: The convolutions compared: label → (conv, method, rank[, step options other than the optimizer's defaults]).
VARIANTS: dict[str, tuple] = {
    "projUNN-T, k = 1": ("projunn", "transport", 1),
    "projUNN-T, k = 4": ("projunn", "transport", 4),
    "projUNN-D, k = 1": ("projunn", "project", 1),
    "projUNN-D, k = 4": ("projunn", "project", 4),
    "dense Riemannian": ("projunn", "dense", 1),
    "Cayley-FFT": ("cayley", "transport", 1),
    "AOL": ("aol", "transport", 1),
    "deel-torchlip": ("torchlip", "transport", 1),
    # not the defaults: the subspace sketch (warm-started basis) and error feedback (the sketch's residual kept)
    "projUNN-T, k = 1, subspace sketch": ("projunn", "transport", 1, {"sketch": "subspace"}),
    "projUNN-T, k = 1, error feedback": ("projunn", "transport", 1, {"error_feedback": True}),
}
#: The step options a variant leaves at the optimizer's defaults.
DEFAULT_STEP = {"sketch": "randomized", "error_feedback": False}
#: Which variants the sweep tunes; the others take their rank-1, default-step sibling's learning rate.
SWEPT = {
    "projUNN-T, k = 1": "projUNN-T, k = 1",
    "projUNN-T, k = 4": "projUNN-T, k = 1",
    "projUNN-D, k = 1": "projUNN-D, k = 1",
    "projUNN-D, k = 4": "projUNN-D, k = 1",
    "dense Riemannian": "dense Riemannian",
    "Cayley-FFT": "Cayley-FFT",
    "AOL": "AOL",
    "deel-torchlip": "deel-torchlip",
    "projUNN-T, k = 1, subspace sketch": "projUNN-T, k = 1",
    "projUNN-T, k = 1, error feedback": "projUNN-T, k = 1",
}
LEARNING_RATES = (1e-3, 3e-3)


#: A run whose wall seconds per iteration differ from its solo calibration by more than this is run again.
DEVIATION = 0.25


def one(
    config: CifarConfig,
    calibration: dict[str, float] | None = None,
    variants: dict[str, tuple] = VARIANTS,
) -> dict | None:
    """One run; a run whose summary is already in its folder is not repeated, a failing one is reported.

    A run stopped before its end (Ctrl-C, a kill: its checkpoint is not marked finished) continues
    from its checkpoint, and its summary says from which iteration (``resumed_from``). With
    ``calibration`` (label of ``variants`` → solo wall seconds per iteration), a run more than
    :data:`DEVIATION` off its calibration is flagged and run again, once; the seconds per iteration
    of a resumed run are over all its iterations, before and after the stop.
    """
    path = Path(config.out) / f"{run_name(config)}.json"
    done, resume = checkpoints.progress_of(config.out, run_name(config))
    if done is not None:
        return None
    for attempt in (1, 2):
        try:
            summary = run(config, progress=False, resume=resume if attempt == 1 else None)
        except Exception as err:  # one bad run must not stop the others
            print(f"{run_name(config)}: failed: {type(err).__name__}: {err}", flush=True)
            return None
        label = label_of(summary, variants)
        if calibration is None or label not in calibration:
            return summary
        solo = calibration[label]
        deviation = summary["seconds_per_iteration"] / solo - 1
        flagged = abs(deviation) > DEVIATION
        summary["timing_check"] = {"solo_seconds_per_iteration": solo, "deviation": deviation, "flagged": flagged,
                                   "attempt": attempt, "resumed_from": summary.get("resumed_from")}  # fmt: skip
        path.write_text(json.dumps(summary, indent=1))
        if not flagged or attempt == 2:
            return summary
        print(f"{summary['name']}: {100 * deviation:+.0f} % off its solo calibration: flagged, run again", flush=True)
        path.rename(path.with_suffix(".flagged.json"))
    return summary


def calibration_of(
    out: Path, variants: dict[str, tuple] = VARIANTS, pattern: str = "cifar10-*.json"
) -> dict[str, float] | None:
    """label → wall seconds per iteration of the solo calibration runs in ``out/calibration`` (None if none)."""
    runs = read(out / "calibration", pattern)
    return {label_of(s, variants): s["seconds_per_iteration"] for s in runs} or None


def spec(variant: tuple) -> tuple[str, str, int, dict]:
    """(conv, method, rank, step options) of a variant, the options completed with :data:`DEFAULT_STEP`."""
    conv, method, rank, *options = variant
    return conv, method, rank, {**DEFAULT_STEP, **(options[0] if options else {})}


def config_for(label: str, **options) -> CifarConfig:
    conv, method, rank, step = spec(VARIANTS[label])
    return CifarConfig(conv=conv, method=method, rank=rank, **step, threads=1, eval_every=25, **options)


def label_of(summary: dict, variants: dict[str, tuple] = VARIANTS) -> str:
    """The label of ``variants`` whose (conv, method, rank, step options) the run's config has."""
    c = summary["config"]
    for label, variant in variants.items():
        conv, method, rank, step = spec(variant)
        if c["conv"] == conv and (
            conv != "projunn"
            or (
                c["method"] == method
                and c["rank"] == rank
                and all(c.get(key, DEFAULT_STEP[key]) == value for key, value in step.items())
            )
        ):
            return label
    raise KeyError(summary["name"])


def run_all(
    configs: list[CifarConfig],
    workers: int,
    calibration: dict[str, float] | None = None,
    variants: dict[str, tuple] = VARIANTS,
) -> list[dict]:
    if workers == 1:
        return [one(config, calibration, variants) for config in configs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(one, configs, [calibration] * len(configs), [variants] * len(configs)))


def read(folder: Path, pattern: str = "cifar10-*.json") -> list[dict]:
    """The run summaries (JSON) in ``folder``, each with the folder it came from (flagged runs left out)."""
    summaries = []
    for path in sorted(folder.glob(pattern)):
        if path.name.endswith(".flagged.json"):
            continue
        summary = json.loads(path.read_text())
        summary["_folder"] = folder
        summaries.append(summary)
    return summaries


def chosen_learning_rates(sweep: Path, variants: list[str]) -> dict[str, float]:
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
    missing = {SWEPT[label] for label in variants} - set(best)
    if missing:
        raise SystemExit(f"lipschitz_study: no sweep result for {sorted(missing)} in {sweep}; run the sweep first")
    return {label: best[SWEPT[label]][1] for label in variants}


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
        "| s/it forward+backward | s/it optimizer step | it/CPU-min | off solo (%) | load at start/end "
        "| peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"{statistics.mean(column('seconds_optimizer_step')):.3f} | {conditions(runs)} | "
            f"{max(column('peak_memory_mb')):.0f} |"
        )
    return "\n".join(lines)


def conditions(runs: list[dict]) -> str:
    """Iterations per CPU-minute, deviation from the solo calibration, load averages: one table cell each."""

    def each(values: list) -> str:
        return " / ".join(values) if values else "—"

    rates = [f"{s['iterations_per_cpu_minute']:.0f}" for s in runs if s.get("iterations_per_cpu_minute")]
    checks = [f"{100 * s['timing_check']['deviation']:+.0f}" for s in runs if s.get("timing_check")]
    loads = [
        f"{s['load_average']['start']:.1f}–{s['load_average']['end']:.1f}"
        for s in runs
        if s.get("load_average") and s["load_average"]["start"] is not None
    ]
    return f"{each(rates)} | {each(checks)} | {each(loads)}"


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
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["calibrate", "sweep", "study", "report"])
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="CIFAR-10 (see train cifar10)")
    parser.add_argument("--minutes", type=float, help="CPU minutes per run (default: sweep 2, study 6)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="study: seeds (default 0 1)")
    parser.add_argument("--holdout", type=int, default=5000, help="sweep: held-out training images (default 5000)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--width", type=int, default=16, help="LipConvNet width (default 16)")
    parser.add_argument("--lr", type=float, help="study: this learning rate for every variant instead of the sweep's")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (default 1: timings need it)")
    parser.add_argument("--calibration-minutes", type=float, default=0.5, help="calibrate: CPU minutes (default 0.5)")
    parser.add_argument("--out", default="docs/runs/cifar10", help="default docs/runs/cifar10")
    args = parser.parse_args()
    out = Path(args.out)
    variants = args.variants or list(VARIANTS)
    calibration = calibration_of(out)
    if args.phase == "calibrate":
        configs = [
            config_for(
                label, data=args.data, minutes=args.calibration_minutes, width=args.width, out=str(out / "calibration")
            )
            for label in variants
        ]
        run_all(configs, 1)
        calibration = calibration_of(out)
        print("\n".join(f"{label}: {seconds:.3f} s/it alone" for label, seconds in (calibration or {}).items()))
        return
    if calibration is None:
        print(f"lipschitz_study: no calibration in {out / 'calibration'}: runs are not checked (run calibrate first)")
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
        run_all(configs, args.workers, calibration)
    elif args.phase == "study":
        rates = dict.fromkeys(variants, args.lr) if args.lr else chosen_learning_rates(out / "sweep", variants)
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
        run_all(configs, args.workers, calibration)
    print(report(out))


if __name__ == "__main__":
    main()
