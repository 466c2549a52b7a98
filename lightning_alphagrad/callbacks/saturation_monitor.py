"""``TanhSaturationMonitor``: how much of AlphaGrad's update ``tanh(alpha_t * g~)`` sits in the flat part of tanh."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch.optim import Optimizer

from lightning_alphagrad._validation import check_range
from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, layer_name
from lightning_alphagrad.optim.grad_stats import step_grad_norms, update_magnitudes
from lightning_alphagrad.optim.sharded import sum_over_shards

__all__ = ["TanhSaturationMonitor"]


class TanhSaturationMonitor(OptimizerStepMonitor):
    """Logs, for AlphaGrad optimizers, the saturated fraction and the mean ``|u|`` of the update, on logging steps.

    ``u = tanh(alpha_t * g / (||g|| + eps))`` is computed for every tensor by
    :func:`~lightning_alphagrad.optim.functional.normalized_tanh_update_flat_`, the function of the optimizer's flat
    kernel (tested equal to the reference kernel), with ``torch.tanh`` and with each
    group's current ``alpha``, ``eps`` and ``size_aware``, on the gradients the step receives (see
    :class:`~lightning_alphagrad.callbacks.GradNormMonitor` for which ones). A fraction near 1 means AlphaGrad acts
    as sign descent on that layer, near 0 (with small mean ``|u|``) as normalized SGD.

    Keys (``{layer}`` the module path such as ``actor.0``; ``all`` aggregates every tensor of the optimizer):

    - ``saturation/{optimizer}/{layer}``: fraction of components with ``|u| >= threshold``,
    - ``update_abs_mean/{optimizer}/{layer}``: mean of ``|u|`` over the components (in [0, 1)).

    The update is taken before Lightning's gradient clipping, like the norms; clipping by a global norm scales every
    tensor alike, which the per-tensor normalization undoes, so the optimizer's update is the same up to ``eps``.

    Other optimizers are skipped with one warning. Cost on a logging step: one pass over the gradients for the
    update (one flat copy of the gradients, tanh and a prefix sum) plus the per-tensor norms, which are computed once
    per step and shared with :class:`GradNormMonitor` and
    :class:`~lightning_alphagrad.schedules.SaturationTargetAlpha`; one device-to-host transfer per optimizer.

    Args:
        threshold: ``|u|`` from which a component counts as saturated, in (0, 1).
        optimizer_names: names for the keys, one per optimizer (default: class names).
    """

    def __init__(self, threshold: float = 0.99, optimizer_names: Sequence[str] | None = None) -> None:
        check_range("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        super().__init__(optimizer_names)
        self.threshold = threshold

    @torch.no_grad()
    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        if not self.is_alphagrad(optimizer, name):
            return {}
        entries, norms = step_grad_norms(optimizer)
        if not entries:
            return {}
        layers = [layer_name(self.param_name(param, group_index, index)) for group_index, index, param, _ in entries]
        device = norms[0].device
        order: list[int] = []  # entries in the order of the sums below, and their sizes
        sizes: list[int] = []
        sums = []  # per batch: (saturated components, sum of |u|) of every entry, float64, shape (2, entries)
        for batch in update_magnitudes(optimizer, entries, norms):
            magnitudes = batch.magnitudes
            per_component = torch.stack([(magnitudes >= self.threshold).to(magnitudes.dtype), magnitudes])
            cumulative = per_component.cumsum(1, dtype=torch.float64)
            ends = torch.tensor(list(itertools.accumulate(batch.numels)), device=magnitudes.device)
            prefix = torch.cat([cumulative.new_zeros(2, 1), cumulative], 1)[:, ends]  # sums up to every tensor's end
            sums.append(torch.diff(prefix, dim=1, prepend=prefix.new_zeros(2, 1)).to(device))
            order += batch.indices
            sizes += [entries[i].grad.numel() for i in batch.indices]  # of the full tensors when sharded
        # full tensors' sums when sharded (one all-reduce), then the one host transfer
        totals_per_entry = sum_over_shards(torch.cat(sums, 1), [entries[i].grad for i in order])
        saturated_sums, abs_sums = totals_per_entry.tolist()
        totals: dict[str, list[float]] = {}  # layer -> [saturated, sum of |u|, components]
        for i, size, saturated, abs_sum in zip(order, sizes, saturated_sums, abs_sums, strict=True):
            layer_totals = totals.setdefault(layers[i], [0.0, 0.0, 0.0])
            layer_totals[0] += saturated
            layer_totals[1] += abs_sum
            layer_totals[2] += size
        totals["all"] = [sum(saturated_sums), sum(abs_sums), float(sum(sizes))]
        metrics: dict[str, float] = {}
        for key, (saturated, abs_sum, size) in totals.items():
            metrics[f"saturation/{name}/{key}"] = saturated / size
            metrics[f"update_abs_mean/{name}/{key}"] = abs_sum / size
        return metrics
