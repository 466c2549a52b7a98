"""Vector environments from a gymnasium id: space checks, per-rank per-env seeding and autoreset handling.

Every vector env made here uses gymnasium's ``SAME_STEP`` autoreset mode: when sub-env ``i`` ends an episode at a
step, that step returns the *reset* observation of the next episode in ``next_obs[i]`` and the last observation of
the finished episode in ``infos["final_obs"][i]``. Every step is therefore a real transition of one episode, no step
is spent on a reset, and nothing ever pairs a terminal observation with a reset observation, as long as the
transition's next observation is taken from :func:`final_observations`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import create_empty_array

__all__ = ["LeanSyncVectorEnv", "check_spaces", "env_seeds", "final_observations", "make_vector_env", "probe_spaces"]

Vectorization = Literal["sync", "async"]


def check_spaces(
    observation_space: gym.Space,
    action_space: gym.Space,
    action_spaces: tuple[type[gym.Space], ...] = (spaces.Box, spaces.Discrete),
) -> None:
    """Raise ``ValueError`` unless observations are a flat float ``Box`` and actions are one of ``action_spaces``.

    Continuous actions must be a 1-D ``Box`` with finite bounds (the policy's actions are clipped to them).
    """
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"Unsupported observation space {observation_space}: env_id must give a 1-D Box observation space"
        )
    if not isinstance(action_space, action_spaces):
        allowed = ", ".join(cls.__name__ for cls in action_spaces)
        raise ValueError(f"Unsupported action space {action_space}: env_id must give an action space of type {allowed}")
    if isinstance(action_space, spaces.Box):
        bounded = np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
        if len(action_space.shape) != 1 or not bounded:
            raise ValueError(f"Unsupported action space {action_space}: a Box action space needs 1-D finite bounds")


def probe_spaces(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[spaces.Box, gym.Space]:
    """Observation and action space of one ``gym.make(env_id, **env_kwargs)`` env, which is closed again.

    Raises ``ValueError`` naming ``env_id`` when gymnasium does not know the id.
    """
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except gym.error.Error as error:
        raise ValueError(
            f"Invalid env_id {env_id!r}: {error} It must be a registered gymnasium id such as 'CartPole-v1' or "
            "'HalfCheetah-v5' (gymnasium.pprint_registry() lists them)."
        ) from error
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def env_seeds(seed: int, rank: int, num_envs: int) -> list[int]:
    """Reset seeds of one rank's sub-envs: ``seed + rank * num_envs + i`` for ``i < num_envs``, unique over ranks."""
    return [seed + rank * num_envs + i for i in range(num_envs)]


def make_vector_env(
    env_id: str,
    num_envs: int,
    vectorization: Vectorization = "sync",
    env_kwargs: dict[str, Any] | None = None,
    copy: bool = True,
) -> VectorEnv:
    """A ``SAME_STEP``-autoreset vector env of ``num_envs`` copies of ``env_id`` (sync: one process, async: one each).

    The env is not reset here: reset it with ``envs.reset(seed=env_seeds(seed, rank, num_envs))``. With
    ``copy=False`` ``reset`` and ``step`` return the env's own observation array, which the next step overwrites
    (saves a ``deepcopy`` per step for callers that copy what they keep).
    """
    if num_envs < 1:
        raise ValueError(f"Invalid num_envs: {num_envs}; it must be >= 1")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"Invalid vectorization: {vectorization!r}; it must be 'sync' or 'async'")
    if vectorization == "sync":
        env_fns = [functools.partial(gym.make, env_id, **(env_kwargs or {})) for _ in range(num_envs)]
        return LeanSyncVectorEnv(env_fns, copy=copy)
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode=vectorization,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP, "copy": copy},
        **(env_kwargs or {}),
    )


class LeanSyncVectorEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` in ``SAME_STEP`` autoreset mode with a leaner ``step`` (same results, tested).

    Off-policy RL steps one env at a time between updates, where the vector env's per-step bookkeeping (action
    iteration and observation concatenation through the spaces' dispatch, copies of every result) cost as much as
    CartPole's own step. Here each sub-env's observation goes straight into one preallocated array; infos are
    gathered as gymnasium does (``final_obs``/``final_info`` of finished episodes included).
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], copy: bool = True) -> None:
        super().__init__(env_fns, copy=copy, autoreset_mode=AutoresetMode.SAME_STEP)
        self._lean_observations = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        observations = self._lean_observations
        for i, env in enumerate(self.envs):
            obs, rewards[i], terminations[i], truncations[i], info = env.step(actions[i])
            if terminations[i] or truncations[i]:
                infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, i)
                obs, info = env.reset()
            infos = self._add_info(infos, info, i)
            observations[i] = obs
        return (observations.copy() if self.copy else observations), rewards, terminations, truncations, infos


def final_observations(
    next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, infos: dict[str, Any]
) -> np.ndarray:
    """The true next observation of each sub-env's transition, shape ``(num_envs, *obs_shape)``.

    ``next_obs`` where the episode goes on, the finished episode's last observation where it ended (terminated or
    truncated). Returns ``next_obs`` itself (no copy) when no episode ended at this step.
    """
    done = np.logical_or(terminated, truncated)
    if not done.any():
        return next_obs
    real_next_obs = next_obs.copy()
    for i in np.flatnonzero(done):
        real_next_obs[i] = infos["final_obs"][i]
    return real_next_obs
