"""``OffPolicyModule``: what TD3 and DQN share (envs, replay buffer, chunked feeding, logging, evaluation, resume)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_alphagrad._validation import check_arg
from lightning_alphagrad.rl.data import step_index_loader
from lightning_alphagrad.rl.envs import check_spaces, final_observations, make_vector_env, probe_spaces
from lightning_alphagrad.rl.episodes import EpisodeStatistics, EpisodeTracker
from lightning_alphagrad.rl.module import RLModule
from lightning_alphagrad.rl.optimizer_choice import check_optimizer_name
from lightning_alphagrad.rl.replay import ReplayBuffer

__all__ = ["OffPolicyModule"]


class OffPolicyModule(RLModule):
    """Base of the off-policy modules: each ``training_step`` covers ``vector_steps_per_training_step`` env steps.

    Subclasses name the action space they need (``action_space_type``) and implement :meth:`explore` (actions
    of one vector step) and :meth:`act` (deterministic actions for evaluation). This base creates each rank's envs
    and replay buffer in ``setup``, feeds the Trainer a fixed number of chunk indices (identical on all ranks), stores
    every vector step with :meth:`env_step`, logs every ``log_interval`` env steps, evaluates every
    ``eval_interval`` env steps and at the end, and stops once ``total_timesteps`` env steps are taken.

    Learning starts after ``learning_starts`` env steps. Checkpoints hold the env-step clock, the networks and
    optimizers, and the replay buffer's contents only with ``save_replay_buffer``; without them a resumed run first
    refills the buffer for ``learning_starts`` env steps with its current policy (``learning_resumes_at``).
    """

    def __init__(
        self,
        *,
        env_id: str,
        action_space_type: type[spaces.Space],
        total_timesteps: int,
        buffer_size: int,
        batch_size: int,
        learning_starts: int,
        num_envs: int,
        gamma: float,
        tau: float,
        learning_rate: float,
        optimizer: str,
        max_abs_q: float,
        save_replay_buffer: bool,
        eval_interval: int,
        num_eval_episodes: int,
        log_interval: int,
        env_kwargs: dict[str, Any] | None,
        seed: int,
    ) -> None:
        super().__init__(seed=seed)
        for name, value in (("total_timesteps", total_timesteps), ("buffer_size", buffer_size),
                            ("batch_size", batch_size), ("num_envs", num_envs),
                            ("num_eval_episodes", num_eval_episodes), ("log_interval", log_interval)):  # fmt: skip
            check_arg(name, value, isinstance(value, int) and value > 0, "a positive int")
        check_arg("learning_starts", learning_starts, 0 <= learning_starts <= total_timesteps,
                  f"in [0, total_timesteps={total_timesteps}]")  # fmt: skip
        check_arg("batch_size", batch_size, batch_size <= buffer_size, f"<= buffer_size={buffer_size}")
        check_arg("eval_interval", eval_interval, eval_interval >= 0, ">= 0 (0 disables evaluation)")
        check_arg("gamma", gamma, 0.0 <= gamma <= 1.0, "in [0, 1]")
        check_arg("tau", tau, 0.0 < tau <= 1.0, "in (0, 1]")
        check_arg("learning_rate", learning_rate, learning_rate > 0.0, "> 0")
        check_arg("max_abs_q", max_abs_q, max_abs_q > 0.0, "> 0")
        check_optimizer_name(optimizer)
        observation_space, action_space = probe_spaces(env_id, env_kwargs)
        try:
            check_spaces(observation_space, action_space, action_spaces=(action_space_type,))
        except ValueError as error:
            needs = "discrete" if action_space_type is spaces.Discrete else "continuous"
            raise ValueError(
                f"Invalid env_id {env_id!r} for {type(self).__name__}, which needs {needs} actions: {error}"
            ) from error
        self.env_id = env_id
        self.total_timesteps = total_timesteps
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.learning_starts = learning_starts
        self.num_envs = num_envs
        self.save_replay_buffer = save_replay_buffer
        self.eval_interval = eval_interval
        self.num_eval_episodes = num_eval_episodes
        self.log_interval = log_interval
        self.env_kwargs = env_kwargs
        self.learning_resumes_at = learning_starts
        self.episode_statistics = EpisodeStatistics()
        self.envs = None
        self.eval_envs = None
        self.replay_buffer: ReplayBuffer | None = None
        self.obs: Tensor | None = None
        self.action_space = action_space
        self.obs_dim = int(np.prod(observation_space.shape))
        self.vector_steps_per_training_step = 1
        self.rng = np.random.default_rng(seed)
        self._buffer_state: dict[str, Any] | None = None
        self._last_eval_step = -1

    # ----------------------------------------------------------------------------------------------------- hooks
    def explore(self) -> Tensor:
        """Actions of this vector step, ``(num_envs, *action_shape)``, with exploration."""
        raise NotImplementedError

    def act(self, obs: Tensor) -> Tensor:
        """Deterministic actions for observations ``(N, obs_dim)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ envs, data
    @property
    def env_steps_per_vector_step(self) -> int:
        """Env steps (summed over sub-envs and ranks) added when every rank takes one vector-env step."""
        return self.num_envs * self.world_size

    @property
    def vector_steps_per_rank(self) -> int:
        """Vector-env steps each rank takes over the whole run."""
        return self.total_timesteps // self.env_steps_per_vector_step

    @property
    def learning(self) -> bool:
        """Whether updates are due: env steps past ``learning_starts`` (or past the refill after a resume)."""
        return self.env_steps > self.learning_resumes_at

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # copy=False: env_step copies the observation it keeps (the replay buffer copies what it stores)
        self.envs = make_vector_env(self.env_id, self.num_envs, env_kwargs=self.env_kwargs, copy=False)
        if self.eval_interval:
            self.eval_envs = make_vector_env(self.env_id, 1, env_kwargs=self.env_kwargs)
        self.episode_tracker = EpisodeTracker(self.num_envs)
        discrete = isinstance(self.action_space, spaces.Discrete)
        self.replay_buffer = ReplayBuffer(
            self.buffer_size,
            (self.obs_dim,),
            () if discrete else self.action_space.shape,
            self.num_envs,
            torch.int64 if discrete else torch.float32,
            self.device,
        )
        if self._buffer_state is not None:
            self.replay_buffer.load_state_dict(self._buffer_state)
            self._buffer_state = None

    def on_fit_start(self) -> None:
        self.reseed_generator()
        self.replay_buffer.generator.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
        self.rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator)))
        obs, _ = self.envs.reset(seed=self.train_env_seeds(self.num_envs))
        self.obs = torch.from_numpy(obs.astype(np.float32))

    def train_dataloader(self) -> DataLoader:
        # One index per chunk of the whole run, also when resuming: Lightning restores how many batches of the epoch
        # are done (a checkpoint written mid-epoch) and runs the rest. The clock is env_steps (see chunk_length).
        return step_index_loader(0, -(-self.vector_steps_per_rank // self.vector_steps_per_training_step))

    def chunk_length(self) -> int:
        """Vector steps of the current training step: a full chunk, or what is left of the run."""
        done = self.env_steps // self.env_steps_per_vector_step
        return min(self.vector_steps_per_training_step, self.vector_steps_per_rank - done)

    def on_train_batch_start(self, batch: int, batch_idx: int) -> int | None:
        # -1 ends the epoch: the run is done even if the batches Lightning counted are not (on every rank alike)
        return -1 if self.env_steps // self.env_steps_per_vector_step >= self.vector_steps_per_rank else None

    def env_step(self) -> str | None:
        """Take one vector-env step with :meth:`explore` and store it; a reason if something is not finite."""
        actions = self.explore()
        if actions.is_floating_point() and not bool(torch.isfinite(actions).all()):
            return "the policy produced a non-finite action"
        next_obs, rewards, terminations, truncations, infos = self.envs.step(actions.cpu().numpy())
        real_next_obs = final_observations(next_obs, terminations, truncations, infos)
        if not (np.isfinite(real_next_obs).all() and np.isfinite(rewards).all()):
            return "the environment returned a non-finite observation or reward"
        self.replay_buffer.add(self.obs, real_next_obs, actions, rewards, terminations, truncations)
        self.episode_statistics.update(*self.episode_tracker.step(rewards, np.logical_or(terminations, truncations)))
        self.obs = torch.from_numpy(next_obs.astype(np.float32))  # a copy: the env reuses next_obs
        self.env_steps += self.env_steps_per_vector_step
        return None

    # ------------------------------------------------------------------------------------------ logging, evaluation
    def log_and_evaluate(self, env_steps_before: int, metrics: Callable[[], dict[str, Tensor]]) -> None:
        """Log ``metrics()`` and episode statistics, and evaluate, when this chunk crossed an interval (collective)."""
        if self.env_steps // self.log_interval != env_steps_before // self.log_interval:
            self.log_env_metrics({**self.episode_statistics.compute(), **metrics()})
        if self.eval_interval and self.env_steps // self.eval_interval != env_steps_before // self.eval_interval:
            self.evaluate()

    def evaluate(self) -> None:
        """Mean return of ``num_eval_episodes`` deterministic episodes per rank, averaged over ranks, logged."""
        mean = self.evaluation_return(
            lambda obs: self.act(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy(), self.num_eval_episodes
        )
        self.log_env_metrics({"eval/return_mean": mean})
        self._last_eval_step = self.env_steps

    def on_train_epoch_end(self) -> None:
        if self.env_steps // self.env_steps_per_vector_step >= self.vector_steps_per_rank:
            self.trainer.should_stop = True
            if self.eval_interval and self._last_eval_step != self.env_steps:
                self.evaluate()

    # ----------------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["learning_resumes_at"] = self.learning_resumes_at
        if self.save_replay_buffer and self.replay_buffer is not None:
            checkpoint["replay_buffer"] = self.replay_buffer.state_dict(include_storage=True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.learning_resumes_at = int(checkpoint["learning_resumes_at"])
        self._buffer_state = checkpoint.get("replay_buffer")
        if self._buffer_state is not None and self.replay_buffer is not None:  # setup ran before the restore
            self.replay_buffer.load_state_dict(self._buffer_state)
            self._buffer_state = None
        elif self._buffer_state is None:
            self.learning_resumes_at = max(self.learning_resumes_at, self.env_steps + self.learning_starts)
