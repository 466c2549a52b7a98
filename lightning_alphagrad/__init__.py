"""lightning-alphagrad: the AlphaGrad optimizer as a first-class citizen of PyTorch Lightning."""

from lightning_alphagrad.optim import (
    AlphaGrad,
    LRSchedule,
    NonFiniteGradientError,
    alphagrad_config,
    normalized_tanh_update,
    weight_decay_groups,
)

__version__ = "0.1.0"

__all__ = [
    "AlphaGrad",
    "LRSchedule",
    "NonFiniteGradientError",
    "__version__",
    "alphagrad_config",
    "normalized_tanh_update",
    "weight_decay_groups",
]
