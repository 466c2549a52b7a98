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

from lightning_alphagrad.optim.functional import grad_norms, normalized_tanh_updates

__all__ = ["GradEntry", "cached_grad_norms", "step_grad_norms", "update_magnitudes"]


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


@torch.no_grad()
def update_magnitudes(optimizer: Optimizer, entries: list[GradEntry], norms: list[Tensor]) -> list[Tensor]:
    """``|u|`` flattened, per entry: the update AlphaGrad makes from these gradients with each group's current
    ``alpha``, ``eps`` and ``size_aware``
    (:func:`~lightning_alphagrad.optim.functional.normalized_tanh_updates`, the foreach kernel's function)."""
    magnitudes: list[Tensor | None] = [None] * len(entries)
    batches: dict[tuple[int, torch.device, torch.dtype], list[int]] = {}
    for i, entry in enumerate(entries):
        batches.setdefault((entry.group_index, entry.grad.device, entry.grad.dtype), []).append(i)
    for (group_index, _, _), indices in batches.items():
        group = optimizer.param_groups[group_index]
        updates = normalized_tanh_updates(
            [entries[i].grad for i in indices],
            [norms[i] for i in indices],
            group["alpha"],
            group["eps"],
            size_aware=group.get("size_aware", False),
        )
        torch._foreach_abs_(updates)
        for i, update in zip(indices, updates, strict=True):
            magnitudes[i] = update.reshape(-1)
    return magnitudes  # type: ignore[return-value]
