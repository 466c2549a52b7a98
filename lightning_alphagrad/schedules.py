"""Alpha schedules: ``LRScheduler`` subclasses that drive ``param_group["alpha"]`` and leave the lrs unchanged.

Every schedule here is a :class:`torch.optim.lr_scheduler.LRScheduler`, so Lightning accepts, steps and checkpoints it
like an lr scheduler; return it from ``configure_optimizers`` with ``"interval": "step"`` (one ``step()`` per optimizer
step), or pass ``functools.partial(CosineAlpha, ...)`` as ``alpha_schedule`` to
:func:`lightning_alphagrad.alphagrad_config`, which chains it with the lr schedule.

The fixed schedules (:class:`ConstantAlpha`, :class:`LinearAlpha`, :class:`CosineAlpha`, :class:`ExponentialAlpha`,
:class:`StepAlpha`, :class:`MultiStepAlpha`, :class:`SequentialAlpha`, :class:`ChainedAlpha`) are closed forms
``alpha_t = initial_alpha * factor(t)`` of the step count ``t`` (``last_epoch``) and each group's ``initial_alpha``
(stored in the param group on construction, like ``initial_lr``), so resuming from a checkpoint continues the same
sequence. :class:`SaturationTargetAlpha` adapts alpha by feedback on the measured tanh saturation.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lightning_alphagrad._validation import check_range
from lightning_alphagrad.optim.grad_stats import step_grad_norms, update_magnitudes
from lightning_alphagrad.optim.sharded import sum_over_shards

__all__ = [
    "AlphaScheduler",
    "ChainedAlpha",
    "ConstantAlpha",
    "CosineAlpha",
    "ExponentialAlpha",
    "FactorAlphaScheduler",
    "LinearAlpha",
    "MultiStepAlpha",
    "SaturationTargetAlpha",
    "SequentialAlpha",
    "StepAlpha",
]


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {name}: {value!r}; it must be an integer >= {low}")


class AlphaScheduler(LRScheduler):
    """Base class: each ``step()`` writes ``param_group["alpha"]`` for every group and returns the lrs unchanged.

    Subclasses implement :meth:`get_alpha` (the alphas for step ``self.last_epoch``, one per param group).
    On construction each group's current alpha is stored as ``group["initial_alpha"]`` (unless already there) and
    the alpha of step 0 is written.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        for i, group in enumerate(optimizer.param_groups):
            if "alpha" not in group:
                raise ValueError(f"Invalid optimizer: param_groups[{i}] has no 'alpha' (use AlphaGrad)")
            if last_epoch == -1:
                group.setdefault("initial_alpha", float(group["alpha"]))
            elif "initial_alpha" not in group:
                raise KeyError(f"param_groups[{i}] has no 'initial_alpha'; load the optimizer state before resuming")
        self.base_alphas: list[float] = [float(group["initial_alpha"]) for group in optimizer.param_groups]
        self._last_alpha: list[float] = [float(group["alpha"]) for group in optimizer.param_groups]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        """The current lrs, unchanged: alpha schedules compose with any lr scheduler."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_alpha(self) -> list[float]:
        """Alpha of every param group for step ``self.last_epoch``."""
        raise NotImplementedError

    def get_last_alpha(self) -> list[float]:
        """The alphas written by the last ``step()``, one per param group."""
        return list(self._last_alpha)

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        alphas = self.get_alpha()
        for group, alpha in zip(self.optimizer.param_groups, alphas, strict=True):
            group["alpha"] = alpha
        self._last_alpha = list(alphas)


class FactorAlphaScheduler(AlphaScheduler):
    """A fixed schedule ``alpha_t = initial_alpha * factor(t)``; subclasses implement :meth:`factor`."""

    def factor(self, step: int) -> float:
        """Multiplier of the initial alpha at step ``step`` (>= 0); always > 0."""
        raise NotImplementedError

    def get_alpha(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base * factor for base in self.base_alphas]


class ConstantAlpha(FactorAlphaScheduler):
    """``alpha_t = factor * initial_alpha`` for every step (a fixed phase inside :class:`SequentialAlpha`)."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0, last_epoch: int = -1) -> None:
        check_range("factor", factor, 0.0, math.inf, low_open=True, high_open=True)
        self.constant = factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.constant


