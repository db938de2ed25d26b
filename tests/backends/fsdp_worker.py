"""One rank of the FSDP2 tests (run by test_fsdp.py in subprocesses, not collected by pytest).

Usage: python fsdp_worker.py RANK WORLD_SIZE INIT_FILE OUT_DIR CASE_JSON

The case (JSON): shape, dtype, method, sketch, error_feedback, steps, nan_rank (a rank whose gradient gets a NaN
at the second step), conv (a UnitaryConv2d instead of a matrix). Every rank trains a ``fully_shard``-ed copy and,
for comparison, an unsharded copy with the same batch; rank 0 writes what it measured as JSON.
"""

from __future__ import annotations

import copy
import gc
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d, haar_
from unitary_lowrank.backends.torch.oplog import CollectiveLog


class Matrix(torch.nn.Module):
    """One unitary weight (n×p) fitted to a random target, and an ordinary parameter beside it."""

    def __init__(self, shape, dtype):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(haar_(torch.empty(*shape, dtype=dtype), generator=generator))
        self.register_buffer("target", torch.randn(8, shape[-1], dtype=dtype, generator=generator))
        self.head = torch.nn.Parameter(torch.randn(shape[-1], dtype=dtype, generator=generator))  # FSDP2: one dtype

    def forward(self, x):
        return (torch.tanh(x @ self.W) - self.target).abs().pow(2).sum() + (self.head - 1).abs().pow(2).sum()


class Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = UnitaryConv2d(4, 8, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.conv(x).pow(2).mean()


def checkpoint(rank: int, world: int, mesh, out_dir: str, case: dict) -> None:
    """Train 6 steps; or 3, save with torch.distributed.checkpoint, load into fresh objects, 3 more: the same bits."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    dtype = getattr(torch, case.get("dtype", "float64"))

    def build():
        model = Matrix(case["shape"], dtype)
        fully_shard(model, mesh=mesh)
        groups = [{"params": [model.W], "unitary": True}, {"params": [model.head]}]
        sketch, feedback = case.get("sketch", "randomized"), case.get("error_feedback", False)
        base = torch.optim.Adam(groups, lr=1e-2)
        opt = ProjUNN(base, rank=2, seed=5, sketch=sketch, error_feedback=feedback, reorthonormalize_every=2)
        return model, opt

    def train(model, opt, steps, start):
        for step in range(start, start + steps):
            x = torch.randn(8, case["shape"][0], generator=torch.Generator().manual_seed(step)).to(dtype)
            opt.zero_grad()
            model(x).backward()
            opt.step()

    straight, straight_opt = build()
    train(straight, straight_opt, 6, 0)
    first, first_opt = build()
    train(first, first_opt, 3, 0)

    def state(model, opt):
        return {
            "model": get_model_state_dict(model),
            "optim": get_optimizer_state_dict(model, opt.optimizer),
            "projunn": opt.state_dict()["projunn"],
        }

    dcp.save(state(first, first_opt), checkpoint_id=f"{out_dir}/checkpoint")
    second, second_opt = build()  # fresh weights and state, overwritten by the load
    loaded = state(second, second_opt)
    dcp.load(loaded, checkpoint_id=f"{out_dir}/checkpoint")
    set_model_state_dict(second, loaded["model"])
    set_optimizer_state_dict(second, second_opt.optimizer, loaded["optim"])
    second_opt.load_state_dict({"base": second_opt.optimizer.state_dict(), "projunn": loaded["projunn"]})
    train(second, second_opt, 3, 3)
    identical = all(
        torch.equal(a.to_local(), b.to_local()) for a, b in zip(straight.parameters(), second.parameters(), strict=True)
    )
    bases = [torch.equal(straight_opt._bases[i], second_opt._bases[i]) for i in straight_opt._bases]
    with open(f"{out_dir}/rank{rank}.json", "w") as handle:
        json.dump({"rank": rank, "identical": identical, "bases": bases, "steps": second_opt.projunn_state["steps"]},
                  handle)  # fmt: skip


def errors(rank: int, mesh, out_dir: str) -> None:
    """What a user meets: a DTensor passed to a primitive, and an optimizer built before fully_shard."""
    import warnings

    import unitary_lowrank as ul

    model = Matrix([8, 8], torch.float64)
    messages = []
    early = ProjUNN(torch.optim.Adam([{"params": [model.W], "unitary": True}], lr=1e-2))  # before sharding
    fully_shard(model, mesh=mesh)
    for call in (lambda: ul.unitarity_error(model.W), lambda: ul.sketch(model.W.detach(), 1, seed=0)):
        try:
            call()
        except TypeError as err:
            messages.append(str(err))
    model(torch.randn(8, 8, dtype=torch.float64)).backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early.step()
    messages += [str(w.message) for w in caught]
    with open(f"{out_dir}/rank{rank}.json", "w") as handle:
        json.dump({"rank": rank, "messages": messages}, handle)


def main(rank: int, world: int, init_file: str, out_dir: str, case: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    if case.get("checkpoint"):
        checkpoint(rank, world, mesh, out_dir, case)
        finish()
        return
    if case.get("errors"):
        errors(rank, mesh, out_dir)
        finish()
        return
    dtype = getattr(torch, case.get("dtype", "float64"))
    model = Conv() if case.get("conv") else Matrix(case["shape"], dtype)
    reference = copy.deepcopy(model)
    if case.get("conv"):  # FSDP2 shards one dtype per unit: the real (self-conjugate) blocks stay replicated
        fully_shard(model.conv, mesh=mesh, ignored_params={model.conv.real})
    else:
        fully_shard(model, mesh=mesh)
    options = {
        "rank": case.get("rank", 2),
        "method": case.get("method", "transport"),
        "retraction": case.get("retraction", "exp"),
        "sketch": case.get("sketch", "randomized"),
        "error_feedback": case.get("error_feedback", False),
        "reorthonormalize_every": case.get("every", 100),
        "check_every": None,
    }

    def make(m):
        unitary = [p for name, p in m.named_parameters() if "head" not in name]
        rest = [p for name, p in m.named_parameters() if "head" in name]
        groups = [{"params": unitary, "unitary": True}] + ([{"params": rest}] if rest else [])
        return ProjUNN(torch.optim.Adam(groups, lr=1e-2), seed=3, **options)

    opt, ref_opt = make(model), make(reference)
    log = CollectiveLog()
    shape = case["shape"] if not case.get("conv") else (4, 4)
    for step in range(case.get("steps", 5)):
        g = torch.Generator().manual_seed(100 + step)  # the same batch on every rank
        x = torch.randn(8, 4, 8, 8, generator=g) if case.get("conv") else torch.randn(8, shape[0], generator=g)
        x = x.to(dtype) if not case.get("conv") else x
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            m(x).backward()
        if step == 1 and case.get("nan_rank") is not None:
            W = next(iter(model.parameters()))
            if rank == case["nan_rank"] and W.grad.to_local().numel():
                W.grad.to_local().view(-1)[0] = float("nan")
            ref_W = next(iter(reference.parameters()))
            ref_W.grad.view(-1)[0] = float("nan")  # the unsharded copy skips that step too
        with log if step == case.get("steps", 5) - 1 else _nothing():
            opt.step()
        ref_opt.step()
    skipped = {i: int(c) for i, c in opt._skipped.items()}
    ref_skipped = {i: int(c) for i, c in ref_opt._skipped.items()}
    diffs = []
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        diffs.append([name, float((full.detach() - q.detach()).abs().max())])
    W = next(iter(model.parameters())).full_tensor().detach()
    U = W if W.shape[-1] <= W.shape[-2] else W.mH
    eye = torch.eye(U.shape[-1], dtype=U.dtype)
    unitarity = float((U.mH @ U - eye).abs().max())
    collectives = [[name, sizes] for name, sizes, _ in log.calls]
    result = {"rank": rank, "diffs": diffs, "unitarity": unitarity, "collectives": collectives, "skipped": skipped,
              "ref_skipped": ref_skipped}  # fmt: skip
    with open(f"{out_dir}/rank{rank}.json", "w") as handle:
        json.dump(result, handle)
    finish()


def finish() -> None:
    """Tear down while the interpreter is whole: no collective in flight, no tensor left to gloo's threads."""
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
