"""``alphagrad_config``: what ``LightningModule.configure_optimizers`` returns for AlphaGrad, in one call."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ChainedScheduler, LambdaLR, LRScheduler

from lightning_alphagrad._validation import check_range
from lightning_alphagrad.optim.alphagrad import AlphaGrad

__all__ = ["LRSchedule", "alphagrad_config", "weight_decay_groups"]

_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split ``module``'s trainable parameters into a decayed group and a group without weight decay.

    Biases and the parameters of normalization layers (BatchNorm, LayerNorm, GroupNorm, RMSNorm, ...) get no weight
    decay. Each group carries a ``name`` (``"decay"``/``"no_decay"``) and the ``param_names`` it holds, so monitors
    can show them. Empty groups are left out.
    """
    decay: dict[str, Tensor] = {}
    no_decay: dict[str, Tensor] = {}
    for module_name, sub in module.named_modules():
        for param_name, param in sub.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            target = no_decay if param_name.endswith("bias") or isinstance(sub, _NORM_LAYERS) else decay
            target[full_name] = param
    groups = [
        {"params": list(d.values()), "param_names": list(d), "name": name, "weight_decay": wd}
        for name, d, wd in (("decay", decay, weight_decay), ("no_decay", no_decay, 0.0))
        if d
    ]
    if not groups:
        raise ValueError("model_or_params has no trainable parameters")
    return groups


class LRSchedule:
    """Learning-rate factor per optimizer step: linear warmup from 0, then constant, linear or cosine decay.

    A picklable callable for :class:`torch.optim.lr_scheduler.LambdaLR`: ``factor(step)`` multiplies each group's
    initial lr. After ``total_steps`` the factor stays at ``min_lr_ratio`` (linear, cosine) or 1 (constant).
    """

    def __init__(
        self,
        kind: Literal["constant", "linear", "cosine"] = "constant",
        total_steps: int | None = None,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if kind not in ("constant", "linear", "cosine"):
            raise ValueError(f"Invalid lr_schedule: {kind!r}; it must be 'constant', 'linear' or 'cosine'")
        if warmup_steps < 0:
            raise ValueError(f"Invalid warmup_steps: {warmup_steps}; it must be >= 0")
        check_range("min_lr_ratio", min_lr_ratio, 0.0, 1.0)
        if kind != "constant" and (total_steps is None or total_steps <= warmup_steps):
            raise ValueError(
                f"Invalid total_steps: {total_steps}; lr_schedule={kind!r} needs an integer total_steps > "
                f"warmup_steps ({warmup_steps})"
            )
        self.kind, self.total_steps = kind, total_steps
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind == "constant":
            return 1.0
        assert self.total_steps is not None
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        shape = 1.0 - progress if self.kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def _param_groups(
    model_or_params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]], weight_decay: float
) -> list[dict[str, Any]] | list[Tensor]:
    if isinstance(model_or_params, nn.Module):
        return weight_decay_groups(model_or_params, weight_decay)
    items = list(model_or_params)
    if not items:
        raise ValueError("model_or_params is empty: pass a module, parameters or param-group dicts")
    if all(isinstance(item, dict) for item in items):
        return items  # the user's own groups; their keys override the defaults given here
    if all(isinstance(item, Tensor) for item in items):
        return [p for p in items if p.requires_grad]
    raise TypeError("model_or_params must be an nn.Module, an iterable of tensors or an iterable of param-group dicts")


def _trainer_total_steps(model_or_params: Any) -> int | None:
    trainer = getattr(model_or_params, "_trainer", None)
    return int(trainer.estimated_stepping_batches) if trainer is not None else None


def alphagrad_config(
    model_or_params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]],
    lr: float = 1e-3,
    alpha: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-5,
    *,
    total_steps: int | None = None,
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    alpha_schedule: Callable[[Optimizer], LRScheduler] | None = None,
    scheduler_name: str = "alphagrad",
    **optimizer_kwargs: Any,
) -> dict[str, Any]:
    """Build AlphaGrad (and its per-step schedules) in the form ``configure_optimizers`` returns.

    Args:
        model_or_params: a module (biases and normalization weights are then excluded from weight decay, see
            :func:`weight_decay_groups`), an iterable of parameters, or of param-group dicts.
        lr, alpha, momentum, weight_decay, eps: AlphaGrad's hyper-parameters (see :class:`AlphaGrad`).
        total_steps: optimizer steps of the whole run, needed by linear/cosine lr schedules. If ``None`` and the
            module is attached to a Trainer, ``trainer.estimated_stepping_batches`` is used.
        lr_schedule: ``"constant"``, ``"linear"`` or ``"cosine"`` decay to ``min_lr_ratio * lr`` at ``total_steps``,
            after ``warmup_steps`` of linear warmup; stepped every optimizer step.
        alpha_schedule: a callable that takes the optimizer and returns a scheduler driving ``param_group["alpha"]``
            (e.g. ``functools.partial(CosineAlpha, ...)`` from :mod:`lightning_alphagrad.schedules`); it is stepped
            with the lr schedule every optimizer step and saved in checkpoints.
        scheduler_name: key under which ``LearningRateMonitor`` logs the schedule.
        optimizer_kwargs: further :class:`AlphaGrad` arguments (``nesterov``, ``size_aware``, ``foreach``, ...).

    Returns:
        ``{"optimizer": AlphaGrad}``, plus ``"lr_scheduler": {"scheduler", "interval": "step", "frequency": 1,
        "name"}`` when an lr warmup/decay or an alpha schedule is requested.
    """
    optimizer = AlphaGrad(
        _param_groups(model_or_params, weight_decay),
        lr=lr,
        alpha=alpha,
        momentum=momentum,
        weight_decay=weight_decay,
        eps=eps,
        **optimizer_kwargs,
    )
    if lr_schedule != "constant" and total_steps is None:
        total_steps = _trainer_total_steps(model_or_params)
    schedulers: list[LRScheduler] = []
    if lr_schedule != "constant" or warmup_steps > 0:
        schedulers.append(LambdaLR(optimizer, LRSchedule(lr_schedule, total_steps, warmup_steps, min_lr_ratio)))
    if alpha_schedule is not None:
        schedulers.append(alpha_schedule(optimizer))
    if not schedulers:
        return {"optimizer": optimizer}
    scheduler = schedulers[0] if len(schedulers) == 1 else ChainedScheduler(schedulers, optimizer=optimizer)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": scheduler_name},
    }
