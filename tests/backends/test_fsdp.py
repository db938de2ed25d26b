"""FSDP2 (``fully_shard``) on gloo processes: ProjUNN steps the sharded weights as one process would, in O(N k).

Each case runs ``fsdp_worker.py`` in 2–4 processes (file rendezvous, gloo on
loopback). Every rank trains the sharded model and, beside it, an unsharded
copy with the same batch; the sharded weights, gathered in the worker for the
comparison only, must equal the unsharded ones to 1e-12 (float64, complex128).
The collectives issued inside the last ``opt.step()`` are logged with their
sizes (a ``TorchDispatchMode``; FSDP2's own all-gathers happen in forward and
backward, outside it).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

WORKER = pathlib.Path(__file__).with_name("fsdp_worker.py")


def run(tmp_path, world: int, case: dict) -> list[dict]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    rendezvous = str(tmp_path / "rendezvous")
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(world), rendezvous, str(tmp_path), json.dumps(case)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-4000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world)]


CASES = [
    (2, {"shape": [64, 64]}),
    (2, {"shape": [96, 24], "method": "project"}),
    (2, {"shape": [24, 96]}),  # wide: the adjoint's columns are sharded
    (2, {"shape": [24, 96], "method": "project", "sketch": "subspace", "error_feedback": True}),
    (2, {"shape": [32, 32], "dtype": "complex128", "sketch": "subspace", "retraction": "cayley"}),
    (2, {"shape": [32, 12], "dtype": "complex128", "method": "project"}),
    (3, {"shape": [66, 66], "every": 2, "steps": 6}),  # the drift probe every 2 steps
    (4, {"shape": [10, 10]}),  # rows 3, 3, 3, 1
    (4, {"shape": [6, 6], "method": "project"}),  # rows 2, 2, 2, 0: an empty shard
]


@pytest.mark.parametrize(("world", "case"), CASES, ids=[json.dumps(c) for _, c in CASES])
def test_sharded_training_equals_one_process(tmp_path, world, case):
    """Five steps of ProjUNN(Adam) under fully_shard equal the unsharded model's, and stay unitary."""
    results = run(tmp_path, world, case)
    for result in results:
        assert all(diff <= 1e-12 for _, diff in result["diffs"]), result["diffs"]
        assert result["unitarity"] <= 1e-12
    n, p = case["shape"]
    bound = max(max(n, p) * (2 + 10), world * 12 * 12)  # an N × l all-reduce, or the TSQR's world × l × l gather
    bound *= 2 if case.get("dtype", "").startswith("complex") else 1  # complex travels as its real view
    for result in results:  # inside opt.step(): O(N k) collectives only (N ≥ 128 below: none ≥ N²/4)
        assert all(max(sizes) <= bound for _, sizes in result["collectives"]), result["collectives"]


@pytest.mark.parametrize("n", [128, 1024])
def test_no_collective_of_a_weights_size_and_the_count_as_designed(tmp_path, n):
    """Rows, randomized sketch, transport: 5 collectives in the sketch and 4 in the step, each O(N k)."""
    result = run(tmp_path, 2, {"shape": [n, n], "steps": 2})[0]
    largest = max(max(sizes) for _, sizes in result["collectives"])
    assert largest < n * n / 4
    assert largest <= n * (2 + 10)  # the all-reduce of Δᴴ P: N × (k + oversampling)
    assert len(result["collectives"]) == 9, result["collectives"]


def test_a_nan_on_one_rank_is_skipped_on_every_rank(tmp_path):
    results = run(tmp_path, 2, {"shape": [16, 16], "nan_rank": 1})
    assert [r["skipped"] for r in results] == [r["ref_skipped"] for r in results]
    assert results[0]["skipped"]["0"] >= 1  # Adam's moments hold NaN from then on: every later step is skipped too
    assert all(diff <= 1e-12 for r in results for _, diff in r["diffs"])


@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
def test_unitary_conv2d_steps_its_frequencies_without_communication(tmp_path, sketch):
    """The frequency batch sharded on its first axis: each rank steps its matrices; they agree on one number only."""
    results = run(tmp_path, 2, {"conv": True, "sketch": sketch})
    for result in results:
        assert all(max(sizes) == 1 for _, sizes in result["collectives"])  # the finite flags, one per parameter
        assert result["unitarity"] <= 1e-6  # complex64
        if sketch == "subspace":  # the draws of a basis are the unsharded one's: the very same steps
            assert all(diff == 0 for _, diff in result["diffs"]), result["diffs"]


@pytest.mark.parametrize("shape", [[16, 8], [8, 20]])
def test_distributed_checkpoint_resumes_bit_identical(tmp_path, shape):
    """torch.distributed.checkpoint of the model, the base optimizer and the wrapper's state (keys, bases, buffers)."""
    case = {"checkpoint": True, "shape": shape, "sketch": "subspace", "error_feedback": True}
    for result in run(tmp_path, 2, case):
        assert result["identical"] and all(result["bases"]) and result["steps"] == {"0": 6}


def test_errors_a_user_can_act_on(tmp_path):
    """A DTensor reaching a primitive is refused with what to do; an optimizer built before fully_shard says so."""
    messages = run(tmp_path, 2, {"errors": True})[0]["messages"]
    assert len(messages) == 3
    assert messages[0].startswith("unitarity_error: U is a DTensor") and "ProjUNN" in messages[0]
    assert messages[1].startswith("sketch: G is a DTensor") and "unitary_lowrank.sharded.step" in messages[1]
    assert "build the optimizer after sharding" in messages[2]
