"""``docs/peers.md`` and its plots from the peer study's results (``docs/runs/peers``).

    python benchmarks/peer_report.py        # or: python benchmarks/peer_study.py report

Per task: the test metric against seconds and against steps for every method
(seed 0), a table (learning rate and how it was chosen, steps, median step
time, peak memory, final test metric on each seed, time to each target,
unitarity error, timing check), and for the tasks at N ≥ 1024 the comparison
the study is for: the time projUNN's best setting took to reach each peer's
final metric, as a fraction of the time the peer took. The findings written
by hand (``docs/runs/peers/findings.md``) are placed at the top.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from peer_study import BUDGETS, IMAGES, OUT, PAGE, chosen_rate, median_step, too_slow
from peers import METHODS

#: Tasks whose projUNN-against-peer comparison is tabulated (the sizes the method is for).
LARGE = ("rotation-1024", "rotation-1024-so", "rotation-4096", "adding-512", "subspace-4096x256", "unitary-1024")


def _results(task: str, kind: str) -> dict[str, dict[int, dict]]:
    """method → seed → result, for the study's runs of ``task`` (not the flagged first attempts)."""
    found: dict[str, dict[int, dict]] = {}
    for path in sorted((OUT / kind / task).glob("*-seed*.json")):
        if path.name.endswith(".flagged.json"):
            continue
        method, seed = path.stem.rsplit("-seed", 1)
        found.setdefault(method, {})[int(seed)] = json.loads(path.read_text())
    return found


def _calibration(task: str, method: str) -> dict | None:
    path = OUT / "calibration" / task / f"{method}.json"
    return json.loads(path.read_text()) if path.exists() else None


def time_to(result: dict, target: float) -> float:
    """Timed seconds until the test metric first reached ``target`` (NaN: never, within the run)."""
    for point in result.get("curve", []):
        if point["test"] <= target:
            return point["seconds"]
    return math.nan


def final(result: dict | None) -> float:
    if not result or not result.get("curve") or result["status"] == "diverged":
        return math.nan
    return result["curve"][-1]["test"]


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}g}"


