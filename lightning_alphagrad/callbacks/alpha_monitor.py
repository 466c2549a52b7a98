"""``AlphaMonitor``: the alpha of every AlphaGrad param group, and its per-tensor range with size-aware alpha."""

from __future__ import annotations

from torch.optim import Optimizer

from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor, group_name
from lightning_alphagrad.optim.functional import effective_alpha

__all__ = ["AlphaMonitor"]


class AlphaMonitor(OptimizerStepMonitor):
    """Logs the alpha each AlphaGrad param group uses in the step, on logging steps (read from the param groups, so
    it shows what any alpha schedule wrote; no device transfer).

    Keys (``{group}`` is the group's ``name`` or ``pg{i}``, like ``LearningRateMonitor``'s):

    - ``alpha/{optimizer}/{group}``: ``param_group["alpha"]``,
    - ``alpha/{optimizer}/{group}/effective_min`` and ``.../effective_max`` when the group is ``size_aware``: the
      smallest and largest per-tensor steepness ``alpha * sqrt(numel)``.

    Other optimizers are skipped with one warning.

    Args:
        optimizer_names: names for the keys, one per optimizer (default: class names).
    """

    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        if not self.is_alphagrad(optimizer, name):
            return {}
        metrics: dict[str, float] = {}
        for index, group in enumerate(optimizer.param_groups):
            key = f"alpha/{name}/{group_name(group, index)}"
            alpha = float(group["alpha"])
            metrics[key] = alpha
            if group.get("size_aware", False) and group["params"]:
                sizes = [p.numel() * (2 if p.is_complex() else 1) for p in group["params"]]
                metrics[f"{key}/effective_min"] = effective_alpha(alpha, min(sizes), True)
                metrics[f"{key}/effective_max"] = effective_alpha(alpha, max(sizes), True)
        return metrics
