"""The compiled kernel for large tensors: normalization, tanh, momentum and update fused into one pass over memory.

Eager AlphaGrad reads and writes every element several times and, on CPUs with a slow ``tanh``, is bound by that
``tanh`` rather than by memory. Here ``torch.compile`` (inductor) fuses the elementwise part of the step into one loop
per tensor, with :func:`~lightning_alphagrad.optim.kernels.fast_tanh.rational_tanh` (fp32) or
:func:`~lightning_alphagrad.optim.kernels.fast_tanh.exp_tanh` (fp64) in place of ``torch.tanh`` unless the exact one is
asked for. The gradient norms are computed eagerly beforehand (they feed the non-finite check).
Hyper-parameters enter as one tensor, so learning-rate or alpha schedules never trigger a recompilation.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lightning_alphagrad.optim.functional import StepHyper
from lightning_alphagrad.optim.kernels.fast_tanh import exp_tanh, rational_tanh

__all__ = ["compiled_alphagrad", "compiler_works", "tanh_fast_or_exact"]

def tanh_fast_or_exact(x: Tensor, fast_tanh: bool) -> Tensor:
    """tanh: exact, or the fastest form accurate to the dtype (rational in fp32, exp-based in fp64)."""
    if not fast_tanh:
        return torch.tanh(x)
    return rational_tanh(x) if x.dtype == torch.float32 else exp_tanh(x)


def _update_without_momentum(
    param: Tensor, grad: Tensor, scale: Tensor, hyper: Tensor, fast_tanh: bool, decay: bool
) -> None:
    """``param <- decay * param - lr * tanh(scale * grad)``; ``hyper = [lr, decay, ...]``, all 1-D views.

    ``decay`` False (no weight decay) leaves the multiplication out of the loop.
    """
    u = tanh_fast_or_exact(grad * scale, fast_tanh)
    param.copy_((param * hyper[1] if decay else param) - hyper[0] * u)


def _update_with_momentum(
    param: Tensor, grad: Tensor, buf: Tensor, scale: Tensor, hyper: Tensor, nesterov: bool, fast_tanh: bool, decay: bool
) -> None:
    """``buf <- buf_coef * buf + update_coef * u``, then ``param <- decay * param - lr * direction``.

    ``hyper = [lr, decay, buf_coef, update_coef, momentum]``: ``buf_coef = 0, update_coef = 1`` on the first step
    (``buf = u``), ``buf_coef = momentum, update_coef = 1 - dampening`` afterwards; ``direction = u + momentum * buf``
    with Nesterov.
    """
    u = tanh_fast_or_exact(grad * scale, fast_tanh)
    new_buf = buf * hyper[2] + hyper[3] * u
    buf.copy_(new_buf)
    direction = u + hyper[4] * new_buf if nesterov else new_buf
    param.copy_((param * hyper[1] if decay else param) - hyper[0] * direction)


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    try:
        return torch.compile(fn, dynamic=True, fullgraph=True, recompile_limit=64)
    except TypeError:  # torch 2.11 takes no recompile_limit argument: dynamo's global limit (8 variants) applies
        return torch.compile(fn, dynamic=True, fullgraph=True)


_without_momentum = _compile(_update_without_momentum)
_with_momentum = _compile(_update_with_momentum)


@functools.cache
def compiler_works(device_type: str, dtype: torch.dtype) -> bool:
    """Compile and run the kernels once on a tiny problem; ``False`` (with a warning) if the toolchain fails."""
    try:
        param, grad, buf = (torch.ones(3, dtype=dtype, device=device_type) for _ in range(3))
        hyper = torch.zeros(5, dtype=dtype, device=device_type)
        scale = torch.ones((), dtype=dtype, device=device_type)
        _without_momentum(param, grad, scale, hyper, True, False)
        _with_momentum(param, grad, buf, scale, hyper, False, True, False)
    except Exception as error:  # any compiler/toolchain failure means: use the eager kernels
        warnings.warn(
            f"AlphaGrad: torch.compile is unavailable here ({type(error).__name__}: {error}); "
            "using the eager kernels instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def compiled_alphagrad(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    norms: Tensor,
    hyper: StepHyper,
    *,
    maximize: bool,
    fast_tanh: bool,
) -> None:
    """Update ``params`` in place, one fused compiled loop per tensor; new momentum buffers are written into ``bufs``.

    Args:
        norms: 1-D, the gradients' L2 norms in parameter order.
        fast_tanh: use :func:`~lightning_alphagrad.optim.kernels.fast_tanh.exp_tanh` (abs. error < 1e-6).
    """
    lr, alpha, momentum, dampening, nesterov, weight_decay, eps, size_aware = hyper
    first = params[0]
    steep = -alpha if maximize else alpha
    numels = torch.tensor([p.numel() for p in params], dtype=norms.dtype, device=norms.device)
    steeps = numels.sqrt_().mul_(steep) if size_aware else steep
    scales = torch.div(steeps, norms.add(eps)).unbind()
    decay = 1 - lr * weight_decay
    decays = weight_decay != 0
    for i, (param, grad, scale) in enumerate(zip(params, grads, scales, strict=True)):
        flat_param, flat_grad = param.detach().view(-1), grad.reshape(-1)
        if momentum > 0:
            first_step = bufs[i] is None
            if first_step:
                bufs[i] = torch.zeros_like(param, memory_format=torch.contiguous_format)
            buf_coef, update_coef = (0.0, 1.0) if first_step else (momentum, 1 - dampening)
            hyper = torch.tensor([lr, decay, buf_coef, update_coef, momentum], dtype=first.dtype, device=first.device)
            buf = bufs[i].view(-1)  # type: ignore[union-attr]
            _with_momentum(flat_param, flat_grad, buf, scale, hyper, nesterov, fast_tanh, decays)
        else:
            hyper = torch.tensor([lr, decay], dtype=first.dtype, device=first.device)
            _without_momentum(flat_param, flat_grad, scale, hyper, fast_tanh, decays)
