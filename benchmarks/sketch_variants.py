"""Two variants of the default step measured on the peer harness and not adopted (docs/choosing.md, *Rank*).

    python benchmarks/sketch_variants.py share 0.9 run rotation-1024 variant --lr 0.03 --seconds 20 --out r.json
    python benchmarks/sketch_variants.py oversample 8 run subspace-4096x256 variant --lr 0.01 --seconds 20 --out r.json

The first two words pick the variant, the rest is ``peers.py``'s command line,
where the method ``variant`` is the patched step (the other methods are as
they were). Both patch the library's private step in this process only.

- ``share S``: the default step (``rank="auto"``, randomized sketch), then of
  the sketch's k columns the fewest whose energy (σᵢ²) reaches the share S of
  the sketch's are kept, the others weighted by zero on the device: the
  rank chosen from the update with static shapes (the default-step issue,
  item 1).
- ``oversample P``: the subspace sketch at ``rank="auto"`` tracking k + P
  columns; the step takes the best rank-k part of the projection ``P Pᴴ Δ``
  (a small SVD of ``R = Δᴴ P``), and the next basis is R's left singular
  vectors, strongest first (item 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers

import unitary_lowrank._adapters as adapters
from unitary_lowrank._context import context_of
from unitary_lowrank._linalg import orthonormal_basis
from unitary_lowrank._split import ONE, key_draws


def energy_share(share: float) -> None:
    """Patch the default step's sketch: keep the fewest columns carrying ``share`` of the sketch's energy."""
    sketch = adapters.sketch_step

    def truncated(ctx, G, rank, *args, **kwargs):
        A, B = sketch(ctx, G, rank, *args, **kwargs)  # B has orthonormal columns: ‖A[:, i]‖² = σᵢ², decreasing
        energy = A.abs().square().sum(dim=-2)
        ahead = torch.cumsum(energy, dim=-1) - energy  # the energy of the columns before each
        keep = ahead < share * energy.sum(dim=-1, keepdim=True)
        return A * keep[..., None, :].to(A.dtype), B

    adapters.sketch_step = truncated
    peers.METHODS["variant"] = peers.Method(f"energy share {share}", peers.projunn(default=True), "projunn")


def oversampled_subspace(extra: int) -> None:
    """Patch the subspace sketch at ``rank="auto"``: track k + ``extra`` columns, step along the best rank k."""
    import unitary_lowrank.backends.torch.optim as optim

    def initial_basis(W, rank, key, split=ONE):
        ctx = context_of(W)
        n, p = split.shape(W)
        columns = min(n, p, adapters.rank_of(rank, (n, p)) + extra)
        return orthonormal_basis(ctx, key_draws(ctx, key, (*W.shape[:-2], min(n, p), columns), W.dtype))

    def subspace(ctx, delta, Q):
        P = orthonormal_basis(ctx, delta @ Q, "n")
        R = (P.mH @ delta).mH  # Δᴴ P
        k = adapters.rank_of("auto", tuple(delta.shape))
        U, sigma, Vh = torch.linalg.svd(R, full_matrices=False)  # P Rᴴ = (P Vhᴴ) diag(σ) Uᴴ
        return (P @ Vh.mH[..., :k]) * sigma[..., None, :k].to(R.dtype), U[..., :k], U

    optim.initial_basis = initial_basis
    adapters._subspace_sketch = subspace
    peers.METHODS["variant"] = peers.Method(
        f"subspace, k + {extra} tracked", peers.projunn("auto", "subspace"), "projunn"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] not in ("share", "oversample"):
        raise SystemExit(__doc__.split("\n\n")[1])
    torch.set_num_threads(1)
    if args[0] == "share":
        energy_share(float(args[1]))
    else:
        oversampled_subspace(int(args[1]))
    peers.main(args[2:])


if __name__ == "__main__":
    main()
