"""``unitary-lowrank train TASK``: each task takes its own options, refuses the others, and reports usage errors."""

from __future__ import annotations

import json

import pytest

from unitary_lowrank.cli import main


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_each_task_lists_its_own_options(capsys):
    cifar = _help(capsys, "train", "cifar10")
    assert "--data" in cifar and "--margin-eps" in cifar and "--holdout" in cifar
    for other in ("--T ", "--hidden", "--complex", "--steps", "--channels", "--test-size"):
        assert other not in cifar
    copy = _help(capsys, "train", "copy")
    assert "--T " in copy and "--test-size" in copy and "--data" not in copy and "--epochs" not in copy
    pmnist = _help(capsys, "train", "pmnist")
    assert "--epochs" in pmnist and "--limit" in pmnist and "--T " not in pmnist
    conv = _help(capsys, "train", "conv")
    assert "--depth" in conv and "--channels" in conv and "--preset" not in conv and "--hidden" not in conv


def test_help_states_defaults_as_people_write_them(capsys):
    cifar = " ".join(_help(capsys, "train", "cifar10").split())  # argparse wraps lines
    assert "default: 36/255" in cifar and "0.1411" not in cifar
    assert "the base optimizer's learning rate" in cifar and "RMSprop's learning rate" not in cifar
    copy = " ".join(_help(capsys, "train", "copy").split())
    assert "RMSprop's learning rate" in copy and "default: 0.001, or the preset's" in copy


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "cifar10", "--steps", "5"], "unrecognized arguments: --steps 5"),
        (["train", "cifar10", "--hidden", "8"], "unrecognized arguments: --hidden 8"),
        (["train", "pmnist", "--T", "5"], "unrecognized arguments: --T 5"),
        (["train", "conv", "--data", "x"], "unrecognized arguments: --data x"),
        (["train", "cifar10", "--margin-eps", "36/0"], "expected a number or a ratio"),
    ],
)
def test_options_that_do_not_apply_are_refused(capsys, argv, message):
    assert message in _refused(capsys, *argv)


def test_margin_eps_reads_a_ratio(capsys):
    pytest.importorskip("torch")
    assert main(["train", "cifar10", "--margin-eps", "72/255", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["margin_eps"] == pytest.approx(72 / 255, abs=0)


def test_missing_or_unreadable_data_is_a_usage_error(capsys, tmp_path):
    pytest.importorskip("torch")
    assert "--data is required" in _refused(capsys, "train", "cifar10", "--out", str(tmp_path))
    missing = tmp_path / "nowhere"
    err = _refused(capsys, "train", "cifar10", "--data", str(missing))
    assert f"--data {missing}: no such file or directory" in err
    text = tmp_path / "notes.txt"
    text.write_text("not CIFAR-10")
    err = _refused(capsys, "train", "cifar10", "--data", str(text), "--out", str(tmp_path))
    assert "CIFAR-10: cannot read" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "neither the official batches" in _refused(capsys, "train", "cifar10", "--data", str(empty))


def test_a_preset_a_task_lacks_is_refused(capsys):
    pytest.importorskip("torch")
    assert "no preset 'cpu' for smnist" in _refused(capsys, "train", "smnist", "--preset", "cpu", "--print-config")


def test_a_sequence_task_without_steps_says_so(capsys, tmp_path):
    pytest.importorskip("torch")
    assert "give --steps, or a --preset" in _refused(capsys, "train", "copy", "--out", str(tmp_path))
