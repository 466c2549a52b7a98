"""lightning-alphagrad: the AlphaGrad optimizer as a first-class citizen of PyTorch Lightning."""

from lightning_alphagrad.optim import (
    AlphaGrad,
    LRSchedule,
    NonFiniteGradientError,
    alphagrad_config,
    normalized_tanh_update,
    weight_decay_groups,
)
from lightning_alphagrad.rl import DQN, PPO, TD3, RLModule

__version__ = "0.1.0"

__all__ = [
    "DQN",
    "TD3",
    "AlphaGrad",
    "LRSchedule",
    "NonFiniteGradientError",
    "PPO",
    "RLModule",
    "__version__",
    "alphagrad_config",
    "normalized_tanh_update",
    "weight_decay_groups",
]
