"""The bench command runs end to end; the in-place step's extra memory stays O(N k)."""

from __future__ import annotations

import json

import pytest

from unitary_lowrank.cli import main
from unitary_lowrank.cli.bench import Case, extra_memory_elements


def test_bench_writes_table_plot_and_json(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = [
        "bench",
        "--backends",
        "numpy",
        "--sizes",
        "32",
        "64",
        "--ranks",
        "1",
        "2",
        "--dtypes",
        "float64",
        "--dense-max",
        "64",
        "--min-time",
        "0.01",
        "--tall",
        "64x8",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    ]
    assert main(argv) == 0
    assert "step/floor" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    square = [r for r in data["rows"] if r["op"] in ("project", "transport") and not r["batch"] and r["p"] == r["n"]]
    steps = [r for r in square if r["layout"] == "C"]
    column_major = [r for r in square if r["layout"] == "F"]
    assert len(column_major) == len(steps) and all(r["over_row_major"] > 0 for r in column_major)
    tall = [r for r in data["rows"] if r["p"] != r["n"]]
    assert {(r["op"], r["n"], r["p"], r["k"]) for r in tall} == {("project", 64, 8, 4), ("transport", 64, 8, 4)}
    assert all(r["ratio_to_floor"] > 0 for r in tall)
    assert len(steps) == 2 * 2 * 2
    assert all(r["ratio_to_floor"] > 0 and r["polar_over_step"] > 0 for r in steps)
    assert {m["k"] for m in data["memory"]} == {1, 2}
    assert out_png.stat().st_size > 10_000


def test_bench_times_training_steps_against_adam(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out_json = tmp_path / "bench.json"
    argv = ["bench", "--backends", "torch", "--sizes", "16", "--ranks", "1", "--dtypes", "float32", "--tall"]
    argv += ["--train", "32", "--layout", "C", "--min-time", "0.01", "--json", str(out_json)]
    argv += ["--plot", str(tmp_path / "bench.png")]
    assert main(argv) == 0
    rows = [r for r in json.loads(out_json.read_text())["rows"] if r["op"] == "train-projunn"]
    assert [(r["n"], r["k"]) for r in rows] == [(32, 4)]
    # ProjUNN's step over plain Adam's, and torch's parametrization over ProjUNN's: both measured, both positive
    assert rows[0]["ratio_to_floor"] > 0 and rows[0]["torch_orthogonal_over_step"] > 0
    assert "train-projunn" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("op", ["project", "transport"])
def test_in_place_step_extra_memory_is_8Nk(op, k, dtype, layout):
    """tracemalloc peak of one in-place NumPy step on a row- or column-major U: ≤ 8 N k elements, plus the update's
    row buffer, plus in single precision the QR's shifted working copy.

    The buffer holds max(2r, 4) rows, and at least 64 Ki elements (a constant,
    512 KiB in double precision, so that short rows do not pay per-block overhead).
    The QR factors the N×2k block plus a shift on its top 4k rows (``_linalg.generic_shift``);
    in single precision NumPy does that in a double-precision working copy that
    now exists beside the block: 2 N k elements more, and the shift's 4k × 2k.
    """
    n = 1024
    extra = extra_memory_elements(Case(op, "numpy", n, k, dtype, layout=layout))
    shifted_copy = 2 * n * k + 2 * (2 * k) ** 2 if dtype in ("float32", "complex64") else 0
    assert extra <= 8 * n * k + 4 * n + (1 << 16) + 64 * k * k + shifted_copy
