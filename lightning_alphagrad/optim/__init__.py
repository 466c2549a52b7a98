"""The AlphaGrad optimizer, its shared math and its ``configure_optimizers`` factory."""

from lightning_alphagrad.optim.alphagrad import AlphaGrad, NonFiniteGradientError
from lightning_alphagrad.optim.factory import LRSchedule, alphagrad_config, weight_decay_groups
from lightning_alphagrad.optim.functional import effective_alpha, grad_norm, normalized_tanh_update
from lightning_alphagrad.optim.grad_stats import step_grad_norms

__all__ = [
    "AlphaGrad",
    "LRSchedule",
    "NonFiniteGradientError",
    "alphagrad_config",
    "effective_alpha",
    "grad_norm",
    "normalized_tanh_update",
    "step_grad_norms",
    "weight_decay_groups",
]
