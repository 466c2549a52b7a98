"""The AlphaGrad optimizer (Sane, arXiv 2504.16020): tanh of the per-tensor L2-normalized gradient."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from lightning_alphagrad.optim.functional import effective_alpha, normalized_tanh_update, upcast_dtype

__all__ = ["AlphaGrad", "NonFiniteGradientError"]

SKIPPED_STEPS_KEY = "skipped_steps"


class NonFiniteGradientError(RuntimeError):
    """Raised by :class:`AlphaGrad` with ``on_nonfinite="raise"`` when a gradient holds inf or NaN."""


def _check_range(name: str, value: float, low: float, high: float, low_open: bool, high_open: bool) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is finite and inside the interval."""
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not (math.isfinite(value) and inside):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"Invalid {name}: {value!r}; it must be finite and lie in {interval}")


class AlphaGrad(Optimizer):
    r"""AlphaGrad: per-tensor L2 normalization, a tanh of steepness ``alpha``, optional SGD-style momentum.

    For every parameter tensor ``p`` with gradient ``g`` (weights and biases each on their own):

    .. code-block:: text

        g~  = g / (||g||_2 + eps)                    # norm in fp32 for fp16/bf16 gradients
        u   = tanh(alpha_t * g~)                     # alpha_t = alpha, or alpha * sqrt(numel) if size_aware
        buf = u                       (first step)   # only with momentum > 0
        buf = momentum * buf + (1 - dampening) * u   (later steps)
        d   = u + momentum * buf if nesterov else buf     (d = u without momentum)
        p   = p * (1 - lr * weight_decay)            # decoupled weight decay, never enters tanh or buf
        p   = p - lr * d

    Small ``alpha`` behaves like normalized SGD (``u ~ alpha * g~``), large ``alpha`` like sign descent. Without
    momentum AlphaGrad keeps no per-parameter state; with momentum it keeps one buffer per parameter.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate, >= 0.
        alpha: tanh steepness, finite and > 0. With ``size_aware=True`` it is the steepness applied to the
            RMS-normalized gradient ``sqrt(numel) * g~`` (typical values 0.5-5), so one value treats small biases
            and large matrices alike; use it when tensors of very different sizes share a group.
        momentum: momentum factor in [0, 1).
        dampening: dampening for momentum in [0, 1].
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        weight_decay: decoupled (AdamW-style) weight decay >= 0, applied as ``p *= 1 - lr * weight_decay``.
        eps: added to each tensor's gradient norm, > 0.
        maximize: ascend the objective instead of descending.
        foreach: use the multi-tensor implementation; ``None`` picks it automatically.
        size_aware: scale alpha per tensor by ``sqrt(numel)``.
        on_nonfinite: ``"skip"`` (default) skips the whole step when any gradient holds inf/NaN, leaves parameters
            and momentum untouched, warns and counts it in ``optimizer.state["skipped_steps"]`` (saved in
            checkpoints); ``"raise"`` raises :class:`NonFiniteGradientError` instead.

    Complex parameters are treated as pairs of real numbers (their real view).
    Sparse gradients are rejected with a ``RuntimeError``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        alpha: float = 1.0,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        maximize: bool = False,
        foreach: bool | None = None,
        size_aware: bool = False,
        on_nonfinite: Literal["skip", "raise"] = "skip",
    ) -> None:
        if on_nonfinite not in ("skip", "raise"):
            raise ValueError(f"Invalid on_nonfinite: {on_nonfinite!r}; it must be 'skip' or 'raise'")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            foreach=foreach,
            size_aware=size_aware,
        )
        self._validate_group(defaults)
        self.on_nonfinite = on_nonfinite
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._validate_group(group)

    @staticmethod
    def _validate_group(group: dict[str, Any]) -> None:
        _check_range("lr", float(group["lr"]), 0.0, math.inf, False, True)
        _check_range("alpha", float(group["alpha"]), 0.0, math.inf, True, True)
        _check_range("eps", float(group["eps"]), 0.0, math.inf, True, True)
        _check_range("momentum", float(group["momentum"]), 0.0, 1.0, False, True)
        _check_range("dampening", float(group["dampening"]), 0.0, 1.0, False, False)
        _check_range("weight_decay", float(group["weight_decay"]), 0.0, math.inf, False, True)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Invalid nesterov=True: it requires momentum in (0, 1) and dampening 0, "
                f"got momentum={group['momentum']} and dampening={group['dampening']}"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._validate_group(self.param_groups[-1])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("on_nonfinite", "skip")
        for group in self.param_groups:
            group.setdefault("size_aware", False)
            group.setdefault("foreach", None)

    @property
    def skipped_steps(self) -> int:
        """Number of steps skipped because a gradient was not finite (kept in the state, so in checkpoints)."""
        return int(self.state.get(SKIPPED_STEPS_KEY, 0))

    def _gather(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
        """Params with a gradient, their gradients (sign-flipped if maximizing) and momentum buffers, as real views."""
        params, grads, bufs = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AlphaGrad does not support sparse gradients; use dense gradients")
            grad = -p.grad if group["maximize"] else p.grad
            if torch.is_complex(p):
                params.append(torch.view_as_real(p))
                grad = torch.view_as_real(grad)
            else:
                params.append(p)
            grads.append(grad)
            buf = self.state[p].get("momentum_buffer") if group["momentum"] > 0 else None
            bufs.append(torch.view_as_real(buf) if buf is not None and torch.is_complex(buf) else buf)
        return params, grads, bufs

    def _store_buffers(self, group: dict[str, Any], bufs: list[Tensor | None]) -> None:
        if group["momentum"] <= 0:
            return
        with_grad = [p for p in group["params"] if p.grad is not None]
        for p, buf in zip(with_grad, bufs, strict=True):
            if buf is not None and "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.view_as_complex(buf) if torch.is_complex(p) else buf

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` (re-evaluating the loss) runs with gradients enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        gathered = [self._gather(group) for group in self.param_groups]
        norms = [
            _norms(grads, _use_foreach(group, grads))
            for group, (_, grads, _) in zip(self.param_groups, gathered, strict=True)
        ]
        all_norms = [n.to(torch.float64) for group_norms in norms for n in group_norms]
        if not all_norms:
            return loss
        # One reduction over the norms computed anyway: any inf/NaN gradient makes its norm, and the sum, non-finite.
        finite = torch.stack(all_norms).sum().isfinite()

        if torch.compiler.is_compiling():
            # No host sync inside a compiled step: the update is masked arithmetically instead of skipped by a branch.
            keep = finite
            skipped = self.state.get(SKIPPED_STEPS_KEY)
            if not isinstance(skipped, Tensor):
                skipped = torch.tensor(float(skipped or 0), device=finite.device)
            self.state[SKIPPED_STEPS_KEY] = skipped + (~finite).to(skipped.dtype)
        else:
            if not bool(finite):
                self._handle_nonfinite()
                return loss
            keep = None

        for group, (params, grads, bufs), group_norms in zip(self.param_groups, gathered, norms, strict=True):
            if not params:
                continue
            kernel = _foreach_alphagrad if _use_foreach(group, grads) else _single_tensor_alphagrad
            kernel(
                params,
                grads,
                bufs,
                group_norms,
                lr=group["lr"],
                alpha=group["alpha"],
                momentum=group["momentum"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                size_aware=group["size_aware"],
                keep=keep,
            )
            self._store_buffers(group, bufs)
        return loss

    def _handle_nonfinite(self) -> None:
        message = "AlphaGrad: a gradient holds inf or NaN"
        if self.on_nonfinite == "raise":
            raise NonFiniteGradientError(message + " (on_nonfinite='raise')")
        self.state[SKIPPED_STEPS_KEY] = self.skipped_steps + 1
        warnings.warn(
            f"{message}; the step was skipped, parameters and momentum are unchanged "
            f"({self.skipped_steps} skipped so far)",
            RuntimeWarning,
            stacklevel=3,
        )


def _use_foreach(group: dict[str, Any], grads: list[Tensor]) -> bool:
    if group["foreach"] is not None:
        return bool(group["foreach"])
    return len(grads) > 1 and not torch.jit.is_scripting()


def _norms(grads: list[Tensor], foreach: bool) -> list[Tensor]:
    """Per-tensor L2 norms in each gradient's compute dtype (fp32 for fp16/bf16)."""
    if not foreach:
        return [torch.linalg.vector_norm(g, dtype=upcast_dtype(g.dtype)) for g in grads]
    norms: list[Tensor | None] = [None] * len(grads)
    by_dtype: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, g in enumerate(grads):
        by_dtype.setdefault((g.device, g.dtype), []).append(i)
    for (_, dtype), idx in by_dtype.items():
        for i, n in zip(idx, torch._foreach_norm([grads[i] for i in idx], 2, dtype=upcast_dtype(dtype)), strict=True):
            norms[i] = n
    return norms  # type: ignore[return-value]


