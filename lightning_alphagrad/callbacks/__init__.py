"""Lightning callbacks that show what AlphaGrad does (gradient norms, tanh saturation, alpha) and RL run control."""

from lightning_alphagrad.callbacks.alpha_monitor import AlphaMonitor
from lightning_alphagrad.callbacks.env_step_checkpoint import EnvStepCheckpoint
from lightning_alphagrad.callbacks.grad_norm_monitor import GradNormMonitor
from lightning_alphagrad.callbacks.progress import RLProgressBar
from lightning_alphagrad.callbacks.saturation_monitor import TanhSaturationMonitor
from lightning_alphagrad.callbacks.step_monitor import OptimizerStepMonitor
from lightning_alphagrad.callbacks.stop_at_env_steps import StopAtEnvSteps

__all__ = [
    "AlphaMonitor",
    "EnvStepCheckpoint",
    "GradNormMonitor",
    "OptimizerStepMonitor",
    "RLProgressBar",
    "StopAtEnvSteps",
    "TanhSaturationMonitor",
]
