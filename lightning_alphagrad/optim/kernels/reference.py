"""The reference kernel: one tensor at a time, written to be read. Every fast path is tested against it."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_alphagrad.optim.functional import StepHyper, TensorLists, normalized_tanh_update

__all__ = ["single_tensor_alphagrad"]


def single_tensor_alphagrad(tensors: TensorLists, hyper: StepHyper, finite: Tensor | None = None) -> None:
    """Update ``tensors.params`` in place; new momentum buffers are written into ``tensors.bufs`` (``None`` entries).

    ``finite`` (0-d bool), if given, masks the whole update arithmetically instead of a branch (used inside
    ``torch.compile``).
    """
    lr, alpha, momentum, dampening, nesterov, weight_decay, eps, size_aware = hyper
    params, grads, bufs, norms, numels = tensors
    for i, (param, grad, norm) in enumerate(zip(params, grads, norms, strict=True)):
        if finite is not None:
            grad = torch.where(finite, grad, 0)
        numel = numels[i] if numels is not None else None
        update = normalized_tanh_update(grad, alpha, eps, size_aware=size_aware, norm=norm, numel=numel)
        update = update.to(param.dtype)
        if momentum > 0:
            buf = bufs[i]
            if buf is None:
                buf = update.clone()
                bufs[i] = buf
            elif finite is None:
                buf.mul_(momentum).add_(update, alpha=1 - dampening)
            else:
                buf.copy_(torch.where(finite, buf * momentum + update * (1 - dampening), buf))
            update = update.add_(buf, alpha=momentum) if nesterov else buf
        if finite is None:
            if weight_decay != 0:
                param.mul_(1 - lr * weight_decay)
            param.add_(update, alpha=-lr)
        else:
            param.copy_(torch.where(finite, param * (1 - lr * weight_decay) - lr * update, param))