def _seconds(x: float) -> str:
    return "—" if math.isnan(x) else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def plot(task: str, runs: dict[str, dict[int, dict]], metric_name: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (by_time, by_step) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    colors = plt.get_cmap("tab20")
    for i, method in enumerate(m for m in METHODS if m in runs):
        result = runs[method].get(0)
        if not result or not result.get("curve"):
            continue
        curve = result["curve"]
        family = METHODS[method].family
        style = {"projunn": "-", "peer": "--", "reference": ":", "prototype": "-."}[family]
        label = METHODS[method].label
        for axis, key in ((by_time, "seconds"), (by_step, "step")):
            xs = [max(p[key], 1e-3 if key == "seconds" else 0.5) for p in curve]
            axis.plot(xs, [p["test"] for p in curve], style, color=colors(i % 20), label=label, lw=1.4, marker=".",
                      markersize=3)  # fmt: skip
    for axis, name in ((by_time, "timed seconds (one thread)"), (by_step, "optimizer steps")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(name)
        axis.grid(True, which="both", alpha=0.3)
    by_time.set_ylabel(metric_name)
    by_step.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.suptitle(f"{task}: seed 0, each method at its chosen learning rate")
    figure.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"peers-{task}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _timing_note(result: dict) -> str:
    check = result.get("timing_check")
    if result["status"] == "stopped":
        return f"stopped at {result['limit']:.0f} s"
    if not check or math.isnan(check["deviation"]):
        return "not checked"
    note = f"{100 * check['deviation']:+.0f} %"
    return note + (" (re-run)" if check["attempt"] == 2 else "")


def task_section(task: str) -> tuple[list[str], dict]:
    runs = _results(task, "study")
    if not runs:
        return [], {}
    any_result = next(iter(next(iter(runs.values())).values()))
    metric_name, targets = any_result["metric_name"], any_result["targets"]
    lines = [f"## {task}", "", f"{any_result['task_description']}; budget {BUDGETS[task]:g} timed seconds a run. "
             f"Metric: {metric_name} (lower is better).", ""]  # fmt: skip
    image = plot(task, runs, metric_name)
    if image:
        lines += [f"![{task}](img/{image.name})", ""]
    header = ["method", "lr", "steps", "ms/step", "peak MB", "test, seed 0", "seed 1"]
    header += [f"s to {t:g}" for t in targets] + ["max ∣WᴴW − I∣", "timing"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary: dict[str, dict] = {}
    for method in (m for m in METHODS if m in runs):
        seeds = runs[method]
        first = seeds.get(0) or next(iter(seeds.values()))
        lr, how = first["spec"]["lr"], chosen_rate(task, method)[1]  # the rate the run used, and how it was chosen
        calibration = _calibration(task, method)
        memory = calibration.get("peak_memory_mb", math.nan) if calibration else math.nan
        step = median_step(first)
        reach = [time_to(first, t) for t in targets]
        status = "" if first["status"] == "ok" else f" ({first['status']})"
        row = [METHODS[method].label + status, f"{lr:g}" + ("" if how == "swept" else f" ({how})"),
               str(first["steps"]), _fmt(1e3 * step), _fmt(memory), _fmt(final(seeds.get(0))),
               _fmt(final(seeds.get(1)))]  # fmt: skip
        row += [_seconds(x) for x in reach] + [_fmt(first.get("unitarity_error", math.nan), 2), _timing_note(first)]
        lines.append("| " + " | ".join(row) + " |")
        summary[method] = {"final": final(first), "seconds": first.get("seconds", math.nan), "result": first,
                           "seed1": final(seeds.get(1))}  # fmt: skip
    stopped = [m for m in METHODS if _calibration_stopped_note(task, m)]
    if stopped:
        lines += ["", "Not run: " + "; ".join(_calibration_stopped_note(task, m) for m in stopped) + "."]
    return lines + [""], summary


def _calibration_stopped_note(task: str, method: str) -> str:
    calibration = _calibration(task, method)
    if calibration and calibration["status"] == "stopped":
        return f"{METHODS[method].label} (no step finished within {calibration['limit']:.0f} s in calibration)"
    step = too_slow(task, method)
    if step is not None:
        return f"{METHODS[method].label} (one step took {step:.0f} s in calibration, more than the budget)"
    return ""


def _low_rank(method: str) -> bool:
    return METHODS[method].family == "projunn" and method != "projunn-dense"


def comparison(summaries: dict[str, dict]) -> list[str]:
    """projUNN's best setting against each peer: time to the peer's final metric / the peer's time."""
    lines = [
        "## projUNN's best setting against each peer (N ≥ 1024)",
        "",
        "For each task, *best* is the projUNN setting (not the dense step) with the lowest final test metric on "
        "seed 0. *Ratio* is the timed seconds it took to reach the peer's final metric, over the seconds the peer "
        "took to first reach it (the study's target: ≤ 0.1). A dash: projUNN's best never reached it.",
        "",
        "| task | best projUNN | peer | peer's final | peer's seconds | projUNN's seconds | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in LARGE:
        summary = summaries.get(task)
        if not summary:
            continue
        candidates = {m: s for m, s in summary.items() if _low_rank(m)}
        finite = {m: s for m, s in candidates.items() if not math.isnan(s["final"])}
        if not finite:
            continue
        best = min(finite, key=lambda m: finite[m]["final"])
        for method, s in summary.items():
            if METHODS[method].family != "peer" or math.isnan(s["final"]):
                continue
            theirs = time_to(s["result"], s["final"])
            ours = time_to(finite[best]["result"], s["final"])
            ratio = ours / theirs if theirs > 0 else math.nan
            lines.append(f"| {task} | {METHODS[best].label} | {METHODS[method].label} | {_fmt(s['final'])} | "
                         f"{_seconds(theirs)} | {_seconds(ours)} | {_fmt(ratio, 2)} |")  # fmt: skip
    return lines + [""]


def ranks(summaries: dict[str, dict]) -> list[str]:
    lines = [
        "## Which rank, per task (measured)",
        "",
        "The projUNN setting with the lowest final test metric on seed 0, and what the default "
        '(`rank="auto"`: k = min(32, max(1, min(n, p) // 16)), randomized sketch) and the default before it '
        "(rank 1, randomized sketch) reached in the same time.",
        "",
        "| task | best setting | its final | default's k | default's final | rank 1's final |",
        "|---|---|---|---|---|---|",
    ]
    for task, summary in summaries.items():
        candidates = {m: s for m, s in summary.items() if _low_rank(m) and not math.isnan(s["final"])}
        if not candidates:
            continue
        best = min(candidates, key=lambda m: candidates[m]["final"])
        default = summary.get("projunn-default", {}).get("final", math.nan)
        one = summary.get("projunn-k1", {}).get("final", math.nan)
        lines.append(f"| {task} | {METHODS[best].label} | {_fmt(candidates[best]['final'])} | {_auto_rank(task)} | "
                     f"{_fmt(default)} | {_fmt(one)} |")  # fmt: skip
    return lines + [""]


def _auto_rank(task: str) -> int:
    """The rank ``rank="auto"`` gives the task's constrained weight."""
    from unitary_lowrank._adapters import rank_of

    sizes = [int(x) for x in task.split("-")[1].split("x")]
    return rank_of("auto", (sizes[0], sizes[-1]))


def default_section() -> list[str]:
    """The default step beside the study's best projUNN setting (``peer_study.py default``), if it was run."""
    path = OUT / "beside" / "summary.json"
    if not path.exists():
        return []
    lines = [
        "## The default step beside the best setting (the default-step rule)",
        "",
        "The rule, written before these runs: on every task the default (`ProjUNN(Adam)` with no option but the "
        "learning rate, chosen by the same sweep as every method's) reaches the tightest target that the study's "
        "best projUNN setting reaches, in at most 1.25× its time. Both were run again, one right after the other, "
        "each at its chosen rate (`python benchmarks/peer_study.py default`; runs in `docs/runs/peers/beside`).",
        "",
        "| task | best setting | target | default's seconds | best's seconds | ratio | default's final | best's final "
        "| passes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in json.loads(path.read_text()):
        task, best = row["task"], row["best"]
        runs = {
            m: json.loads((OUT / "beside" / task / f"{m}-seed0.json").read_text()) for m in ("projunn-default", best)
        }
        ours, theirs = (time_to(runs[m], row["target"]) for m in ("projunn-default", best))
        lines.append(f"| {task} | {METHODS[best].label} | {_fmt(row['target'])} | {_seconds(ours)} | "
                     f"{_seconds(theirs)} | {_fmt(row['ratio'], 2)} | {_fmt(final(runs['projunn-default']))} | "
                     f"{_fmt(final(runs[best]))} | {_verdict(row['passes'])} |")  # fmt: skip
    return lines + [""]


def _verdict(passes: bool | None) -> str:
    """The rule's verdict in the table: ``None`` where the best setting reached none of the task's targets."""
    return "— (the best reached no target)" if passes is None else "yes" if passes else "**no**"


def conditions() -> list[str]:
    loads, versions, flagged, reran, dates = [], {}, 0, 0, []
    for path in (OUT / "study").glob("*/*.json"):
        result = json.loads(path.read_text())
        if path.name.endswith(".flagged.json"):
            flagged += 1
            continue
        loads += result.get("load_start", [])[:1] + result.get("load_end", [])[:1]
        versions.update(result.get("versions", {}))
        check = result.get("timing_check") or {}
        reran += check.get("attempt") == 2
        dates.append(path.stat().st_mtime)
    if not loads:
        return []
    return [
        "## Conditions",
        "",
        "One thread per run, one run at a time, on a 2-core machine (other light work may share the other core: "
        "the timing check below is what catches a run it slowed); versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f". One-minute load average at the start and end of the study's runs: {min(loads):.2f}–{max(loads):.2f} "
        f"(median {statistics.median(loads):.2f}). Timing control: {flagged} run(s) more than 25 % off their solo "
        f"calibration were flagged and run again ({reran} kept from the second attempt). Memory: peak resident "
        "memory above what was resident before the first step, over the calibration's 25 steps (no evaluation), "
        "in a process of its own (a dash: not measured).",
        "",
    ]


def report() -> None:
    sections, summaries = [], {}
    for task in BUDGETS:
        lines, summary = task_section(task)
        sections += lines
        if summary:
            summaries[task] = summary
    findings = OUT / "findings.md"
    page = [
        "# Time to accuracy beside the peers",
        "",
        "Generated by `python benchmarks/peer_report.py` from the runs in `docs/runs/peers` "
        "(`python benchmarks/peer_study.py all` makes them: calibrate, sweep, study, report).",
        "",
    ]
    page += [findings.read_text().strip(), ""] if findings.exists() else []
    page += comparison(summaries) + default_section() + ranks(summaries) + sections + conditions()
    PAGE.write_text("\n".join(page).rstrip() + "\n")
    print(f"wrote {PAGE} ({len(summaries)} tasks)")


if __name__ == "__main__":
    report()
