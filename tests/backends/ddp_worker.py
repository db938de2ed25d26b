"""One rank of the DistributedDataParallel test (run by test_torch_ddp.py, not collected by pytest).

Usage: python ddp_worker.py RANK WORLD_SIZE INIT_FILE OUT_DIR [SKETCH]
"""

import gc
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from unitary_lowrank.backends.torch import ProjUNN, haar_


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(
            haar_(torch.empty(24, 24, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
        )
        self.head = torch.nn.Linear(24, 3, dtype=torch.float64)

    def forward(self, x):
        return self.head(torch.tanh(x @ self.W.T))


def main(rank: int, world: int, init_file: str, out_dir: str, sketch: str = "randomized") -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(1000 + rank)  # different global RNG per rank: the sketch must not use it
    model = Model()
    ddp = DistributedDataParallel(model)
    base = torch.optim.Adam(
        [{"params": list(model.head.parameters())}, {"params": [model.W], "unitary": True, "lr": 1e-2}], lr=1e-2
    )
    opt = ProjUNN(base, rank=2, seed=7, sketch=sketch, error_feedback=sketch == "subspace")
    for step in range(20):
        g = torch.Generator().manual_seed(100 * step + rank)  # each rank sees its own data
        x = torch.randn(16, 24, dtype=torch.float64, generator=g)
        y = torch.randn(16, 3, dtype=torch.float64, generator=g)
        loss = (ddp(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    # tear down while the interpreter is whole: no collective in flight, nothing left for gloo's threads to free
    # (without this, gloo aborted at exit, "terminate called without an active exception", in CI)
    del ddp, opt
    dist.barrier()
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], *sys.argv[5:])