class LinearAlpha(FactorAlphaScheduler):
    """Alpha moves linearly from ``start_factor * initial_alpha`` to ``end_factor * initial_alpha`` in
    ``total_iters`` steps, then stays at the end value. Growing alpha (``end_factor > start_factor``) moves the
    update from normalized-SGD-like towards sign-descent-like."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0,
        end_factor: float = 0.1,
        total_iters: int = 1000,
        last_epoch: int = -1,
    ) -> None:
        check_range("start_factor", start_factor, 0.0, math.inf, low_open=True, high_open=True)
        check_range("end_factor", end_factor, 0.0, math.inf, low_open=True, high_open=True)
        _check_int("total_iters", total_iters, 1)
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        progress = min(step, self.total_iters) / self.total_iters
        return self.start_factor + (self.end_factor - self.start_factor) * progress


class CosineAlpha(FactorAlphaScheduler):
    """Linear warmup from ``warmup_start_factor`` to 1 in ``warmup_iters`` steps, then a half cosine from 1 to
    ``end_factor`` (times the initial alpha) reached at step ``total_iters``, constant afterwards."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int,
        end_factor: float = 0.1,
        warmup_iters: int = 0,
        warmup_start_factor: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        _check_int("warmup_iters", warmup_iters, 0)
        _check_int("total_iters", total_iters, warmup_iters + 1)
        check_range("end_factor", end_factor, 0.0, math.inf, low_open=True, high_open=True)
        check_range("warmup_start_factor", warmup_start_factor, 0.0, math.inf, low_open=True, high_open=True)
        self.total_iters, self.end_factor = total_iters, end_factor
        self.warmup_iters, self.warmup_start_factor = warmup_iters, warmup_start_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * step / self.warmup_iters
        progress = min(1.0, (step - self.warmup_iters) / (self.total_iters - self.warmup_iters))
        return self.end_factor + (1.0 - self.end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ExponentialAlpha(FactorAlphaScheduler):
    """``alpha_t = initial_alpha * gamma**t``, clamped to ``[min_alpha, max_alpha]`` (per group).

    The clamp keeps alpha finite and positive over long runs; inside :class:`SequentialAlpha` or
    :class:`ChainedAlpha` only the unclamped factor ``gamma**t`` is used.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        gamma: float,
        min_alpha: float = 1e-3,
        max_alpha: float = 1e6,
        last_epoch: int = -1,
    ) -> None:
        check_range("gamma", gamma, 0.0, math.inf, low_open=True, high_open=True)
        check_range("min_alpha", min_alpha, 0.0, math.inf, low_open=True, high_open=True)
        check_range("max_alpha", max_alpha, min_alpha, math.inf, high_open=True)
        self.gamma, self.min_alpha, self.max_alpha = gamma, min_alpha, max_alpha
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return math.exp(step * math.log(self.gamma))

    def get_alpha(self) -> list[float]:
        log_factor = self.last_epoch * math.log(self.gamma)
        return [min(self.max_alpha, max(self.min_alpha, math.exp(math.log(b) + log_factor))) for b in self.base_alphas]


class StepAlpha(FactorAlphaScheduler):
    """``alpha_t = initial_alpha * gamma ** (t // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.5, last_epoch: int = -1) -> None:
        _check_int("step_size", step_size, 1)
        check_range("gamma", gamma, 0.0, math.inf, low_open=True, high_open=True)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


class MultiStepAlpha(FactorAlphaScheduler):
    """``alpha_t = initial_alpha * gamma ** (number of milestones <= t)``; milestones strictly increasing."""

    def __init__(
        self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.5, last_epoch: int = -1
    ) -> None:
        milestones = list(milestones)
        for m in milestones:
            _check_int("milestones", m, 1)
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"Invalid milestones: {milestones}; they must be strictly increasing")
        check_range("gamma", gamma, 0.0, math.inf, low_open=True, high_open=True)
        self.milestones, self.gamma = milestones, gamma
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, step)


