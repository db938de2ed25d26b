"""ProjUNN on sharded parameters: ``torch.distributed`` collectives and FSDP2's ``DTensor`` layouts.

:class:`ProcessGroup` gives :mod:`unitary_lowrank.sharded` its collectives on a
``torch.distributed`` process group (gloo on the CPU, NCCL on GPUs);
:func:`split_of_parameter` reads how FSDP2 (``fully_shard``) laid a parameter out:

- a matrix (n×p) with ``Shard(0)`` on a one-dimensional mesh: rows sharded.
  The step works on the tall view: a square or tall weight's rows are split, a
  wide weight's adjoint has its columns split;
- a batch of matrices (..., n, p) with ``Shard(0)`` on a leading (batch) axis, as
  a ``UnitaryConv2d``'s frequency matrices: every process steps its own
  matrices, and the processes only agree on whether the update was finite
  (one all-reduce of one number).

Anything else (``Shard(1)`` of a matrix, tensor parallelism, several mesh
dimensions) is refused with a message that names the placement.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from unitary_lowrank._split import Split
from unitary_lowrank.sharded import shard_sizes

__all__ = ["ProcessGroup", "is_sharded", "split_of_parameter"]


class ProcessGroup:
    """The collectives of :mod:`unitary_lowrank.sharded` on a ``torch.distributed`` process group.

    Each call is one ``torch.distributed`` collective on a contiguous tensor:
    ``all_reduce`` (SUM or MAX) and ``all_gather_single``. Complex tensors
    are reduced and gathered as their real view.
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.index = dist.get_rank(group)
        self.size = dist.get_world_size(group)

    def all_reduce(self, x: torch.Tensor, op: str = "sum") -> torch.Tensor:
        result = x.detach().clone(memory_format=torch.contiguous_format)
        target = torch.view_as_real(result) if result.is_complex() else result
        dist.all_reduce(target, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=self.group)
        return result

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        source = x.detach().contiguous()
        flat = torch.view_as_real(source).reshape(-1) if source.is_complex() else source.reshape(-1)
        gathered = torch.empty(self.size * flat.numel(), dtype=flat.dtype, device=flat.device)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the older name
        gather(gathered, flat, group=self.group)  # the blocks one after the other
        if source.is_complex():
            return torch.view_as_complex(gathered.reshape(self.size, *source.shape, 2))
        return gathered.reshape(self.size, *source.shape)


def is_sharded(tensor: Any) -> bool:
    """True for a ``DTensor`` (checked without importing ``torch.distributed.tensor`` when it is not loaded)."""
    import sys

    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def split_of_parameter(param: Any, name: str) -> Split:
    """How a ``DTensor`` parameter is split (its rows, or its batch axis), or a ``ValueError`` naming ``name``."""
    from torch.distributed.tensor import Shard

    mesh, placements = param.device_mesh, param.placements
    shape = tuple(param.shape)
    supported = mesh.ndim == 1 and len(placements) == 1 and isinstance(placements[0], Shard)
    dim = placements[0].dim % len(shape) if supported else None
    if not supported or dim not in (0, len(shape) - 2) or (len(shape) > 2 and dim != 0):
        raise ValueError(
            f"ProjUNN: parameter {name} is a DTensor placed {placements} on a mesh of shape {tuple(mesh.shape)}; "
            "ProjUNN steps parameters sharded on their first axis over one mesh dimension (FSDP2's fully_shard "
            "default: rows of a matrix, or the batch axis of a batch of matrices). Shard it that way, or "
            "keep it replicated."
        )
    group = ProcessGroup(mesh.get_group())
    return Split(group, "batch" if len(shape) > 2 else "n", tuple(shard_sizes(shape[0], group.size)))
