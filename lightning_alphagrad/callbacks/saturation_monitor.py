"""``TanhSaturationMonitor``: how much of AlphaGrad's update ``tanh(alpha_t * g~)`` sits in the flat part of tanh."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer

from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, layer_name
from lightning_alphagrad.optim.alphagrad import AlphaGrad
from lightning_alphagrad.optim.functional import normalized_tanh_update

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

    Other optimizers are skipped with one warning. Cost on a logging step: one pass over the gradients (norm, tanh, a
    segmented sum) and one device-to-host transfer per optimizer.

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
        self._segment_cache: dict[tuple[tuple[int, ...], tuple[int, ...], torch.device], Tensor] = {}

    @torch.no_grad()
    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        if not isinstance(optimizer, AlphaGrad):
            if name not in self._warned:
                self._warned.add(name)
                rank_zero_warn(f"TanhSaturationMonitor: optimizer {name} is not AlphaGrad; it is not monitored")
            return {}
        updates, layers = [], []
        for group_index, group in enumerate(optimizer.param_groups):
            for index, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                grad = torch.view_as_real(p.grad) if torch.is_complex(p.grad) else p.grad
                size_aware = group.get("size_aware", False)
                updates.append(normalized_tanh_update(grad, group["alpha"], group["eps"], size_aware=size_aware))
                layers.append(layer_name(self.param_name(p, group_index, index)))
        if not updates:
            return {}
        names = list(dict.fromkeys(layers))
        sizes = [u.numel() for u in updates]
        device = updates[0].device
        magnitudes = torch.cat([u.to(device).view(-1) for u in updates]).abs_()
        per_component = torch.stack([(magnitudes >= self.threshold).to(magnitudes.dtype), magnitudes], 1)
        segments = self._segments(tuple(names.index(layer) for layer in layers), tuple(sizes), device)
        sums = torch.zeros(len(names), 2, dtype=torch.float64, device=device)
        sums.index_add_(0, segments, per_component.to(torch.float64))
        layer_sums = sums.tolist()  # (saturated components, sum of |u|) per layer
        layer_sizes = [0] * len(names)
        for layer, size in zip(layers, sizes, strict=True):
            layer_sizes[names.index(layer)] += size
        keys = [*names, "all"]
        layer_sums.append([sum(column) for column in zip(*layer_sums, strict=True)])
        layer_sizes.append(sum(sizes))
        metrics: dict[str, float] = {}
        for key, (saturated, abs_sum), size in zip(keys, layer_sums, layer_sizes, strict=True):
            metrics[f"saturation/{name}/{key}"] = saturated / size
            metrics[f"update_abs_mean/{name}/{key}"] = abs_sum / size
        return metrics

    def _segments(self, layer_indices: tuple[int, ...], sizes: tuple[int, ...], device: torch.device) -> Tensor:
        """Layer index of every component of the concatenated updates (cached: the layout rarely changes)."""
        key = (layer_indices, sizes, device)
        if key not in self._segment_cache:
            per_tensor = torch.tensor(layer_indices, device=device)
            self._segment_cache[key] = per_tensor.repeat_interleave(torch.tensor(sizes, device=device))
        return self._segment_cache[key]