class _CompositeAlpha(FactorAlphaScheduler):
    """Shared validation and checkpointing of schedules built from other :class:`FactorAlphaScheduler` s.

    The parts are closed forms, so only this schedule's own step count matters; ``state_dict`` stores the parts'
    state dicts (never the parts themselves, which hold the optimizer).
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[FactorAlphaScheduler], last_epoch: int) -> None:
        if not schedulers:
            raise ValueError("Invalid schedulers: []; pass at least one alpha schedule")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, FactorAlphaScheduler):
                raise ValueError(
                    f"Invalid schedulers[{i}]: {type(scheduler).__name__}; it must be a fixed alpha schedule "
                    "(a FactorAlphaScheduler)"
                )
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"Invalid schedulers[{i}]: it is bound to a different optimizer")
        self._schedulers = list(schedulers)
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        for scheduler, sub_state in zip(self._schedulers, state.pop("_schedulers"), strict=True):
            scheduler.load_state_dict(sub_state)
        self.__dict__.update(state)


class SequentialAlpha(_CompositeAlpha):
    """Runs ``schedulers[i]`` from ``milestones[i - 1]`` on, each restarting its own step count at 0.

    Example: ``SequentialAlpha(opt, [LinearAlpha(opt, 0.1, 1.0, 500), CosineAlpha(opt, 9500)], milestones=[500])``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[FactorAlphaScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        milestones = list(milestones)
        if schedulers and len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"Invalid milestones: {milestones}; expected len(schedulers) - 1 = {len(schedulers) - 1} entries"
            )
        for m in milestones:
            _check_int("milestones", m, 1)
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"Invalid milestones: {milestones}; they must be strictly increasing")
        self.milestones = milestones
        super().__init__(optimizer, schedulers, last_epoch)

    def factor(self, step: int) -> float:
        index = bisect.bisect_right(self.milestones, step)
        start = self.milestones[index - 1] if index > 0 else 0
        return self._schedulers[index].factor(step - start)


class ChainedAlpha(_CompositeAlpha):
    """The product of the factors of all ``schedulers`` at the same step (e.g. warmup times step decay)."""

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[FactorAlphaScheduler], last_epoch: int = -1) -> None:
        super().__init__(optimizer, schedulers, last_epoch)

    def factor(self, step: int) -> float:
        return math.prod(scheduler.factor(step) for scheduler in self._schedulers)


