"""The optimizer an RL module builds when none is injected: Adam or AlphaGrad, chosen by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from torch import Tensor
from torch.optim import Adam, Optimizer

from lightning_alphagrad.optim import AlphaGrad

__all__ = ["OptimizerName", "check_optimizer_name", "make_optimizer"]

OptimizerName = Literal["adam", "alphagrad"]


def check_optimizer_name(optimizer: str) -> None:
    """Raise ``ValueError`` unless ``optimizer`` is ``"adam"`` or ``"alphagrad"``."""
    if optimizer not in ("adam", "alphagrad"):
        raise ValueError(f"Invalid optimizer: {optimizer!r}; it must be 'adam' or 'alphagrad'")


def make_optimizer(
    params: Iterable[Tensor],
    optimizer: OptimizerName,
    lr: float,
    alpha: float,
    momentum: float,
    alphagrad_eps: float,
    adam_eps: float,
) -> Optimizer:
    """``Adam(params, lr, eps=adam_eps)`` or ``AlphaGrad(params, lr, alpha, momentum, eps=alphagrad_eps)``.

    Adam uses PyTorch's fused kernel when every parameter is a float tensor on CPU or CUDA (same math, fewer ops).
    """
    check_optimizer_name(optimizer)
    params = list(params)
    if optimizer == "adam":
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return Adam(params, lr=lr, eps=adam_eps, fused=fused or None)
    return AlphaGrad(params, lr=lr, alpha=alpha, momentum=momentum, eps=alphagrad_eps)
