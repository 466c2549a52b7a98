"""AlphaGrad math shared by the optimizer and the monitoring callbacks.

For one parameter tensor with gradient ``g`` (any shape, ``n = g.numel()`` elements):

- ``g~ = g / (||g||_2 + eps)``      (norm over all ``n`` elements, computed in fp32 for fp16/bf16 gradients)
- ``u  = tanh(alpha_t * g~)``       (elementwise, every component in (-1, 1))

where ``alpha_t = alpha`` or, with ``size_aware=True``, ``alpha_t = alpha * sqrt(n)``. Since ``||g~|| < 1`` the entries
of ``g~`` have size ``~1/sqrt(n)``, so a fixed ``alpha`` bends tanh much less on big tensors than on small ones;
``alpha * sqrt(n)`` makes ``alpha`` the steepness applied to the RMS-normalized gradient ``sqrt(n) * g~``.

``u`` in three forms: of one tensor (:func:`normalized_tanh_update`, the reference kernel's), of a list of tensors
(:func:`normalized_tanh_updates`, ``_foreach`` ops) and of gradients stored one after another in a flat vector, in
place (:func:`normalized_tanh_update_flat_`, the flat kernel's and the monitors'). The compiled kernel traces the same
arithmetic into its graph.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

from lightning_alphagrad.optim.fast_tanh import sigmoid_tanh_
from lightning_alphagrad.optim.sharded import local, shard_group

__all__ = [
    "StepHyper",
    "TensorLists",
    "effective_alpha",
    "grad_norm",
    "grad_norms",
    "indices_by_device_and_dtype",
    "normalized_tanh_update",
    "normalized_tanh_update_flat_",
    "normalized_tanh_updates",
    "upcast_dtype",
]


class StepHyper(NamedTuple):
    """A param group's hyper-parameters as every kernel takes them (``maximize`` aside: the reference and foreach
    kernels get negated gradients, the flat and compiled ones fold the sign into ``alpha``)."""

    lr: float
    alpha: float
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    eps: float
    size_aware: bool

    @classmethod
    def of(cls, group: dict[str, Any]) -> StepHyper:
        return cls._make(map(group.__getitem__, cls._fields))


class TensorLists(NamedTuple):
    """One group's inputs of the per-tensor kernels (reference and foreach), aligned lists: the parameters, their
    gradients (sign-flipped if maximizing), momentum buffers (``None`` where a parameter has none yet: the kernel
    puts the new one there) and the gradients' L2 norms (0-d, see :func:`grad_norm`); ``numels``: the elements of each
    whole tensor when these are local shards (``size_aware`` needs them)."""

    params: list[Tensor]
    grads: list[Tensor]
    bufs: list[Tensor | None]
    norms: list[Tensor]
    numels: list[int] | None = None


def upcast_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype AlphaGrad computes norms and updates in: fp32 for fp16/bf16, the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def effective_alpha(alpha: float, numel: int, size_aware: bool) -> float:
    """Steepness actually applied to ``g~`` of a tensor with ``numel`` elements."""
    return alpha * math.sqrt(numel) if size_aware else alpha


# Dense contiguous fp32/fp64 tensors of more elements than this take their norm as sqrt(dot(g, g)): BLAS's dot uses
# every thread and several accumulators, torch's norms one thread here. Measured on the 25M MLP of
# benchmarks/bench_optimizer.py (12 tensors, 2 threads): 1.9 ms against 3.3 ms for _foreach_norm, relative error
# against an fp64 sum 1-3e-5 against 9e-5; equal at 1 thread. Smaller tensors (all of RL's networks) keep vector_norm.
DOT_MIN_NUMEL = 1 << 18


def _dot_norm(grad: Tensor) -> Tensor | None:
    """``sqrt(dot(g, g))`` where it applies (see ``DOT_MIN_NUMEL``), else ``None``."""
    if grad.numel() <= DOT_MIN_NUMEL or grad.dtype not in (torch.float32, torch.float64):
        return None
    if grad.layout != torch.strided or not grad.is_contiguous():
        return None
    flat = grad.view(-1)
    return torch.dot(flat, flat).sqrt()


def grad_norm(grad: Tensor) -> Tensor:
    """L2 norm over all elements of ``grad`` as a 0-d tensor in ``upcast_dtype(grad.dtype)``."""
    norm = _dot_norm(grad)
    return norm if norm is not None else torch.linalg.vector_norm(grad, dtype=upcast_dtype(grad.dtype))


def indices_by_device_and_dtype(tensors: list[Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), in order of first appearance (the foreach kernels' unit)."""
    by_kind: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        by_kind.setdefault((t.device, t.dtype), []).append(i)
    return list(by_kind.values())