class SaturationTargetAlpha(AlphaScheduler):
    """Adaptive alpha: keeps the fraction of saturated update components near ``target``, per param group.

    Every ``every`` steps it computes, from the gradients still held in ``p.grad`` (Lightning calls
    ``scheduler.step()`` right after ``optimizer.step()`` and before the next ``zero_grad``), the update exactly as
    AlphaGrad does (:func:`~lightning_alphagrad.optim.functional.normalized_tanh_update_flat_`, the flat kernel's
    function, with the group's alpha, eps and size_aware) and the saturation ``s`` = fraction of components with
    ``|u| >= threshold`` over all tensors of the group. Then

    ``alpha <- clamp(alpha * exp(clamp(gain * (target - s) / target, -log(max_factor), log(max_factor))),
    min_alpha, max_alpha)``

    so alpha grows while too few components saturate and shrinks while too many do, by at most ``max_factor`` per
    update. ``s`` grows monotonically with alpha, so the loop settles where ``s = target``.

    With manual optimization, call ``scheduler.step()`` after ``opt.step()`` and before the next ``zero_grad()``
    (a step that finds no gradients leaves alpha unchanged and warns once).

    Cost: one pass over the gradients (plus their norms, shared with the monitoring callbacks when they log at the
    same step) and one device-to-host transfer every ``every`` steps. Determinism: the result
    depends only on the gradients and the step count; under DDP the gradients are all-reduced (identical on every
    rank) before the optimizer step, so every rank computes the same alphas. Groups without gradients, or with
    non-finite gradients (a step AlphaGrad skips), keep their alpha. State: the alphas live in the optimizer's
    param groups, the step count and last saturations in this scheduler; both are in Lightning checkpoints.

    Args:
        optimizer: an AlphaGrad optimizer (param groups with ``alpha``, ``eps`` and ``size_aware``).
        target: desired saturated fraction, in (0, 1).
        threshold: ``|u|`` at which a component counts as saturated, in (0, 1).
        every: steps between updates (>= 1).
        gain: feedback gain (> 0) on the relative error ``(target - s) / target``.
        max_factor: largest change of alpha per update (> 1).
        min_alpha, max_alpha: bounds of alpha (0 < min_alpha <= max_alpha < inf).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        target: float = 0.1,
        threshold: float = 0.99,
        every: int = 10,
        gain: float = 0.25,
        max_factor: float = 1.25,
        min_alpha: float = 1e-2,
        max_alpha: float = 1e4,
        last_epoch: int = -1,
    ) -> None:
        check_range("target", target, 0.0, 1.0, low_open=True, high_open=True)
        check_range("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        _check_int("every", every, 1)
        check_range("gain", gain, 0.0, math.inf, low_open=True, high_open=True)
        check_range("max_factor", max_factor, 1.0, math.inf, low_open=True, high_open=True)
        check_range("min_alpha", min_alpha, 0.0, math.inf, low_open=True, high_open=True)
        check_range("max_alpha", max_alpha, min_alpha, math.inf, high_open=True)
        for i, group in enumerate(optimizer.param_groups):
            if "eps" not in group:
                raise ValueError(f"Invalid optimizer: param_groups[{i}] has no 'eps' (use AlphaGrad)")
        self.target, self.threshold, self.every, self.gain = target, threshold, every, gain
        self.max_factor, self.min_alpha, self.max_alpha = max_factor, min_alpha, max_alpha
        self.last_saturation: list[float | None] = [None] * len(optimizer.param_groups)
        self._warned_no_grad = False
        super().__init__(optimizer, last_epoch)

    def get_alpha(self) -> list[float]:
        alphas = [float(group["alpha"]) for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.every != 0:  # step 0: construction, no gradients yet
            return alphas
        counts = self._saturation_counts()
        if counts is None:
            if not self._warned_no_grad:
                self._warned_no_grad = True
                warnings.warn(
                    "SaturationTargetAlpha.step() found no gradients, alpha is left unchanged: call it after "
                    "optimizer.step() and before the next zero_grad() (Lightning does so for 'interval': 'step')",
                    stacklevel=3,
                )
            return alphas
        max_log_step = math.log(self.max_factor)
        for i, (saturated, finite, total) in enumerate(counts):
            if total == 0 or finite < total:
                continue
            saturation = saturated / total
            self.last_saturation[i] = saturation
            log_step = max(-max_log_step, min(max_log_step, self.gain * (self.target - saturation) / self.target))
            alphas[i] = min(self.max_alpha, max(self.min_alpha, alphas[i] * math.exp(log_step)))
        return alphas

    @torch.no_grad()
    def _saturation_counts(self) -> list[tuple[float, float, int]] | None:
        """Per group: (saturated components, finite components, all components), with one device-to-host copy."""
        entries, norms = step_grad_norms(self.optimizer)
        if not entries:
            return None
        groups = len(self.optimizer.param_groups)
        counts = torch.zeros(groups, 3, dtype=torch.float64, device=norms[0].device)  # (saturated, finite, all)
        for batch in update_magnitudes(self.optimizer, entries, norms):
            group_index, magnitudes = entries[batch.indices[0]].group_index, batch.magnitudes
            saturated = (magnitudes >= self.threshold).sum(dtype=torch.float64)
            finite = magnitudes.isfinite().sum(dtype=torch.float64)
            size = torch.tensor(magnitudes.numel(), dtype=torch.float64)
            counts[group_index] += torch.stack([saturated, finite, size.to(saturated.device)]).to(counts.device)
        # sharded gradients: this rank counted its shards; the sum over the shards counts the full tensors
        sum_over_shards(counts, [entry.grad for entry in entries])
        return [(s, f, int(t)) for s, f, t in counts.tolist()]
