"""Sharded parameters (``DTensor``, as FSDP2's ``fully_shard`` makes them): full-tensor statistics from local shards.

AlphaGrad normalizes every tensor by the norm of the **whole** tensor. Under FSDP2 each rank holds one shard of
every parameter and of its gradient (``Shard(0)`` over the data-parallel mesh dimension, possibly uneven or empty).
Each rank computes the squared norms of its shards of all gradients at once, and one all-reduce (sum) of that
vector over the shard group gives every rank the full tensors' norms: one collective per step for the whole
optimizer, instead of one per tensor as DTensor's own ``vector_norm`` would make. The same sum gives the monitors
their full-tensor counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

__all__ = ["check_not_fsdp1", "local", "shard_group", "sum_over_shards"]


def local(tensor: Tensor) -> Tensor:
    """This rank's shard of a ``DTensor`` (a view of its storage), any other tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def shard_group(tensors: Sequence[Tensor]) -> dist.ProcessGroup | None:
    """The process group over which ``tensors`` are sharded; ``None`` when none is a ``DTensor``.

    Raises ``ValueError`` unless every tensor is a ``DTensor`` sharded over the same single mesh dimension (FSDP2,
    also HSDP's 2-D mesh): a full-tensor norm needs the squared norms of exactly one shard of each tensor per rank.
    """
    dtensors = [t for t in tensors if isinstance(t, DTensor)]
    if not dtensors:
        return None
    groups = set()
    for t in dtensors:
        dims = [i for i, placement in enumerate(t.placements) if placement.is_shard()]
        if len(dims) != 1 or any(placement.is_partial() for placement in t.placements):
            raise ValueError(
                f"AlphaGrad needs DTensor parameters sharded over exactly one mesh dimension (as FSDP2's fully_shard "
                f"makes them); got placements {t.placements}"
            )
        groups.add((t.device_mesh, dims[0]))
    if len(dtensors) != len(tensors) or len(groups) != 1:
        raise ValueError(
            "AlphaGrad needs all parameters of an optimizer sharded the same way (every one a DTensor on one mesh "
            f"dimension, as FSDP2's fully_shard makes them); got {len(dtensors)} DTensors of {len(tensors)} tensors "
            f"over {len(groups)} mesh dimensions"
        )
    mesh, dim = groups.pop()
    return mesh.get_group(dim)


def sum_over_shards(values: Tensor, tensors: Sequence[Tensor]) -> Tensor:
    """``values`` (per-shard sums such as squared norms or counts) summed over the shard group of ``tensors``, in
    place, with one all-reduce; unchanged when nothing is sharded."""
    group = shard_group(tensors)
    if group is not None:
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return values


def check_not_fsdp1(params: Sequence[Tensor]) -> None:
    """Refuse FSDP1's flattened parameters: their shards mix pieces of many tensors, so per-tensor norms are
    impossible (with ``use_orig_params=True`` too, where each parameter is a flat piece of its local shard)."""
    if any(getattr(p, "_fsdp_flattened", False) for p in params):
        raise ValueError(
            "AlphaGrad cannot step FSDP1 (FullyShardedDataParallel) parameters: they are flattened shards, so the "
            "per-tensor gradient norms it needs do not exist on any rank. Shard with FSDP2 instead "
            "(torch.distributed.fsdp.fully_shard, or Lightning's ModelParallelStrategy), whose DTensor parameters "
            "AlphaGrad steps exactly."
        )

