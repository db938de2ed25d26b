"""DistributedDataParallel: two gloo ranks on loopback keep bitwise-identical unitary weights."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import unitary_lowrank as ul  # noqa: E402

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
def test_two_ranks_stay_identical_and_unitary(tmp_path, sketch):
    """Also with the subspace sketch and error feedback, whose state each rank keeps for itself."""
    init_file = tmp_path / "rendezvous"
    env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), "2", str(init_file), str(tmp_path), sketch],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, output
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    W = rank0["W"]
    assert float(ul.unitarity_error(W)) <= 1e-13
    from ddp_worker import Model

    assert not torch.equal(W, Model().W.detach())  # it trained