def grad_norms(grads: list[Tensor], foreach: bool = True) -> list[Tensor]:
    """:func:`grad_norm` of every tensor in ``grads``; ``foreach``: one ``_foreach_norm`` per device and dtype for
    the tensors that do not take ``dot`` (see ``DOT_MIN_NUMEL``).

    Sharded gradients (``DTensor``, FSDP2) get the norms of the full tensors, as plain 0-d tensors equal on every
    rank: the squared norms of the local shards, summed in fp64 by one all-reduce (see ``sharded.py``).
    """
    group = shard_group(grads)
    if group is not None:
        norms = grad_norms([local(g) for g in grads], foreach)
        squares = torch.stack([n.to(torch.float64) for n in norms]).square_()
        dist.all_reduce(squares, op=dist.ReduceOp.SUM, group=group)
        return [full.to(n.dtype) for full, n in zip(squares.sqrt_().unbind(), norms, strict=True)]
    if not foreach:
        return [grad_norm(g) for g in grads]
    norms: list[Tensor | None] = [None] * len(grads)
    if grads and max(map(Tensor.numel, grads)) > DOT_MIN_NUMEL:
        norms = [_dot_norm(g) for g in grads]
    for kind in indices_by_device_and_dtype(grads):
        idx = [i for i in kind if norms[i] is None]  # the rest: one _foreach_norm
        if not idx:
            continue
        dtype = upcast_dtype(grads[idx[0]].dtype)
        for i, n in zip(idx, torch._foreach_norm([grads[i] for i in idx], 2, dtype=dtype), strict=True):
            norms[i] = n
    return norms  # type: ignore[return-value]


def normalized_tanh_update(
    grad: Tensor,
    alpha: float,
    eps: float,
    *,
    size_aware: bool = False,
    norm: Tensor | None = None,
    numel: int | None = None,
) -> Tensor:
    """``u = tanh(alpha_t * g / (||g|| + eps))`` for one tensor, in ``upcast_dtype(grad.dtype)``.

    Args:
        grad: gradient of one parameter tensor, any shape.
        alpha: steepness (> 0).
        eps: added to the norm (> 0); a zero gradient gives a zero update.
        size_aware: use ``alpha * sqrt(grad.numel())`` as the steepness.
        norm: ``||grad||_2`` if already computed (as returned by :func:`grad_norm`).
        numel: elements of the whole tensor when ``grad`` is one shard of it (for ``size_aware``).

    Returns:
        ``u`` with the shape of ``grad``; this is exactly the update direction the optimizer uses before momentum.
    """
    if norm is None:
        norm = grad_norm(grad)
    normalized = grad.to(norm.dtype) / (norm + eps)
    return normalized.mul_(effective_alpha(alpha, grad.numel() if numel is None else numel, size_aware)).tanh_()


def normalized_tanh_updates(
    grads: list[Tensor],
    norms: list[Tensor],
    alpha: float,
    eps: float,
    *,
    size_aware: bool = False,
    numels: list[int] | None = None,
) -> list[Tensor]:
    """:func:`normalized_tanh_update` of every tensor of ``grads`` (one device and dtype), as ``_foreach`` ops.

    Args:
        grads: gradients of one param group, all on one device with one dtype.
        norms: their L2 norms (0-d, ``upcast_dtype`` of the gradients), as from :func:`grad_norms`.
        alpha, eps, size_aware: the group's hyper-parameters.
        numels: elements of each whole tensor when ``grads`` are shards (for ``size_aware``).

    Returns:
        New tensors ``u`` in ``upcast_dtype(grads[0].dtype)``, shaped like ``grads``; the foreach kernel's update.
    """
    compute = upcast_dtype(grads[0].dtype)
    if compute != grads[0].dtype:
        grads = [g.to(compute) for g in grads]
    updates = torch._foreach_div(grads, torch._foreach_add(norms, eps))
    if size_aware:
        numels = [g.numel() for g in grads] if numels is None else numels
        torch._foreach_mul_(updates, [effective_alpha(alpha, n, True) for n in numels])
    else:
        torch._foreach_mul_(updates, alpha)
    torch._foreach_tanh_(updates)
    return updates


def normalized_tanh_update_flat_(
    flat: Tensor, numels: list[int], norms: Tensor, steepness: Tensor | float, eps: float, *, fast_tanh: bool
) -> list[Tensor]:
    """In place: ``flat <- u = tanh(alpha_t * g / (||g|| + eps))`` for gradients stored one after another.

    Args:
        flat: 1-D, the gradients ``g`` of one group (segment ``i`` holds ``numels[i]`` elements), in the compute dtype.
        norms: 1-D, ``||g||`` per segment (as from :func:`~lightning_alphagrad.optim.functional.grad_norms`).
        steepness: ``alpha_t``, one number or 1-D per segment (``alpha * sqrt(numel)`` when size-aware).
        fast_tanh: ``2 * sigmoid(2x) - 1`` (abs. error < 1e-6) instead of ``torch.tanh``.

    Returns:
        The segments of ``flat`` (views), i.e. ``u`` of every gradient, flattened.
    """
    scale = torch.div(steepness * 2.0 if fast_tanh else steepness, norms.add(eps))
    segments = flat.split(numels)
    torch._foreach_mul_(segments, scale.unbind())
    if fast_tanh:
        sigmoid_tanh_(flat)
    else:
        flat.tanh_()
    return list(segments)
