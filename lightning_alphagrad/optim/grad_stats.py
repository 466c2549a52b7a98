"""Gradient statistics of one optimizer step, computed once and shared by the monitors and the adaptive alpha.

:class:`~lightning_alphagrad.callbacks.GradNormMonitor`, :class:`~lightning_alphagrad.callbacks.TanhSaturationMonitor`
and :class:`~lightning_alphagrad.schedules.SaturationTargetAlpha` all need the L2 norm of every gradient tensor of an
optimizer. :func:`step_grad_norms` computes them on its first call and returns the same tensors to every later call
that sees the same gradients: the same tensor objects (held by weak reference) with unchanged version counters, so an
in-place change such as gradient clipping, or the next backward, triggers a fresh computation. AlphaGrad's own step
takes them too (:func:`cached_grad_norms`) when its kernel computes norms eagerly, with the same function, so the
step's result is the same with or without monitors. With all three on, a logging step reads the gradients once for
the norms (instead of the optimizer) and once for the update magnitudes: one pass more than an unmonitored step.
(The whole-group compiled graph for small networks computes its norms inside the graph and does not use them.)
Version counters see every in-place change made through the tensor or its views, as autograd relies on; a change
made through ``grad.data`` bypasses them, so code that edits gradients between the monitors and the step must
edit ``grad`` itself (as ``torch.nn.utils.clip_grad_norm_`` and Lightning's clipping do).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from lightning_alphagrad.optim.functional import effective_alpha, grad_norms, normalized_tanh_update_flat_, upcast_dtype
from lightning_alphagrad.optim.kernels.flat import flatten
from lightning_alphagrad.optim.sharded import local

__all__ = ["FlatMagnitudes", "GradEntry", "cached_grad_norms", "step_grad_norms", "update_magnitudes"]


class GradEntry(NamedTuple):
    """A parameter with a gradient: its param group, its index in the group, the parameter, its real gradient."""

    group_index: int
    index: int
    param: Tensor
    grad: Tensor  # complex gradients as their real view (..., 2), the way AlphaGrad updates them


class _Cached(NamedTuple):
    grads: list[weakref.ref[Tensor]]
    versions: list[int]
    norms: list[Tensor]
    position: dict[int, int]  # id(grad) -> index in the lists above


_CACHE: weakref.WeakKeyDictionary[Optimizer, _Cached] = weakref.WeakKeyDictionary()


def _entries(optimizer: Optimizer) -> list[GradEntry]:
    entries = []
    for group_index, group in enumerate(optimizer.param_groups):
        for index, p in enumerate(group["params"]):
            if p.grad is not None:
                grad = torch.view_as_real(p.grad) if torch.is_complex(p.grad) else p.grad
                entries.append(GradEntry(group_index, index, p, grad))
    return entries


@torch.no_grad()
def step_grad_norms(optimizer: Optimizer) -> tuple[list[GradEntry], list[Tensor]]:
    """Every parameter of ``optimizer`` with a gradient, and each gradient's L2 norm (0-d, fp32 for fp16/bf16).

    Computed with one ``_foreach_norm`` per device and dtype and no host transfer; cached for the current gradients.
    """
    entries = _entries(optimizer)
    grads = [p.grad for _, _, p, _ in entries]
    versions = [g._version for g in grads]
    cached = _CACHE.get(optimizer)
    if (
        cached is not None
        and cached.versions == versions
        and len(cached.grads) == len(grads)
        and all(ref() is g for ref, g in zip(cached.grads, grads, strict=True))
    ):
        return entries, cached.norms
    norms = grad_norms([entry.grad for entry in entries])
    position = {id(g): i for i, g in enumerate(grads)}
    _CACHE[optimizer] = _Cached([weakref.ref(g) for g in grads], versions, norms, position)
    return entries, norms


def cached_grad_norms(optimizer: Optimizer, grads: list[Tensor]) -> list[Tensor] | None:
    """The norms :func:`step_grad_norms` computed for exactly these gradient tensors, if none changed since; else
    ``None``. AlphaGrad's step asks first, so that a monitored step reads its gradients for norms only once."""
    cached = _CACHE.get(optimizer)
    if cached is None:
        return None
    norms = []
    for g in grads:
        i = cached.position.get(id(g))
        if i is None or cached.grads[i]() is not g or cached.versions[i] != g._version:
            return None
        norms.append(cached.norms[i])
    return norms


class FlatMagnitudes(NamedTuple):
    """``|u|`` of some entries (one param group, device and dtype), flattened one after another; of this rank's
    shards for sharded (``DTensor``) gradients."""

    indices: list[int]  # positions in the entries list, in order
    numels: list[int]  # elements of each of them here (of the local shard when sharded)
    magnitudes: Tensor  # 1-D, sum(numels) elements


@torch.no_grad()
def update_magnitudes(optimizer: Optimizer, entries: list[GradEntry], norms: list[Tensor]) -> list[FlatMagnitudes]:
    """``|u|``: the update AlphaGrad makes from these gradients with each group's current ``alpha``, ``eps`` and
    ``size_aware``, computed by :func:`~lightning_alphagrad.optim.functional.normalized_tanh_update_flat_` (the flat
    kernel's function, here with ``torch.tanh``) on one flat copy of the gradients per group, device and dtype.
    Sharded gradients: ``u`` of the local shards, with the full tensors' ``norms`` and sizes (so with the values the
    optimizer uses); sum what is derived from them with ``sharded.sum_over_shards``."""
    batches: dict[tuple[int, torch.device, torch.dtype], list[int]] = {}
    for i, entry in enumerate(entries):
        batches.setdefault((entry.group_index, entry.grad.device, entry.grad.dtype), []).append(i)
    result = []
    for (group_index, _, dtype), indices in batches.items():
        group = optimizer.param_groups[group_index]
        grads = [local(entries[i].grad) for i in indices]
        numels = [g.numel() for g in grads]
        flat = flatten(grads).to(upcast_dtype(dtype))
        alpha = float(group["alpha"])
        steepness: Tensor | float = alpha
        if group.get("size_aware", False):
            alphas = [effective_alpha(alpha, entries[i].grad.numel(), True) for i in indices]
            steepness = torch.tensor(alphas, dtype=flat.dtype, device=flat.device)
        group_norms = torch.stack([norms[i] for i in indices]).to(flat.dtype)
        normalized_tanh_update_flat_(flat, numels, group_norms, steepness, group["eps"], fast_tanh=False)
        result.append(FlatMagnitudes(indices, numels, flat.abs_()))
    return result
