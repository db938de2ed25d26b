"""Time to accuracy beside every peer: calibrate, sweep, study and report, one run at a time.

    python benchmarks/peer_study.py all          # every phase below, in order (resumable: finished runs are kept)
    python benchmarks/peer_study.py calibrate    # each (task, method) alone for a few steps: seconds per step, memory
    python benchmarks/peer_study.py sweep        # learning rates on the validation split (never the test metric)
    python benchmarks/peer_study.py study        # every method at its learning rate; seed 0, then seed 1
    python benchmarks/peer_study.py report       # docs/peers.md and its plots from the results present
    python benchmarks/peer_study.py default      # the default step beside the study's best projUNN setting, run again
    python benchmarks/peer_study.py prototype    # a prototype (projected-auto) swept, studied, beside the default

Every run is ``benchmarks/peers.py run`` in a process of its own, one thread,
**one at a time**, with a budget of timed wall seconds per task
(:data:`BUDGETS`). A run that has not finished at twice its budget plus 30 s
is stopped and kept as it stands (its curve is written as it goes): a peer
whose one step costs minutes is reported as such, not waited for.

Fairness, by construction:

- *same everything but the method*: the task's seed fixes the teacher, the
  data stream, the initial weight (every method starts from it) and the
  held-out sets;
- *learning rates chosen on a held-out split*: each swept method tries the
  grid of its optimizer (:data:`GRIDS`) for :data:`SWEEP_SECONDS` (a third to
  a half of the study's budget) and keeps the rate with the lowest validation
  metric at the end; ProjUNN's subspace variants take
  the rate chosen for the randomized sketch of the same rank; the 4096 fit
  takes the rates chosen at 1024 (a sweep there would cost more than the study);
- *timing control* (as in ``lipschitz_study.py``): every sweep and study run's
  median step time is compared with the method's solo calibration; a run more
  than 25 % off is flagged, kept as ``NAME.flagged.json`` and run again, once;
  every result records the load average at its start and end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import METHODS, TASKS, supports  # noqa: E402

OUT = HERE.parent / "docs" / "runs" / "peers"
PAGE = HERE.parent / "docs" / "peers.md"
IMAGES = HERE.parent / "docs" / "img"

#: Timed wall seconds of training per run, per task (one thread).
BUDGETS = {
    "rotation-256": 6.0,
    "rotation-1024": 20.0,
    "rotation-1024-so": 20.0,
    "rotation-4096": 40.0,
    "adding-512": 20.0,
    "subspace-4096x256": 20.0,
    "unitary-1024": 15.0,
}
#: Timed seconds of each sweep run (one learning rate), per task.
SWEEP_SECONDS = {"rotation-256": 2.0, "rotation-1024": 10.0, "rotation-1024-so": 10.0, "adding-512": 10.0,
                 "subspace-4096x256": 10.0, "unitary-1024": 5.0}  # fmt: skip
#: Seconds a task's set-up may take (data, teacher, held-out sets) before its runs' limits start.
SETUP_SECONDS = {"rotation-4096": 60, "subspace-4096x256": 30}
#: Learning-rate grids: optimizer → task → rates (``"*"``: every other task).
GRIDS = {
    "adam": {"*": (3e-3, 1e-2, 3e-2, 1e-1), "adding-512": (1e-4, 1e-3, 1e-2)},
    "sgd": {"*": (0.1, 1.0, 10.0, 100.0)},
}
#: Tasks whose learning rates come from another task's sweep.
SWEEP_FROM = {"rotation-4096": "rotation-1024"}
#: Methods that take another method's chosen learning rate instead of a sweep of their own.
SHARES_LR = {
    "projunn-k1-subspace": "projunn-k1",
    "projunn-k4-subspace": "projunn-k4",
    "projunn-k16-subspace": "projunn-k16",
    "projunn-k64-subspace": "projunn-k64",
}
#: The methods of the study (``projunn-default`` is ``rank="auto"``; ``projunn-k1`` was the default before it).
STUDY = list(METHODS)
#: The methods run again on seed 1, to show what a second seed changes (a subset, for the study's time).
REPRODUCE = ["projunn-default", "projunn-k1", "projunn-k16", "projunn-k64", "torch-cayley", "geoopt-adam", "adam"]
#: The tasks run again on seed 1 (the study's time allowed one; add others with --tasks).
REPRODUCE_TASKS = ["rotation-1024"]
#: A run whose median step time is this far off its calibration is flagged and run again (once).
DEVIATION = 0.25


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Worker:
    """A ``peers.py serve`` process that runs one spec at a time; replaced when a run outlives its limit."""

    process: subprocess.Popen | None = None

    @classmethod
    def stop(cls) -> None:
        if cls.process is not None:
            cls.process.kill()
            cls.process.wait()
            cls.process = None

    @classmethod
    def run(cls, request: dict, limit: float) -> dict | None:
        """The worker's answer, or None if the run was stopped at ``limit`` seconds (the worker is then killed)."""
        if cls.process is None or cls.process.poll() is not None:
            cls.process = subprocess.Popen([sys.executable, str(HERE / "peers.py"), "serve"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert cls.process.stdin is not None and cls.process.stdout is not None
        cls.process.stdin.write(json.dumps(request) + "\n")
        cls.process.stdin.flush()
        ready, _, _ = select.select([cls.process.stdout], [], [], limit)
        answer = cls.process.stdout.readline() if ready else ""
        if not answer:
            cls.process.kill()
            cls.process.wait()
            cls.process = None
            return None
        return json.loads(answer)


def launch(task: str, method: str, lr: float, seed: int, seconds: float, path: Path, **options) -> dict:
    """One run in the worker; one that outlives ``2 × seconds + 30`` (plus set-up) is stopped and kept as it stands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    request = {"task": task, "method": method, "lr": lr, "seed": seed, "seconds": seconds, "out": str(path),
               "max_steps": options.get("max_steps"), "evaluate": options.get("evaluate", True)}  # fmt: skip
    limit = 2 * seconds + 30 + SETUP_SECONDS.get(task, 10)
    started = time.perf_counter()
    if options.get("fresh"):  # a process of its own: its resident memory is the run's (calibration)
        Worker.stop()
    answer = Worker.run(request, limit)
    if options.get("fresh"):
        Worker.stop()
    if answer is not None and answer["status"] == "failed":
        print(f"  {path.name}: failed: {answer['error']}", flush=True)
        return {"status": "failed", "error": answer["error"]}
    result = json.loads(path.read_text()) if path.exists() else {"status": "running", "steps": 0, "curve": []}
    if answer is None:  # stopped: one step (or the set-up) took longer than the limit allowed
        result.update(status="stopped", stopped_after=round(time.perf_counter() - started, 1), limit=limit)
        path.write_text(json.dumps(result, indent=1))
    return result


def median_step(result: dict) -> float:
    """Median seconds of the steps after the first (the first warms caches and allocators); of the one step
    there was, for a run that took only one."""
    times = result.get("step_seconds", [])[1:] or result.get("step_seconds", [])
    return statistics.median(times) if times else math.nan


def checked(task: str, method: str, lr: float, seed: int, seconds: float, path: Path) -> dict:
    """:func:`launch` under timing control: compared with the calibration, flagged and re-run once if off."""
    if path.exists():
        return json.loads(path.read_text())
    calibration = OUT / "calibration" / task / f"{method}.json"
    solo = median_step(json.loads(calibration.read_text())) if calibration.exists() else math.nan
    for attempt in (1, 2):
        result = launch(task, method, lr, seed, seconds, path)
        if result["status"] == "failed":
            return result
        deviation = median_step(result) / solo - 1
        flagged = bool(abs(deviation) > DEVIATION)  # NaN (no calibration, or one step) is not flagged
        result["timing_check"] = {"solo_median_step": solo, "deviation": deviation, "flagged": flagged,
                                  "attempt": attempt}  # fmt: skip
        path.write_text(json.dumps(result, indent=1))
        if not flagged or attempt == 2:
            return result
        print(f"  {path.name}: {100 * deviation:+.0f} % off its calibration: flagged, run again", flush=True)
        path.rename(path.with_suffix(".flagged.json"))
    return result


def _say(where: str, result: dict) -> None:
    last = result.get("curve", [{}])[-1] if result.get("curve") else {}
    step = median_step(result)
    print(f"{where}: {result['status']}, {result.get('steps', 0)} steps, {1e3 * step:.1f} ms/step, "
          f"val {last.get('val', math.nan):.3g}, test {last.get('test', math.nan):.3g}", flush=True)  # fmt: skip


def _tasks(args: argparse.Namespace) -> list[str]:
    return args.tasks or list(BUDGETS)


def _methods(args: argparse.Namespace, task: str, pool: list[str]) -> list[str]:
    return [m for m in (args.methods or pool) if m in pool and supports(m, task)]


def calibrate(args: argparse.Namespace) -> None:
    for task in _tasks(args):
        for method in _methods(args, task, STUDY):
            path = OUT / "calibration" / task / f"{method}.json"
            if path.exists():
                continue
            default_lr = grid(method, task)[len(grid(method, task)) // 2]
            result = launch(task, method, default_lr, 0, BUDGETS[task] / 4, path, max_steps=25, evaluate=False,
                            fresh=True)  # fmt: skip
            _say(f"calibrate {task} {method}", result)


def grid(method: str, task: str) -> tuple[float, ...]:
    rates = GRIDS[METHODS[method].optimizer]
    return rates.get(task, rates["*"])


def sweep(args: argparse.Namespace) -> None:
    for task in _tasks(args):
        if task in SWEEP_FROM:
            continue
        for method in _methods(args, task, [m for m in STUDY if m not in SHARES_LR]):
            if _calibration_stopped(task, method):
                continue
            for lr in grid(method, task):
                path = OUT / "sweep" / task / f"{method}-lr{lr:g}.json"
                if not path.exists():
                    _say(f"sweep {task} {method} lr {lr:g}", checked(task, method, lr, 0, SWEEP_SECONDS[task], path))


def _calibration_stopped(task: str, method: str) -> bool:
    """True when the calibration could not finish one step in its time limit: the method is reported, not run."""
    path = OUT / "calibration" / task / f"{method}.json"
    return path.exists() and json.loads(path.read_text())["status"] == "stopped"


def too_slow(task: str, method: str) -> float | None:
    """The calibrated seconds of one step where they exceed the task's budget (the study does not run such a
    method: it would take one step, far past the budget), else None."""
    path = OUT / "calibration" / task / f"{method}.json"
    if not path.exists():
        return None
    step = median_step(json.loads(path.read_text()))
    return step if step > BUDGETS[task] else None


def chosen_rate(task: str, method: str) -> tuple[float, str]:
    """(learning rate, how it was chosen) from the sweep's validation metrics (the last point of each run)."""
    source_task = SWEEP_FROM.get(task, task)
    source_method = SHARES_LR.get(method, method)
    scores = {}
    for lr in grid(source_method, source_task):
        path = OUT / "sweep" / source_task / f"{source_method}-lr{lr:g}.json"
        if path.exists():
            result = json.loads(path.read_text())
            val = result["curve"][-1]["val"] if result.get("curve") and result["status"] != "diverged" else math.inf
            scores[lr] = val if math.isfinite(val) else math.inf
    if not scores:
        rates = grid(method, task)
        return rates[len(rates) // 2], "middle of the grid (no sweep)"
    best = min(scores, key=lambda lr: scores[lr])
    rates = grid(source_method, source_task)
    note = "swept" if (source_task, source_method) == (task, method) else f"from {source_method} on {source_task}"
    if best in (rates[0], rates[-1]) and len(rates) > 1:
        note += ", at the grid's edge"
    return best, note


def study(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        for task in _tasks(args):
            if seed != 0 and task not in REPRODUCE_TASKS and not args.tasks:
                continue
            pool = STUDY if seed == 0 else REPRODUCE
            for method in _methods(args, task, pool):
                path = OUT / "study" / task / f"{method}-seed{seed}.json"
                if path.exists() or _calibration_stopped(task, method) or too_slow(task, method):
                    continue
                lr, _ = chosen_rate(task, method)
                result = checked(task, method, lr, seed, BUDGETS[task], path)
                _say(f"study {task} {method} seed {seed} lr {lr:g}", result)


#: The default-step rule, written before its runs: on every task the default (no option but the learning rate)
#: reaches the tightest target that the study's best projUNN setting reaches, in at most this many times its time.
DEFAULT_RULE = 1.25


def best_setting(task: str) -> str | None:
    """The projUNN setting other than the default (and the dense step) with the lowest final test metric of the
    study's seed-0 runs."""
    from peer_report import final

    scores = {}
    for path in (OUT / "study" / task).glob("projunn-k*-seed0.json"):
        scores[path.name.removesuffix("-seed0.json")] = final(json.loads(path.read_text()))
    scores = {m: v for m, v in scores.items() if math.isfinite(v)}
    return min(scores, key=lambda m: scores[m]) if scores else None


def _own_runs(args: argparse.Namespace, methods: list[str]) -> list[str]:
    """Calibrate, sweep and study ``methods`` (seed 0) on the chosen tasks (default: all but the 4096 fit); the
    tasks."""
    tasks = args.tasks or [t for t in BUDGETS if t != "rotation-4096"]
    own = argparse.Namespace(**{**vars(args), "methods": methods, "seeds": [0], "tasks": tasks})
    calibrate(own)
    sweep(own)
    study(own)
    return tasks


def _beside(task: str, candidate: str, reference: str, folder: str) -> tuple[dict, dict, float, float]:
    """``candidate`` and ``reference`` run again on ``task``, one right after the other, the default first (seed 0,
    each at its chosen rate, kept in ``runs/peers/FOLDER``); then the tightest target the reference reached and
    the ratio of the candidate's time to it over the reference's (NaN, NaN where the reference reached none)."""
    from peer_report import time_to

    runs = {}
    for method in sorted((candidate, reference), key=lambda name: name != "projunn-default"):
        lr, _ = chosen_rate(task, method)
        runs[method] = checked(task, method, lr, 0, BUDGETS[task], OUT / folder / task / f"{method}-seed0.json")
        _say(f"{folder} {task} {method} lr {lr:g}", runs[method])
    ours, theirs = runs[candidate], runs[reference]
    reached = [t for t in theirs.get("targets", ()) if math.isfinite(time_to(theirs, t))]
    if not reached:
        return ours, theirs, math.nan, math.nan
    target = min(reached)
    return ours, theirs, target, time_to(ours, target) / time_to(theirs, target)


def default_check(args: argparse.Namespace) -> None:
    """The default's calibration, sweep and study run as every method's; then, per task, the default and the
    study's best projUNN setting again, one right after the other (same seed, each at its chosen rate), and the
    ratio of their times to the tightest target the best one reached (:data:`DEFAULT_RULE`)."""
    rows = []
    for task in _own_runs(args, ["projunn-default"]):
        best = best_setting(task)
        if best is None:
            continue
        _, _, target, ratio = _beside(task, "projunn-default", best, "beside")
        # no target reached by the best setting: the rule has nothing to compare (None, not a failure)
        passes = None if math.isnan(target) else bool(ratio <= DEFAULT_RULE)
        rows.append({"task": task, "best": best, "target": target, "ratio": ratio, "passes": passes})
        print(f"default on {task}: {ratio:.2f}× the time of {best} to {target:g}", flush=True)
    summary = OUT / "beside" / "summary.json"
    summary.write_text(json.dumps(merged(summary, rows), indent=1))


def merged(summary: Path, rows: list[dict]) -> list[dict]:
    """The rows of the file ``summary`` (if any), each replaced where it stands by the one of ``rows`` with its task
    (and method, where rows name one); then the rest of ``rows``: a check run again on some tasks keeps the
    others' results, in their order."""

    def key(row: dict) -> tuple:
        return row["task"], row.get("method")

    fresh = {key(row): row for row in rows}
    stored = json.loads(summary.read_text()) if summary.exists() else []
    return [fresh.pop(key(row), row) for row in stored] + list(fresh.values())


def prototype_check(args: argparse.Namespace) -> None:
    """A prototype (``--methods``, default ``projected-auto``) calibrated, swept and studied as every method;
    then, per task, the prototype and the default again, one right after the other (seed 0, each at its chosen
    rate), and the ratio of the prototype's time to the default's, to the tightest target the default reached
    (below 1: the prototype is faster). Written to ``runs/peers/prototype/summary.json``."""
    from peer_report import final

    methods = args.methods or ["projected-auto"]
    rows = []
    for task in _own_runs(args, methods):
        for method in methods:
            ours, default, target, ratio = _beside(task, method, "projunn-default", "prototype")
            rows.append({"task": task, "method": method, "target": target, "ratio": ratio,
                         "final": final(ours), "default_final": final(default),
                         "ms_per_step": 1e3 * median_step(ours),
                         "default_ms_per_step": 1e3 * median_step(default)})  # fmt: skip
            print(f"{method} on {task}: {ratio:.2f}× the default's time to {target:g}", flush=True)
    summary = OUT / "prototype" / "summary.json"
    summary.write_text(json.dumps(merged(summary, rows), indent=1))


def run_all(args: argparse.Namespace) -> None:
    calibrate(args)
    sweep(args)
    study(args)
    from peer_report import report

    report()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="peer_study.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("all", "calibrate", "sweep", "study", "report", "default", "prototype"):
        sub = commands.add_parser(name)
        sub.add_argument("--tasks", nargs="+", choices=sorted(TASKS), help="only these tasks (default: all)")
        sub.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="only these methods (default: all)")
        sub.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="study seeds (default: 0 1)")
    args = parser.parse_args(argv)
    print(f"peer study: {args.command}; python {platform.python_version()}, torch {metadata.version('torch')}, "
          f"load {_load()}", flush=True)  # fmt: skip
    if args.command == "report":
        from peer_report import report

        report()
    else:
        {
            "all": run_all,
            "calibrate": calibrate,
            "sweep": sweep,
            "study": study,
            "default": default_check,
            "prototype": prototype_check,
        }[args.command](args)


if __name__ == "__main__":
    main()
