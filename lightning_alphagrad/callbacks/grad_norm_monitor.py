"""``GradNormMonitor``: L2 norm of the gradients per layer, per tensor and in total, per optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim import Optimizer

from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, layer_name
from lightning_alphagrad.optim.grad_stats import step_grad_norms

__all__ = ["GradNormMonitor"]


class GradNormMonitor(OptimizerStepMonitor):
    """Logs the L2 norm of the gradients each optimizer is about to apply, on logging steps.

    Keys (``{optimizer}`` as in :class:`OptimizerStepMonitor`, ``{layer}`` the module path such as ``actor.0``;
    ``unclipped`` says that the norms are taken before Lightning's gradient clipping):

    - ``grad_norm_unclipped/{optimizer}/{layer}``: norm over all gradient elements of that module's parameters,
    - ``grad_norm_unclipped/{optimizer}/{param}`` with ``per_parameter=True``: norm of one tensor (``actor.0.weight``),
    - ``grad_norm_unclipped/{optimizer}/total``: norm over all gradients of the optimizer.

    Which gradients: measured in ``on_before_optimizer_step``, i.e. after AMP unscaling, after DDP all-reduce and
    after gradient accumulation (one record per optimizer step), and **before** Lightning's gradient clipping
    (``gradient_clip_val``). With manual optimization the hook fires inside ``opt.step()``, so the norms are those of
    the gradients handed to the optimizer, after any ``self.clip_gradients`` the module did itself. Norms are in fp32
    for fp16/bf16 gradients. Cost on a logging step: one norm per tensor (one ``_foreach_norm`` pass, shared with
    :class:`TanhSaturationMonitor`, :class:`~lightning_alphagrad.schedules.SaturationTargetAlpha` and AlphaGrad's
    own step through :func:`~lightning_alphagrad.optim.grad_stats.step_grad_norms`) and one device-to-host transfer.

    Args:
        per_parameter: also log the norm of every parameter tensor.
        optimizer_names: names for the keys, one per optimizer (default: class names).
    """

    def __init__(self, per_parameter: bool = False, optimizer_names: Sequence[str] | None = None) -> None:
        super().__init__(optimizer_names)
        self.per_parameter = per_parameter

    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        entries, norms = step_grad_norms(optimizer)
        if not entries:
            return {}
        names = [self.param_name(param, group_index, index) for group_index, index, param, _ in entries]
        device = norms[0].device
        values = torch.stack([n.to(device) for n in norms]).tolist()  # the one device-to-host transfer
        squares: dict[str, float] = {}
        for param, value in zip(names, values, strict=True):
            layer = layer_name(param)
            squares[layer] = squares.get(layer, 0.0) + value * value
        metrics = {f"grad_norm_unclipped/{name}/{layer}": math.sqrt(square) for layer, square in squares.items()}
        metrics[f"grad_norm_unclipped/{name}/total"] = math.sqrt(sum(squares.values()))
        if self.per_parameter:
            per_tensor = zip(names, values, strict=True)
            metrics.update({f"grad_norm_unclipped/{name}/{param}": value for param, value in per_tensor})
        return metrics
