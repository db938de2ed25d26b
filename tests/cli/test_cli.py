"""The verify command: table, exit status, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unitary_lowrank.cli import main, verify

SMALL = ["verify", "--sizes", "8", "40", "--ranks", "1", "4", "--repeats", "1", "--tall"]


def test_verify_passes_and_prints_table(capsys, tmp_path):
    path = tmp_path / "rows.json"
    assert main(SMALL + ["--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "all 32 cases within tolerance" in out
    assert "transport" in out and "complex128" in out and "speed-up" in out
    rows = json.loads(path.read_text())
    assert len(rows) == 32 and all(r["ok"] for r in rows)
    assert max(r["error"] for r in rows if r["dtype"] == "float64") <= 1e-12


def test_verify_fails_loudly(monkeypatch, capsys):
    monkeypatch.setattr(verify, "TOLERANCE", {d: 0.0 for d in verify.TOLERANCE})
    assert main(SMALL) == 1
    assert "exceed their tolerance" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["array_api_strict", "torch", "jax"])
def test_verify_on_other_backends(backend, capsys):
    pytest.importorskip(backend)
    assert (
        main(["verify", "--backend", backend, "--sizes", "12", "--tall", "20x5", "--ranks", "2", "--repeats", "1"]) == 0
    )
    assert "all 16 cases within tolerance" in capsys.readouterr().out


def test_python_dash_m():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unitary_lowrank",
            "verify",
            "--sizes",
            "6",
            "--tall",
            "--ranks",
            "1",
            "--dtypes",
            "float64",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "all 2 cases within tolerance" in result.stdout


def test_unknown_backend_is_refused():
    with pytest.raises(SystemExit):
        main(["verify", "--backend", "tensorflow"])


def test_verify_covers_tall_shapes_and_reports_progress_when_piped(tmp_path):
    """Tall n×p shapes against polar / expm(skew(A (U B)ᴴ)) @ U; progress lines when stdout is not a terminal."""
    path = tmp_path / "rows.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unitary_lowrank",
            "verify",
            "--sizes",
            "--tall",
            "64x8",
            "64x1",
            "--ranks",
            "1",
            "4",
            "--repeats",
            "1",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "verify: 24/24 (100 %)" in result.stdout
    rows = json.loads(path.read_text())
    assert {(r["n"], r["p"]) for r in rows} == {(64, 8), (64, 1)}
    assert len(rows) == 24 and all(r["ok"] for r in rows)


def test_verify_refuses_bad_shapes():
    with pytest.raises(SystemExit):
        main(["verify", "--tall", "8x16"])


#: Flags that switch something on and have no value to default to.
_SWITCHES = {"help", "version", "no_progress", "print_config"}


@pytest.mark.parametrize("command", ["verify", "bench", "train"])
def test_every_option_shows_its_default(command):
    """`--help` states the default of every option that takes a value (or says a preset sets it)."""
    from unitary_lowrank.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    missing = [
        action.option_strings[0]
        for action in sub._actions
        if action.option_strings and action.dest not in _SWITCHES and "default" not in (action.help or "")
    ]
    assert not missing, f"{command} --help gives no default for {missing}"


def test_train_print_config_shows_the_preset_settings(capsys):
    pytest.importorskip("torch")
    assert main(["train", "copy", "--preset", "cpu", "--hidden", "33", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["T"] == 200 and config["hidden"] == 33 and config["batch"] == 128  # preset, then options


def test_verify_times_both_steps_interleaved_and_flags_disagreeing_repeats(monkeypatch, capsys, tmp_path):
    """Repeats alternate low-rank and dense; a burst of load that slows one repeat 5× marks the row noisy."""
    calls = []

    def lowrank():
        calls.append("lowrank")

    def dense():
        calls.append("dense")

    clock = iter([0.0, 1.0, 0.0, 1.0] + [0.0, 1.0, 0.0, 10.0, 0.0, 5.0, 0.0, 10.0, 0.0, 1.0, 0.0, 10.0])
    monkeypatch.setattr(verify.time, "perf_counter", lambda: next(clock))
    timing, _ = verify._interleaved(lowrank, dense, lambda x: None, repeats=3)
    assert calls == ["lowrank", "dense"] * 4  # one warm-up each, then alternating
    assert timing["lowrank_spread"] == 5.0 and timing["dense_spread"] == 1.0
    assert timing["speedup"] == 10.0 and timing["lowrank_ms"] == 1e3  # median of the ratios 10, 2, 10; of the times
    monkeypatch.undo()
    path = tmp_path / "rows.json"
    monkeypatch.setattr(verify, "NOISY_SPREAD", 0.5)  # every row "noisy": the flag reaches the table and the JSON
    assert main(["verify", "--sizes", "8", "--ranks", "1", "--dtypes", "float64", "--tall", "--json", str(path)]) == 0
    assert "noisy timing" in capsys.readouterr().out
    assert all(row["noisy"] and row["lowrank_spread"] >= 1 for row in json.loads(path.read_text()))
