"""What the projUNN-D step pays for its r×r polar core in double precision (single-precision weights).

Times ``unitary_lowrank.project`` on float32 and complex64 weights with the
core in double (the library's behaviour) and in the working precision (the
ablation: the backend offers no wide dtype), interleaved in one process, one
thread; prints the median time of each and their ratio::

    python benchmarks/core_precision.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from step_cost import interleaved
from unitary_lowrank.backends import Backend

import unitary_lowrank as ul

#: (label, batch, n, k): one small matrix, the frequencies of a LipConvNet's first block, one large matrix.
CASES = (("64×64", (), 64, 4), ("544 × 16×16", (544,), 16, 4), ("1024×1024", (), 1024, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    wide = Backend.wide_dtype
    single = lambda self, xp, dtype, device: None  # noqa: E731
    rng = np.random.default_rng(0)
    print("| weights | dtype | core in double (ms) | core in working precision (ms) | ratio |")
    print("|---|---|---|---|---|")
    for label, batch, n, k in CASES:
        for dtype in (torch.float32, torch.complex64):
            U = torch.as_tensor(ul.random_unitary(n, dtype=str(dtype).removeprefix("torch."), batch_shape=batch))
            A = torch.as_tensor(rng.standard_normal((*batch, n, k)) * 1e-2).to(dtype)
            B = torch.as_tensor(rng.standard_normal((*batch, n, k))).to(dtype)

            def step(precision, U=U, A=A, B=B) -> None:
                Backend.wide_dtype = precision
                try:
                    ul.project(U, A, B, check_finite=False)
                finally:
                    Backend.wide_dtype = wide

            calls = max(1, int(2e7 // (max(1, int(np.prod(batch))) * n * n * k)))
            times = interleaved({"double": lambda: step(wide), "working": lambda: step(single)}, calls, args.repeats)
            print(
                f"| {label} | {str(dtype).removeprefix('torch.')} | {1e3 * times['double']:.3f} | "
                f"{1e3 * times['working']:.3f} | {times['double'] / times['working']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
