"""Reinforcement learning with AlphaGrad: shared plumbing (envs, episode statistics, evaluation, normalization,
data feeding, a base module) and the algorithms built on it."""

from lightning_alphagrad.rl.data import StepIndexDataset, step_index_loader
from lightning_alphagrad.rl.envs import check_spaces, env_seeds, final_observations, make_vector_env, probe_spaces
from lightning_alphagrad.rl.episodes import EpisodeStatistics, EpisodeTracker
from lightning_alphagrad.rl.evaluation import evaluate_policy
from lightning_alphagrad.rl.module import RLModule
from lightning_alphagrad.rl.normalization import RewardScaler, RunningMeanStd
from lightning_alphagrad.rl.ppo import PPO, ppo_mlp

__all__ = [
    "PPO",
    "EpisodeStatistics",
    "EpisodeTracker",
    "RLModule",
    "RewardScaler",
    "RunningMeanStd",
    "StepIndexDataset",
    "check_spaces",
    "env_seeds",
    "evaluate_policy",
    "final_observations",
    "make_vector_env",
    "ppo_mlp",
    "probe_spaces",
    "step_index_loader",
]
