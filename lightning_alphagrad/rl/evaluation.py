"""Evaluation of a deterministic policy on vector envs kept apart from the training envs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from gymnasium.vector import VectorEnv

from lightning_alphagrad.rl.episodes import EpisodeTracker

__all__ = ["evaluate_policy"]

Policy = Callable[[np.ndarray], np.ndarray]


def evaluate_policy(policy: Policy, envs: VectorEnv, num_episodes: int, seeds: list[int]) -> np.ndarray:
    """Undiscounted returns of ``num_episodes`` episodes, shape ``(num_episodes,)``, in the order they finish.

    ``policy`` maps observations ``(num_envs, *obs_shape)`` to actions ``(num_envs, *action_shape)`` (deterministic,
    observation normalization included, no statistics updated). The envs are reset with ``seeds`` (one per sub-env),
    so every evaluation sees the same start states. Sub-env ``i`` contributes ``num_episodes // num_envs`` episodes,
    plus one if ``i < num_episodes % num_envs``; later episodes are discarded, so short episodes are not favored.
    """
    if num_episodes < 1:
        raise ValueError(f"Invalid num_episodes: {num_episodes}; it must be >= 1")
    num_envs = envs.num_envs
    quota = np.full(num_envs, num_episodes // num_envs) + (np.arange(num_envs) < num_episodes % num_envs)
    tracker = EpisodeTracker(num_envs)
    returns: list[float] = []
    obs, _ = envs.reset(seed=seeds)
    while (quota > 0).any():
        obs, rewards, terminated, truncated, _ = envs.step(policy(obs))
        dones = np.logical_or(terminated, truncated)
        finished_returns, _ = tracker.step(rewards, dones)
        for env_index, episode_return in zip(np.flatnonzero(dones), finished_returns, strict=True):
            if quota[env_index] > 0:
                returns.append(float(episode_return))
                quota[env_index] -= 1
    return np.asarray(returns)
