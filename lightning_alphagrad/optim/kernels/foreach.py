"""The multi-tensor kernel: the reference arithmetic in ``torch._foreach_*`` ops (one launch per op on CUDA)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from lightning_alphagrad.optim.functional import StepHyper, TensorLists, normalized_tanh_updates

__all__ = ["foreach_alphagrad"]


def foreach_alphagrad(tensors: TensorLists, hyper: StepHyper, finite: Tensor | None = None) -> None:
    """Same contract as :func:`~lightning_alphagrad.optim.kernels.reference.single_tensor_alphagrad`.

    Extra memory: one set of update tensors the size of ``params`` (fp32 copies for fp16/bf16 gradients).
    """
    lr, alpha, momentum, dampening, nesterov, weight_decay, eps, size_aware = hyper
    params, grads, bufs, norms, numels = tensors
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs, norms], with_indices=True  # type: ignore[list-item]
    )
    for (_device, _dtype), ((dev_params, dev_grads, dev_bufs, dev_norms), indices) in grouped.items():
        dev_numels = [numels[i] for i in indices] if numels is not None else None
        if finite is not None:
            dev_grads = [torch.where(finite, g, 0) for g in dev_grads]
        updates = normalized_tanh_updates(dev_grads, dev_norms, alpha, eps, size_aware=size_aware, numels=dev_numels)
        if updates[0].dtype != dev_params[0].dtype:
            updates = [u.to(dev_params[0].dtype) for u in updates]

        if momentum > 0:
            old = [j for j, buf in enumerate(dev_bufs) if buf is not None]
            old_bufs, old_updates = [dev_bufs[j] for j in old], [updates[j] for j in old]
            if old and finite is None:
                torch._foreach_mul_(old_bufs, momentum)
                torch._foreach_add_(old_bufs, old_updates, alpha=1 - dampening)
            elif old:
                new = torch._foreach_add(torch._foreach_mul(old_bufs, momentum), old_updates, alpha=1 - dampening)
                for buf, n in zip(old_bufs, new, strict=True):
                    buf.copy_(torch.where(finite, n, buf))
            for j, buf in enumerate(dev_bufs):
                if buf is None:  # first step of this parameter: buf = u
                    dev_bufs[j] = bufs[indices[j]] = updates[j].clone()
            if nesterov:
                torch._foreach_add_(updates, dev_bufs, alpha=momentum)
            else:
                updates = dev_bufs

        if finite is None:
            if weight_decay != 0:
                torch._foreach_mul_(dev_params, 1 - lr * weight_decay)
            torch._foreach_add_(dev_params, updates, alpha=-lr)
        else:
            for param, update in zip(dev_params, updates, strict=True):
                param.copy_(torch.where(finite, param * (1 - lr * weight_decay) - lr * update, param))