def _single_tensor_alphagrad(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    norms: list[Tensor],
    *,
    lr: float,
    alpha: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    size_aware: bool,
    keep: Tensor | None,
) -> None:
    """Reference kernel: one tensor at a time, written to be read. ``keep`` (0-d bool) masks the update if given."""
    for i, (param, grad, norm) in enumerate(zip(params, grads, norms, strict=True)):
        if keep is not None:
            grad = torch.where(keep, grad, 0)
        update = normalized_tanh_update(grad, alpha, eps, size_aware=size_aware, norm=norm).to(param.dtype)
        if momentum > 0:
            buf = bufs[i]
            if buf is None:
                buf = update.clone()
                bufs[i] = buf
            elif keep is None:
                buf.mul_(momentum).add_(update, alpha=1 - dampening)
            else:
                buf.copy_(torch.where(keep, buf * momentum + update * (1 - dampening), buf))
            update = update.add(buf, alpha=momentum) if nesterov else buf
        if keep is None:
            if weight_decay != 0:
                param.mul_(1 - lr * weight_decay)
            param.add_(update, alpha=-lr)
        else:
            param.copy_(torch.where(keep, param * (1 - lr * weight_decay) - lr * update, param))


def _foreach_alphagrad(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    norms: list[Tensor],
    *,
    lr: float,
    alpha: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    size_aware: bool,
    keep: Tensor | None,
) -> None:
    """Multi-tensor kernel: the same arithmetic as :func:`_single_tensor_alphagrad`, in ``torch._foreach_*`` ops."""
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs, norms], with_indices=True  # type: ignore[list-item]
    )
    for (_device, _dtype), ((dev_params, dev_grads, dev_bufs, dev_norms), indices) in grouped.items():
        compute = upcast_dtype(dev_grads[0].dtype)
        if keep is not None:
            dev_grads = [torch.where(keep, g, 0) for g in dev_grads]
        if compute != dev_grads[0].dtype:
            dev_grads = [g.to(compute) for g in dev_grads]
        updates = torch._foreach_div(dev_grads, torch._foreach_add(dev_norms, eps))
        if size_aware:
            torch._foreach_mul_(updates, [effective_alpha(alpha, g.numel(), True) for g in dev_grads])
        else:
            torch._foreach_mul_(updates, alpha)
        torch._foreach_tanh_(updates)
        if compute != dev_params[0].dtype:
            updates = [u.to(dev_params[0].dtype) for u in updates]

        if momentum > 0:
            old = [j for j, buf in enumerate(dev_bufs) if buf is not None]
            old_bufs, old_updates = [dev_bufs[j] for j in old], [updates[j] for j in old]
            if old and keep is None:
                torch._foreach_mul_(old_bufs, momentum)
                torch._foreach_add_(old_bufs, old_updates, alpha=1 - dampening)
            elif old:
                new = torch._foreach_add(torch._foreach_mul(old_bufs, momentum), old_updates, alpha=1 - dampening)
                for buf, n in zip(old_bufs, new, strict=True):
                    buf.copy_(torch.where(keep, n, buf))
            for j, buf in enumerate(dev_bufs):
                if buf is None:  # first step of this parameter: buf = u
                    dev_bufs[j] = bufs[indices[j]] = updates[j].clone()
            updates = torch._foreach_add(updates, dev_bufs, alpha=momentum) if nesterov else dev_bufs

        if keep is None:
            if weight_decay != 0:
                torch._foreach_mul_(dev_params, 1 - lr * weight_decay)
            torch._foreach_add_(dev_params, updates, alpha=-lr)
        else:
            for param, update in zip(dev_params, updates, strict=True):
                param.copy_(torch.where(keep, param * (1 - lr * weight_decay) - lr * update, param))
