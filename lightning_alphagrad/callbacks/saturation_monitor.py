"""``TanhSaturationMonitor``: how much of AlphaGrad's update ``tanh(alpha_t * g~)`` sits in the flat part of tanh."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer

from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, layer_name, sum_by_layer
from lightning_alphagrad.optim.alphagrad import AlphaGrad
from lightning_alphagrad.optim.functional import grad_norm, normalized_tanh_update

__all__ = ["TanhSaturationMonitor"]


class TanhSaturationMonitor(OptimizerStepMonitor):
    """Logs, for AlphaGrad optimizers, the saturated fraction and the mean ``|u|`` of the update, on logging steps.

    ``u = tanh(alpha_t * g / (||g|| + eps))`` is computed per tensor by
    :func:`~lightning_alphagrad.optim.functional.normalized_tanh_update`, the function the optimizer uses, with each
    group's current ``alpha``, ``eps`` and ``size_aware``, on the gradients the step receives (see
    :class:`~lightning_alphagrad.callbacks.GradNormMonitor` for which ones). A fraction near 1 means AlphaGrad acts
    as sign descent on that layer, near 0 (with small mean ``|u|``) as normalized SGD.

    Keys (``{layer}`` the module path such as ``actor.0``; ``all`` aggregates every tensor of the optimizer):

    - ``saturation/{optimizer}/{layer}``: fraction of components with ``|u| >= threshold``,
    - ``update_abs_mean/{optimizer}/{layer}``: mean of ``|u|`` over the components (in [0, 1)).

    Other optimizers are skipped with one warning. Cost on a logging step: one pass over the gradients (norm, tanh)
    and one device-to-host transfer per optimizer.

    Args:
        threshold: ``|u|`` from which a component counts as saturated, in (0, 1).
        optimizer_names: names for the keys, one per optimizer (default: class names).
    """

    def __init__(self, threshold: float = 0.99, optimizer_names: Sequence[str] | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"Invalid threshold: {threshold!r}; it must lie in (0, 1)")
        super().__init__(optimizer_names)
        self.threshold = threshold
        self._warned: set[str] = set()

    @torch.no_grad()
    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        if not isinstance(optimizer, AlphaGrad):
            if name not in self._warned:
                self._warned.add(name)
                rank_zero_warn(f"TanhSaturationMonitor: optimizer {name} is not AlphaGrad; it is not monitored")
            return {}
        layers, rows, sizes = [], [], []
        for group_index, group in enumerate(optimizer.param_groups):
            for index, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                grad = torch.view_as_real(p.grad) if torch.is_complex(p.grad) else p.grad
                size_aware = group.get("size_aware", False)
                u = normalized_tanh_update(
                    grad, group["alpha"], group["eps"], size_aware=size_aware, norm=grad_norm(grad)
                )
                u = u.abs_()
                rows.append(torch.stack([(u >= self.threshold).sum(dtype=torch.float64), u.sum(dtype=torch.float64)]))
                sizes.append(u.numel())
                layers.append(layer_name(self.param_name(p, group_index, index)))
        if not layers:
            return {}
        device = rows[0].device
        per_param = torch.stack([row.to(device) for row in rows])  # (P, 2): saturated count, sum of |u|
        names, per_layer = sum_by_layer(per_param, layers)
        _, layer_sizes = sum_by_layer(torch.tensor(sizes, dtype=torch.float64, device=device).unsqueeze(1), layers)
        sums = torch.cat([per_layer, per_layer.sum(0, keepdim=True)])
        fractions = sums / torch.cat([layer_sizes, layer_sizes.sum(0, keepdim=True)])
        keys = [*names, "all"]
        values = fractions.tolist()
        metrics = {f"saturation/{name}/{key}": saturated for key, (saturated, _) in zip(keys, values, strict=True)}
        metrics.update({f"update_abs_mean/{name}/{key}": mean for key, (_, mean) in zip(keys, values, strict=True)})
        return metrics
