"""Markdown tables for the docs from the JSON files that ``bench`` and ``train`` write.

python benchmarks/report.py bench docs/bench.json          # performance table
python benchmarks/report.py runs runs/*.json               # experiment results
"""

from __future__ import annotations

import json
import sys


def bench_table(path: str) -> str:
    data = json.load(open(path))
    lines = [
        "| op | backend | dtype | shape | k | median ms | floor ms | step / floor | polar / step | expm / step "
        "| torch param. / step | column-major / row-major |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(x, spec):
        return "—" if x is None else format(x, spec)

    for r in data["rows"]:
        if r["batch"]:
            shape = f"({r['batch']}, {r['n']}, {r['n']})"
        else:
            shape = str(r["n"]) if r["p"] == r["n"] else f"{r['n']}×{r['p']}"
        if r.get("layout") == "F":
            shape += " column-major"
        op = "training step" if r["op"] == "train-projunn" else r["op"]
        lines.append(
            f"| {op} | {r['backend']} | {r['dtype']} | {shape} | {r['k']} | {fmt(r['median_ms'], '.2f')} | "
            f"{fmt(r['floor_ms'], '.2f')} | {fmt(r['ratio_to_floor'], '.2f')} | "
            f"{fmt(r['polar_over_step'], '.0f')} | {fmt(r['expm_over_step'], '.0f')} | "
            f"{fmt(r.get('torch_orthogonal_over_step'), '.3g')} | {fmt(r.get('over_row_major'), '.2f')} |"
        )
    if data.get("memory"):
        lines += ["", "| in-place step (NumPy) | dtype | N | k | extra memory / (N k) |", "|---|---|---:|---:|---:|"]
        for m in data["memory"]:
            lines.append(f"| {m['op']} | {m['dtype']} | {m['n']} | {m['k']} | {m['extra_over_Nk']:.2f} |")
    machine = ", ".join(f"{k}: {v}" for k, v in data["machine"].items())
    return "\n".join(lines) + f"\n\nMachine — {machine}\n"


def runs_table(paths: list[str]) -> str:
    lines = [
        "| run | task | iterations | wall time | final test loss | memoryless baseline | figure of merit | unitarity |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for path in paths:
        s = json.load(open(path))
        unitarity = "—" if s["unitarity"] is None else f"{s['unitarity']:.1e}"
        lines.append(
            f"| {s['name']} | {s['task']} ({s['note']}) | {s['steps']} | {s['seconds'] / 60:.1f} min | "
            f"{s['final_test_loss']:.4g} | {s['baseline']:.4g} | {s['metric_name']} {s['final_metric']:.4g} | "
            f"{unitarity} |"
        )
    return "\n".join(lines) + "\n"


def curves(output: str, paths: list[str]) -> None:
    """One plot of test loss against iteration for several runs (their JSON summaries)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    baseline = None
    for path in paths:
        summary = json.load(open(path))
        rows = list(csv.DictReader(open(summary["log"])))
        ax.plot([int(r["step"]) for r in rows], [float(r["test_loss"]) for r in rows], label=summary["name"])
        baseline = summary["baseline"]
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label=f"memoryless baseline {baseline:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("test loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    kind, *paths = sys.argv[1:]
    if kind == "curves":
        curves(paths[0], paths[1:])
    else:
        print(bench_table(paths[0]) if kind == "bench" else runs_table(paths))
