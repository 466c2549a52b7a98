"""``GradNormMonitor``: L2 norm of the gradients per layer, per tensor and in total, per optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim import Optimizer

from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, layer_name
from lightning_alphagrad.optim.functional import grad_norm

__all__ = ["GradNormMonitor"]


class GradNormMonitor(OptimizerStepMonitor):
    """Logs the L2 norm of the gradients each optimizer is about to apply, on logging steps.

    Keys (``{optimizer}`` as in :class:`OptimizerStepMonitor`, ``{layer}`` the module path such as ``actor.0``):

    - ``grad_norm/{optimizer}/{layer}``: norm over all gradient elements of that module's parameters,
    - ``grad_norm/{optimizer}/{param}`` with ``per_parameter=True``: norm of one tensor (``actor.0.weight``),
    - ``grad_norm/{optimizer}/total``: norm over all gradients of the optimizer.

    Which gradients: measured in ``on_before_optimizer_step``, i.e. after AMP unscaling, after DDP all-reduce and
    after gradient accumulation (one record per optimizer step), and **before** Lightning's gradient clipping
    (``gradient_clip_val``). With manual optimization the hook fires inside ``opt.step()``, so the norms are those of
    the gradients handed to the optimizer, after any ``self.clip_gradients`` the module did itself. Norms are in fp32
    for fp16/bf16 gradients. Cost on a logging step: one norm per tensor and one device-to-host transfer.

    Args:
        per_parameter: also log the norm of every parameter tensor.
        optimizer_names: names for the keys, one per optimizer (default: class names).
    """

    def __init__(self, per_parameter: bool = False, optimizer_names: Sequence[str] | None = None) -> None:
        super().__init__(optimizer_names)
        self.per_parameter = per_parameter

    @torch.no_grad()
    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        names, norms = [], []
        for group_index, group in enumerate(optimizer.param_groups):
            for index, p in enumerate(group["params"]):
                if p.grad is not None:
                    names.append(self.param_name(p, group_index, index))
                    norms.append(grad_norm(p.grad))
        if not norms:
            return {}
        device = norms[0].device
        values = torch.stack([n.to(device) for n in norms]).tolist()  # the one device-to-host transfer
        squares: dict[str, float] = {}
        for param, value in zip(names, values, strict=True):
            layer = layer_name(param)
            squares[layer] = squares.get(layer, 0.0) + value * value
        metrics = {f"grad_norm/{name}/{layer}": math.sqrt(square) for layer, square in squares.items()}
        metrics[f"grad_norm/{name}/total"] = math.sqrt(sum(squares.values()))
        if self.per_parameter:
            metrics.update({f"grad_norm/{name}/{param}": value for param, value in zip(names, values, strict=True)})
        return metrics
