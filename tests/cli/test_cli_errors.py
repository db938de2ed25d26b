"""Every bad value on the command line ends in one line, from the parser of the command it was given to.

Each case: exit status 2, exactly one line on stderr naming the command and
the option (or the mistake), nothing on stdout, no traceback. The cases stop
before anything is trained or timed: a value refused at parsing, or settings
refused before the first iteration.
"""

from __future__ import annotations

import pytest

from unitary_lowrank.cli import main

#: (argv, what the one line must contain)
BAD = [
    # verify
    (["verify", "--ranks", "-1"], "unitary-lowrank verify: error: argument --ranks: must be ≥ 1; got -1"),
    (["verify", "--ranks", "0"], "argument --ranks: must be ≥ 1; got 0"),
    (["verify", "--ranks", "two"], "argument --ranks: expected an integer; got 'two'"),
    (["verify", "--sizes", "-64"], "argument --sizes: must be ≥ 1; got -64"),
    (["verify", "--sizes", "0"], "argument --sizes: must be ≥ 1"),
    (["verify", "--sizes", "1.5"], "argument --sizes: expected an integer"),
    (["verify", "--repeats", "0"], "argument --repeats: must be ≥ 1"),
    (["verify", "--seed", "-3"], "argument --seed: must be ≥ 0"),
    (["verify", "--tall", "8x16"], "argument --tall: a tall shape needs 1 ≤ p ≤ n"),
    (["verify", "--tall", "big"], "argument --tall: expected a shape NxP"),
    (["verify", "--dtypes", "float16"], "argument --dtypes: invalid choice"),
    (["verify", "--backend", "tensorflow"], "argument --backend: invalid choice"),
    (["verify", "--sizez", "64"], "unitary-lowrank verify: error: unrecognized arguments: --sizez 64"),
    # bench
    (["bench", "--ranks", "-2", "--sizes", "64"], "unitary-lowrank bench: error: argument --ranks: must be ≥ 1"),
    (["bench", "--sizes", "0"], "argument --sizes: must be ≥ 1"),
    (["bench", "--dense-max", "-1"], "argument --dense-max: must be ≥ 0"),
    (["bench", "--train", "0"], "argument --train: must be ≥ 1"),
    (["bench", "--min-time", "0"], "argument --min-time: must be > 0"),
    (["bench", "--min-time", "inf"], "argument --min-time: must be finite"),
    (["bench", "--min-time", "soon"], "argument --min-time: expected a number"),
    (["bench", "--layout", "Z"], "argument --layout: invalid choice"),
    (["bench", "--tall", "4x8"], "argument --tall: a tall shape needs 1 ≤ p ≤ n"),
    # train, the recurrent tasks
    (["train", "copy", "--preset", "quick", "--rank", "-1"], "unitary-lowrank train copy: error: argument --rank"),
    (["train", "copy", "--preset", "quick", "--rank", "0"], "argument --rank: must be ≥ 1; got 0"),
    (
        ["train", "copy", "--preset", "quick", "--rank", "Auto"],
        "argument --rank: expected an integer; got 'Auto' (or 'auto')",
    ),
    (["train", "copy", "--preset", "quick", "--rank", "500"], "--rank must be ≤ --hidden (64)"),
    (["train", "copy", "--hidden", "0"], "argument --hidden: must be ≥ 1"),
    (["train", "copy", "--batch", "-8"], "argument --batch: must be ≥ 1"),
    (["train", "copy", "--lr", "0"], "argument --lr: must be > 0"),
    (["train", "copy", "--lr", "nan"], "argument --lr: must be finite"),
    (["train", "copy", "--lr-unitary=-1e-3"], "argument --lr-unitary: must be > 0"),
    (["train", "copy", "--T", "0"], "argument --T: must be ≥ 1"),
    (["train", "adding", "--T", "2"], "unitary-lowrank train adding: error: argument --T: must be ≥ 3"),
    (["train", "adding", "--steps", "0"], "argument --steps: must be ≥ 1"),
    (["train", "adding", "--clip", "-1"], "argument --clip: must be > 0"),
    (["train", "adding", "--decay", "0"], "argument --decay: must be > 0"),
    (["train", "adding", "--decay-every", "0"], "argument --decay-every: must be ≥ 1"),
    (["train", "adding", "--eval-every", "0"], "argument --eval-every: must be ≥ 1"),
    (["train", "adding", "--minutes", "-5"], "argument --minutes: must be > 0"),
    (["train", "adding", "--test-size", "0"], "argument --test-size: must be ≥ 1"),
    (["train", "adding", "--threads", "0"], "argument --threads: must be ≥ 1"),
    (["train", "adding", "--seed", "-1"], "argument --seed: must be ≥ 0"),
    (["train", "adding", "--checkpoint-every", "ten"], "argument --checkpoint-every: expected iterations (500)"),
    (["train", "adding", "--checkpoint-every=-5m"], "argument --checkpoint-every: must be ≥ 0; got '-5m'"),
    (["train", "adding", "--resume", "/nonexistent/run"], "--resume: /nonexistent/run does not exist"),
    (["train", "pmnist", "--epochs", "0"], "unitary-lowrank train pmnist: error: argument --epochs: must be ≥ 1"),
    (["train", "pmnist", "--limit", "0"], "argument --limit: must be ≥ 1"),
    (["train", "pmnist", "--decay-epochs", "3", "-1"], "argument --decay-epochs: must be ≥ 1"),
    (["train", "smnist", "--preset", "cpu"], "no preset 'cpu' for smnist"),
    (["train", "copy", "--epochs", "3"], "unitary-lowrank train copy: error: unrecognized arguments: --epochs 3"),
    (["train", "copy", "--method", "svd"], "argument --method: invalid choice"),
    (["train", "walk"], "argument TASK: invalid choice"),
    # train conv
    (["train", "conv", "--depth", "0"], "unitary-lowrank train conv: error: argument --depth: must be ≥ 1"),
    (["train", "conv", "--channels", "1"], "argument --channels: must be ≥ 2"),
    (["train", "conv", "--channels", "7", "--minutes", "0.01"], "channels must be even"),
    (["train", "conv", "--channels", "8", "--rank", "9", "--minutes", "0.01"], "--rank must be ≤ --channels (8)"),
    (["train", "conv", "--size", "0"], "argument --size: must be ≥ 1"),
    (["train", "conv", "--lr", "-0.1"], "argument --lr: must be > 0"),
    # train cifar10
    (["train", "cifar10"], "unitary-lowrank train cifar10: error: --data is required"),
    (["train", "cifar10", "--data", "/nonexistent/cifar"], "--data /nonexistent/cifar: no such file or directory"),
    (["train", "cifar10", "--width", "0"], "argument --width: must be ≥ 1"),
    (["train", "cifar10", "--momentum", "1"], "argument --momentum: must be < 1"),
    (["train", "cifar10", "--momentum", "-0.5"], "argument --momentum: must be ≥ 0"),
    (["train", "cifar10", "--weight-decay", "-1"], "argument --weight-decay: must be ≥ 0"),
    (["train", "cifar10", "--label-smoothing", "1.5"], "argument --label-smoothing: must be < 1"),
    (["train", "cifar10", "--margin-eps=-36/255"], "argument --margin-eps: must be ≥ 0"),
    (["train", "cifar10", "--margin-eps", "1/0"], "argument --margin-eps: expected a number or a ratio"),
    (["train", "cifar10", "--temperature", "0"], "argument --temperature: must be > 0"),
    (["train", "cifar10", "--translate", "-2"], "argument --translate: must be ≥ 0"),
    (["train", "cifar10", "--holdout", "0"], "argument --holdout: must be ≥ 1"),
    (["train", "cifar10", "--eval-images", "0"], "argument --eval-images: must be ≥ 1"),
    (["walk"], "unitary-lowrank: error: argument command: invalid choice"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(argv) for argv, _ in BAD])
def test_a_bad_value_is_one_line_and_exit_status_2(argv, expected, capsys, tmp_path):
    if argv[0] == "train":
        pytest.importorskip("torch")
        pytest.importorskip("tqdm")
        pytest.importorskip("matplotlib")
        if argv[1] == "conv":
            pytest.importorskip("mlxtend")
        argv = [*argv, "--out", str(tmp_path)] if argv[1] != "walk" else argv
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_the_table_is_large_enough():
    assert len(BAD) >= 40
