"""The flat kernel for the many small tensors of RL networks: elementwise work on one contiguous vector.

On a CPU every eager op costs a few microseconds whatever its size, and a ``torch._foreach_*`` op is one such op per
tensor; a 13-tensor PPO network thus pays for dispatch, not arithmetic. Here the gradients are copied into one vector
(the step's only parameter-sized temporary), scaled per segment, put through tanh and folded into the momentum with a
handful of whole-vector ops, and written back with one multi-tensor add. The momentum buffer is one vector too;
``state[p]["momentum_buffer"]`` holds parameter-shaped views of it, so the state layout is the usual one.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from lightning_alphagrad.optim.functional import StepHyper, normalized_tanh_update_flat_

__all__ = ["FlatLayout", "flat_alphagrad", "flat_eligible", "flatten"]

FLAT_DTYPES = (torch.float32, torch.float64)


def flat_eligible(params: list[Tensor]) -> bool:
    """Dense, contiguous, real fp32/fp64 parameters of one dtype on one device, not sharded (gradients are checked
    per step)."""
    first = params[0]
    return first.dtype in FLAT_DTYPES and not isinstance(first, DTensor) and all(
        p.dtype == first.dtype and p.device == first.device and p.layout == torch.strided and p.is_contiguous()
        for p in params
    )


class FlatLayout:
    """Where each parameter of one group lives in a flat vector; rebuilt when the parameters or their storage change.

    Args:
        params: the group's parameters that have a gradient, in group order (see :func:`flat_eligible`).
    """

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.numels = [p.numel() for p in params]
        self.param_views = [p.detach().view(-1) for p in params]
        self.data_ptrs = [p.data_ptr() for p in params]
        first = params[0]
        self.sqrt_numels = torch.tensor([math.sqrt(n) for n in self.numels], dtype=first.dtype, device=first.device)
        self.buffer: Tensor | None = None
        self.buffer_segments: list[Tensor] = []
        self.buffer_views: list[Tensor] = []

    def gradients(self, params: list[Tensor]) -> list[Tensor] | None:
        """The gradients of ``params`` if they are this layout's tensors, on the same storage, all with a dense
        contiguous gradient of their dtype; ``None`` otherwise (the layout does not apply). One pass, every step."""
        if len(params) != len(self.params) or not all(map(operator.is_, params, self.params)):
            return None
        grads = []
        for p, ptr in zip(params, self.data_ptrs, strict=True):
            g = p.grad
            usable = g is not None and g.layout == torch.strided and g.dtype == p.dtype and g.is_contiguous()
            if not usable or p.data_ptr() != ptr:
                return None
            grads.append(g)
        return grads

    def bind_momentum(self, state: dict[Any, Any]) -> bool | None:
        """Make ``self.buffer`` the momentum whose per-parameter tensors are ``state[p]["momentum_buffer"]``.

        Returns ``True`` when ``self.buffer`` holds it, ``False`` on the first step (no buffers yet) and ``None`` when
        only some parameters have a buffer (the caller then uses a per-tensor kernel for this step).
        """
        bufs = [state[p].get("momentum_buffer") for p in self.params]
        if self.buffer is not None and all(a is b for a, b in zip(bufs, self.buffer_views, strict=True)):
            return True
        present = [b is not None for b in bufs]
        if not any(present):
            return False
        if not all(present):
            return None
        # Buffers replaced from outside (load_state_dict, a step on another kernel): copy them into one vector.
        self.adopt(torch.cat([b.detach().reshape(-1) for b in bufs]))  # type: ignore[union-attr]
        self.publish_momentum(state)
        return True

    def publish_momentum(self, state: dict[Any, Any]) -> None:
        """Store the per-parameter views of ``self.buffer`` as ``state[p]["momentum_buffer"]``."""
        for p, view in zip(self.params, self.buffer_views, strict=True):
            state[p]["momentum_buffer"] = view

    def adopt(self, buffer: Tensor) -> None:
        """Use ``buffer`` (flat, same layout) as the momentum and derive its per-parameter views."""
        self.buffer = buffer
        self.buffer_segments = list(buffer.split(self.numels))
        self.buffer_views = [s.view_as(p) for s, p in zip(self.buffer_segments, self.params, strict=True)]


def flatten(grads: list[Tensor]) -> Tensor:
    """A fresh contiguous copy of all gradients, one after another."""
    if len(grads) == 1:
        return grads[0].reshape(-1).clone()
    return torch._utils._flatten_dense_tensors(grads)


def flat_alphagrad(
    layout: FlatLayout,
    grads: list[Tensor],
    norms: Tensor,
    has_buffer: bool,
    hyper: StepHyper,
    *,
    maximize: bool,
    fast_tanh: bool,
) -> None:
    """One AlphaGrad step for ``layout.params`` (momentum in ``layout.buffer`` when ``has_buffer``).

    Args:
        layout: the group's layout; on the first momentum step its buffer is created here.
        grads: the parameters' gradients (not negated for ``maximize``).
        norms: 1-D, the gradients' L2 norms in parameter order.
        has_buffer: whether ``layout.buffer`` holds the momentum of the previous steps.
        fast_tanh: use ``2 * sigmoid(2x) - 1`` (abs. error < 1e-6) instead of ``torch.tanh``.
    """
    lr, alpha, momentum, dampening, nesterov, weight_decay, eps, size_aware = hyper
    work = flatten(grads)
    steep = -alpha if maximize else alpha
    steepness = layout.sqrt_numels * steep if size_aware else steep
    segments = normalized_tanh_update_flat_(work, layout.numels, norms, steepness, eps, fast_tanh=fast_tanh)

    direction = segments
    if momentum > 0:
        if not has_buffer:
            layout.adopt(work.clone())
        elif dampening == 0:
            torch.add(work, layout.buffer, alpha=momentum, out=layout.buffer)
        else:
            layout.buffer.mul_(momentum).add_(work, alpha=1 - dampening)  # type: ignore[union-attr]
        if nesterov:
            work.add_(layout.buffer, alpha=momentum)  # type: ignore[arg-type]
        else:
            direction = layout.buffer_segments
    if weight_decay != 0:
        torch._foreach_mul_(layout.param_views, 1 - lr * weight_decay)
    torch._foreach_add_(layout.param_views, direction, alpha=-lr)
