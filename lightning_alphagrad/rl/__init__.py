"""Reinforcement learning with AlphaGrad: shared plumbing (envs, episode statistics, evaluation, normalization,
data feeding, a base module) and the algorithms built on it."""

from lightning_alphagrad.rl.data import StepIndexDataset, step_index_loader
from lightning_alphagrad.rl.divergence import DivergenceError
from lightning_alphagrad.rl.dqn import DQN
from lightning_alphagrad.rl.envs import (
    LeanSyncVectorEnv,
    check_spaces,
    env_seeds,
    final_observations,
    make_vector_env,
    probe_spaces,
)
from lightning_alphagrad.rl.episodes import EpisodeStatistics, EpisodeTracker
from lightning_alphagrad.rl.evaluation import evaluate_policy
from lightning_alphagrad.rl.module import RLModule
from lightning_alphagrad.rl.networks import DeterministicActor, EnsembleCritic, QNetwork, mlp, ppo_mlp
from lightning_alphagrad.rl.normalization import RewardScaler, RunningMeanStd
from lightning_alphagrad.rl.offpolicy import OffPolicyModule
from lightning_alphagrad.rl.ppo import PPO
from lightning_alphagrad.rl.replay import ReplayBatch, ReplayBuffer
from lightning_alphagrad.rl.td3 import TD3

__all__ = [
    "DQN",
    "PPO",
    "TD3",
    "DeterministicActor",
    "DivergenceError",
    "EnsembleCritic",
    "OffPolicyModule",
    "QNetwork",
    "ReplayBatch",
    "ReplayBuffer",
    "EpisodeStatistics",
    "EpisodeTracker",
    "LeanSyncVectorEnv",
    "RLModule",
    "RewardScaler",
    "RunningMeanStd",
    "StepIndexDataset",
    "check_spaces",
    "env_seeds",
    "evaluate_policy",
    "final_observations",
    "make_vector_env",
    "mlp",
    "ppo_mlp",
    "probe_spaces",
    "step_index_loader",
]
