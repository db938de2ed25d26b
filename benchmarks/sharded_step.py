"""What a ProjUNN step on an FSDP2-sharded weight sends, against gathering the weight: bytes per step per weight.

    python benchmarks/sharded_step.py                 # 2 and 4 gloo processes, N = 128 and 1024: a Markdown table
    python benchmarks/sharded_step.py --out docs/runs/sharded

Each configuration starts its processes (gloo on loopback, file rendezvous),
shards one float64 weight with ``fully_shard``, runs two ``ProjUNN(Adam)``
steps and logs, inside the second ``opt.step()`` only, every collective with
the elements of its tensors (a ``TorchDispatchMode``). "Bytes" are what one
process contributes to the collectives' inputs, counted once per collective
(an all-reduce of m elements: m · 8 bytes). The baseline is the all-gather of
the weight a gather-based optimizer step would need: N² · 8 · (P − 1)/P bytes
received per process. FSDP2's own forward/backward traffic (2–3 gathers or
scatters of the weight per step) is the same for both and not counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = [  # (shape, method, sketch)
    ((None, None), "transport", "randomized"),
    ((None, None), "project", "randomized"),
    ((None, None), "transport", "subspace"),
    (("wide", None), "transport", "randomized"),
]


def worker(rank: int, world: int, rendezvous: str, out: str, n: int, p: int, method: str, sketch: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from unitary_lowrank.backends.torch import ProjUNN, haar_
    from unitary_lowrank.backends.torch.oplog import CollectiveLog

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    model = torch.nn.Linear(p, n, bias=False, dtype=torch.float64)  # weight n×p
    haar_(model.weight.data, generator=torch.Generator().manual_seed(0))
    fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    opt = ProjUNN(torch.optim.Adam([{"params": [model.weight], "unitary": True}], lr=1e-3), rank=4, method=method,
                  sketch=sketch, check_every=None)  # fmt: skip
    log = CollectiveLog()
    for step in range(2):
        x = torch.randn(16, p, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        if step == 1:
            with log:
                opt.step()
        else:
            opt.step()
    if rank == 0:
        Path(out).write_text(json.dumps([[name, sent] for name, _, sent in log.calls]))
    dist.barrier()  # as the test workers: no collective in flight when gloo is torn down
    gc.collect()
    dist.destroy_process_group()


def measure(world: int, n: int, p: int, method: str, sketch: str) -> list:
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/calls.json"
        env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
        args = [str(world), f"{folder}/rendezvous", out, str(n), str(p), method, sketch]
        processes = [
            subprocess.Popen([sys.executable, __file__, "--worker", str(rank), *args], env=env) for rank in range(world)
        ]
        for process in processes:
            if process.wait(timeout=600):
                raise RuntimeError(f"a worker failed (world {world}, {n}×{p}, {method}, {sketch})")
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write table.md and results.json into this folder")
    args = parser.parse_args(argv)
    if args.worker:
        rank, world, rendezvous, out, n, p, method, sketch = args.worker
        worker(int(rank), int(world), rendezvous, out, int(n), int(p), method, sketch)
        return 0
    rows, results = [], []
    header = "| processes | weight | method | sketch | collectives | bytes sent per process | all-gather of W | ratio |"
    rows += [header, "|---:|---|---|---|---:|---:|---:|---:|"]
    for world in (2, 4):
        for size in (128, 1024):
            for (wide, _), method, sketch in CONFIGS:
                n, p = (size // 4, size) if wide else (size, size)
                calls = measure(world, n, p, method, sketch)
                sent = sum(bytes_ for _, bytes_ in calls)
                gather = n * p * 8 * (world - 1) // world
                results.append({"world": world, "n": n, "p": p, "method": method, "sketch": sketch,
                                "collectives": calls, "bytes": sent, "gather_bytes": gather})  # fmt: skip
                rows.append(
                    f"| {world} | {n}×{p} | {method} | {sketch} | {len(calls)} | {sent:,} | {gather:,} | "
                    f"{gather / sent:.2g}× |"
                )
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "table.md").write_text(table + "\n")
        (folder / "results.json").write_text(json.dumps(results, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
