"""lightning-alphagrad: the AlphaGrad optimizer as a first-class citizen of PyTorch Lightning."""

from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor
from lightning_alphagrad.distributed import pause_for_gloo_at_exit
from lightning_alphagrad.optim import (
    AlphaGrad,
    LRSchedule,
    NonFiniteGradientError,
    alphagrad_config,
    normalized_tanh_update,
    weight_decay_groups,
)
from lightning_alphagrad.rl import DQN, PPO, TD3, RLModule
from lightning_alphagrad.schedules import (
    ChainedAlpha,
    ConstantAlpha,
    CosineAlpha,
    ExponentialAlpha,
    LinearAlpha,
    MultiStepAlpha,
    SaturationTargetAlpha,
    SequentialAlpha,
    StepAlpha,
)

__version__ = "0.1.0"

__all__ = [
    "DQN",
    "TD3",
    "AlphaGrad",
    "AlphaMonitor",
    "ChainedAlpha",
    "ConstantAlpha",
    "CosineAlpha",
    "ExponentialAlpha",
    "GradNormMonitor",
    "LinearAlpha",
    "MultiStepAlpha",
    "SaturationTargetAlpha",
    "SequentialAlpha",
    "StepAlpha",
    "TanhSaturationMonitor",
    "LRSchedule",
    "NonFiniteGradientError",
    "PPO",
    "RLModule",
    "__version__",
    "alphagrad_config",
    "normalized_tanh_update",
    "pause_for_gloo_at_exit",
    "weight_decay_groups",
]
