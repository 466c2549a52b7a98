"""TD3 (Fujimoto et al., 2018) as a LightningModule, following CleanRL's ``td3_continuous_action.py``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from lightning_alphagrad.rl.data import step_index_loader
from lightning_alphagrad.rl.divergence import stop_on_divergence
from lightning_alphagrad.rl.envs import check_spaces, final_observations, make_vector_env, probe_spaces
from lightning_alphagrad.rl.episodes import EpisodeStatistics, EpisodeTracker
from lightning_alphagrad.rl.evaluation import evaluate_policy
from lightning_alphagrad.rl.module import RLModule
from lightning_alphagrad.rl.offpolicy_networks import DeterministicActor, EnsembleCritic
from lightning_alphagrad.rl.optimizer_choice import OptimizerName, check_optimizer_name, make_optimizer
from lightning_alphagrad.rl.replay import ReplayBatch, ReplayBuffer

__all__ = ["TD3"]


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r}; it must be {allowed}")


def average_gradients(grads: list[Tensor], local_flag: bool, world_size: int) -> tuple[list[Tensor], bool]:
    """Average ``grads`` over ranks in one all-reduce that also carries ``local_flag``.

    Returns the averaged gradients and whether any rank raised its flag or any gradient is non-finite: every rank
    gets the same answer, so every rank takes the same decision. With one process nothing is communicated.
    """
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.full((1,), float(local_flag), device=grads[0].device)])
    if world_size > 1:
        torch.distributed.all_reduce(flat)
        flat /= world_size
    bad = bool(flat[-1] > 0) or not bool(torch.isfinite(flat[:-1]).all())
    averaged = [chunk.view_as(g) for chunk, g in zip(flat[:-1].split([g.numel() for g in grads]), grads, strict=True)]
    return averaged, bad


class TD3(RLModule):
    """Twin Delayed DDPG on a continuous-action gymnasium env, CleanRL's defaults (``td3_continuous_action.py``).

    Every ``training_step`` runs ``steps_per_training_step`` vector-env steps; after ``learning_starts`` env steps,
    each vector-env step is followed by one critic update, and every ``policy_frequency``-th critic update by one
    actor update and the Polyak update of all target networks. Before ``learning_starts`` actions are uniform in the
    action space, later ``actor(obs) + N(0, (exploration_noise * action_scale)^2)``, clipped to the bounds. The
    critic target is ``r + gamma * (1 - terminated) * min_i Q_i'(s', clip(actor'(s') + clip(N(0, policy_noise),
    +-noise_clip) * action_scale))``; truncated episodes bootstrap from their final observation.

    Optimization is manual with two optimizers, ``[actor, critic]``. Gradients are computed with
    ``torch.autograd.grad`` and averaged across DDP ranks inside the module (one all-reduce per update), so plain
    ``Trainer(strategy="ddp")`` works although the critic loss never touches the actor. Precision: 32-bit or
    ``bf16-mixed`` (no gradient scaler is used).

    Step counts (``total_timesteps``, ``learning_starts``) are environment steps summed over all envs and ranks. Each
    rank has its own envs (seeded by rank) and replay buffer; parameters stay identical on all ranks.

    Args:
        env_id: gymnasium id of an env with a flat ``Box`` observation and a bounded 1-D ``Box`` action space.
        total_timesteps: env steps of the whole run.
        learning_rate: learning rate of both optimizers.
        buffer_size: replay capacity per rank.
        gamma: discount factor in [0, 1].
        tau: Polyak coefficient of the target networks in (0, 1].
        batch_size: minibatch size per rank, at most ``buffer_size``.
        policy_noise: std of the target policy smoothing noise, in units of the action scale.
        exploration_noise: std of the exploration noise, in units of the action scale.
        learning_starts: env steps of uniform random actions before the first update, at most ``total_timesteps``.
        policy_frequency: critic updates per actor update (the policy delay).
        noise_clip: bound of the target policy smoothing noise.
        num_envs: sub-envs per rank.
        steps_per_training_step: vector-env steps (and updates) per Lightning ``training_step``.
        optimizer: ``"adam"`` or ``"alphagrad"``, used for both networks unless an optimizer callable is given.
        alpha: AlphaGrad steepness of both optimizers (tuned per task in the paper).
        actor_alpha: AlphaGrad steepness of the actor's optimizer; ``None`` uses ``alpha``.
        critic_alpha: AlphaGrad steepness of the critic's optimizer; ``None`` uses ``alpha``.
        momentum: AlphaGrad momentum.
        alphagrad_eps: AlphaGrad epsilon.
        adam_eps: Adam epsilon (PyTorch's default, as in CleanRL).
        actor_optimizer: optimizer callable ``params -> Optimizer`` for the actor (e.g. from the Lightning CLI);
            overrides ``optimizer``.
        critic_optimizer: the same for the critics.
        actor: own actor ``obs (B, obs_dim) -> action (B, act_dim)``; default CleanRL's 256-256 ReLU MLP.
        critic: own critics ``forward(obs, action, num_members=None) -> Q (E, B)`` with ``E >= 2``, evaluating only
            the first ``num_members`` when given; default :class:`EnsembleCritic` (two 256-256 ReLU MLPs).
        max_abs_q: a critic whose Q-values exceed this magnitude counts as diverged.
        save_replay_buffer: store the replay buffer's contents in checkpoints (off by default: a 1e6 Hopper buffer
            is ~100 MB). Without them a resumed run refills the buffer for ``learning_starts`` env steps with the
            current policy before updating again. Under DDP only rank 0's buffer is saved, and every rank resumes
            from it.
        eval_interval: evaluate the deterministic policy every this many env steps and at the end (0: never).
        num_eval_episodes: episodes per evaluation (per rank).
        log_interval: log losses and episode statistics every this many env steps.
        env_kwargs: keyword arguments of ``gym.make``.
        seed: base seed of envs and noise (see :class:`~lightning_alphagrad.rl.RLModule`).
    """

    def __init__(
        self,
        env_id: str = "Hopper-v4",
        total_timesteps: int = 1_000_000,
        learning_rate: float = 3e-4,
        buffer_size: int = 1_000_000,
        gamma: float = 0.99,
        tau: float = 0.005,
        batch_size: int = 256,
        policy_noise: float = 0.2,
        exploration_noise: float = 0.1,
        learning_starts: int = 25_000,
        policy_frequency: int = 2,
        noise_clip: float = 0.5,
        num_envs: int = 1,
        steps_per_training_step: int = 8,
        optimizer: OptimizerName = "adam",
        alpha: float = 100.0,
        actor_alpha: float | None = None,
        critic_alpha: float | None = None,
        momentum: float = 0.9,
        alphagrad_eps: float = 1e-5,
        adam_eps: float = 1e-8,
        actor_optimizer: OptimizerCallable | None = None,
        critic_optimizer: OptimizerCallable | None = None,
        actor: nn.Module | None = None,
        critic: nn.Module | None = None,
        max_abs_q: float = 1e6,
        save_replay_buffer: bool = False,
        eval_interval: int = 0,
        num_eval_episodes: int = 10,
        log_interval: int = 1000,
        env_kwargs: dict[str, Any] | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__(seed=seed)
        self.save_hyperparameters(ignore=["actor", "critic", "actor_optimizer", "critic_optimizer"])
        for name in ("total_timesteps", "buffer_size", "batch_size", "policy_frequency", "num_envs",
                     "steps_per_training_step", "num_eval_episodes", "log_interval"):  # fmt: skip
            value = locals()[name]
            _check(name, value, isinstance(value, int) and value > 0, "a positive int")
        _check("learning_starts", learning_starts, 0 <= learning_starts <= total_timesteps,
               f"in [0, total_timesteps={total_timesteps}]")  # fmt: skip
        _check("batch_size", batch_size, batch_size <= buffer_size, f"<= buffer_size={buffer_size}")
        _check("gamma", gamma, 0.0 <= gamma <= 1.0, "in [0, 1]")
        _check("tau", tau, 0.0 < tau <= 1.0, "in (0, 1]")
        for name in ("policy_noise", "exploration_noise", "noise_clip"):
            _check(name, locals()[name], locals()[name] >= 0.0, ">= 0")
        _check("learning_rate", learning_rate, learning_rate > 0.0, "> 0")
        _check("max_abs_q", max_abs_q, max_abs_q > 0.0, "> 0")
        _check("eval_interval", eval_interval, eval_interval >= 0, ">= 0")
        check_optimizer_name(optimizer)

        observation_space, action_space = probe_spaces(env_id, env_kwargs)
        try:
            check_spaces(observation_space, action_space, action_spaces=(spaces.Box,))
        except ValueError as error:
            raise ValueError(f"Invalid env_id {env_id!r} for TD3, which needs continuous actions: {error}") from error
        self.obs_dim = int(np.prod(observation_space.shape))
        self.act_dim = int(np.prod(action_space.shape))
        self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32), persistent=False)
        self.register_buffer("action_scale", (self.action_high - self.action_low) / 2, persistent=False)

        self.actor = actor or DeterministicActor(self.obs_dim, self.action_low, self.action_high)
        self.critic = critic or EnsembleCritic(self.obs_dim, self.act_dim)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = actor_optimizer
        self.critic_optimizer = critic_optimizer
        self.automatic_optimization = False

        self.episode_statistics = EpisodeStatistics()
        self.critic_updates = 0
        self.learning_resumes_at = learning_starts
        self.envs = None
        self.replay_buffer: ReplayBuffer | None = None
        self._buffer_state: dict[str, Any] | None = None
        self._last_metrics: dict[str, Tensor] = {}
        self._last_eval_step = -1
        self.obs: Tensor | None = None

    # ----------------------------------------------------------------------------------------------- setup and data
    @property
    def vector_steps_per_rank(self) -> int:
        """Vector-env steps each rank takes over the whole run."""
        return self.hparams.total_timesteps // (self.hparams.num_envs * self.world_size)

    @property
    def env_steps_per_vector_step(self) -> int:
        """Env steps (summed over envs and ranks) added by one vector-env step of every rank."""
        return self.hparams.num_envs * self.world_size

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.envs = make_vector_env(hp.env_id, hp.num_envs, env_kwargs=hp.env_kwargs)
        self.envs.action_space.seed(self.seed + self.rank)
        self.eval_envs = make_vector_env(hp.env_id, 1, env_kwargs=hp.env_kwargs) if hp.eval_interval else None
        self.episode_tracker = EpisodeTracker(hp.num_envs)
        self.replay_buffer = ReplayBuffer(
            hp.buffer_size, (self.obs_dim,), (self.act_dim,), hp.num_envs, torch.float32, self.device
        )
        if self._buffer_state is not None:
            self.replay_buffer.load_state_dict(self._buffer_state)
            self._buffer_state = None

    def on_fit_start(self) -> None:
        self.reseed_generator()
        self.replay_buffer.generator.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
        obs, _ = self.envs.reset(seed=self.train_env_seeds(self.hparams.num_envs))
        self.obs = torch.as_tensor(obs, dtype=torch.float32)

    def teardown(self, stage: str) -> None:
        for envs in (self.envs, getattr(self, "eval_envs", None)):
            if envs is not None:
                envs.close()

    def train_dataloader(self) -> DataLoader:
        per_step = self.hparams.steps_per_training_step
        done = self.env_steps // self.env_steps_per_vector_step
        return step_index_loader(-(-done // per_step), -(-self.vector_steps_per_rank // per_step))

    def configure_optimizers(self) -> list[Optimizer]:
        hp = self.hparams
        built = []
        for net, injected, own_alpha in (
            (self.actor, self.actor_optimizer, hp.actor_alpha),
            (self.critic, self.critic_optimizer, hp.critic_alpha),
        ):
            if injected is not None:
                built.append(injected(net.parameters()))
            else:
                alpha = hp.alpha if own_alpha is None else own_alpha
                built.append(
                    make_optimizer(
                        net.parameters(),
                        hp.optimizer,
                        hp.learning_rate,
                        alpha,
                        hp.momentum,
                        hp.alphagrad_eps,
                        hp.adam_eps,
                    )  # fmt: skip
                )
        return built

    # ----------------------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic actions ``(N, act_dim)`` of the current actor for observations ``(N, obs_dim)``."""
        return self.actor(obs.to(self.device)).clamp(self.action_low, self.action_high)

    def _explore(self) -> Tensor:
        """Actions ``(num_envs, act_dim)``: uniform before ``learning_starts``, the noisy policy after."""
        shape = (self.hparams.num_envs, self.act_dim)
        if self.env_steps < self.hparams.learning_starts:
            uniform = torch.rand(shape, generator=self.generator).to(self.device)
            return self.action_low + (self.action_high - self.action_low) * uniform
        noise = torch.randn(shape, generator=self.generator).to(self.device)
        with torch.no_grad():
            actions = self.actor(self.obs.to(self.device))
        return (actions + noise * self.action_scale * self.hparams.exploration_noise).clamp(
            self.action_low, self.action_high
        )

    def _env_step(self) -> str | None:
        """Take one vector-env step and store it; returns a reason if an action or observation is not finite."""
        actions = self._explore()
        if not bool(torch.isfinite(actions).all()):
            return "the policy produced a non-finite action"
        next_obs, rewards, terminations, truncations, infos = self.envs.step(actions.cpu().numpy())
        real_next_obs = final_observations(next_obs, terminations, truncations, infos)
        if not (np.isfinite(real_next_obs).all() and np.isfinite(rewards).all()):
            return "the environment returned a non-finite observation or reward"
        self.replay_buffer.add(
            self.obs,
            torch.as_tensor(real_next_obs, dtype=torch.float32),
            actions,
            torch.as_tensor(rewards, dtype=torch.float32),
            torch.as_tensor(terminations),
            torch.as_tensor(truncations),
        )
        self.episode_statistics.update(*self.episode_tracker.step(rewards, np.logical_or(terminations, truncations)))
        self.obs = torch.as_tensor(next_obs, dtype=torch.float32)
        self.env_steps += self.env_steps_per_vector_step
        return None

    # --------------------------------------------------------------------------------------------------- learning
    def _critic_losses(self, batch: ReplayBatch) -> tuple[Tensor, Tensor]:
        """Each critic's MSE to the clipped double-Q target ``(E,)``, and the Q-values ``(E, B)``."""
        hp = self.hparams
        with torch.no_grad():
            noise = torch.randn(batch.actions.shape, generator=self.generator).to(self.device)
            smoothing = (noise * hp.policy_noise).clamp(-hp.noise_clip, hp.noise_clip) * self.action_scale
            next_actions = (self.target_actor(batch.next_obs) + smoothing).clamp(self.action_low, self.action_high)
            next_q = self.target_critic(batch.next_obs, next_actions).min(dim=0).values
            target_q = batch.rewards + (1.0 - batch.terminations) * hp.gamma * next_q
        q_values = self.critic(batch.obs, batch.actions)
        return (q_values - target_q).pow(2).mean(dim=1), q_values

    def _step_optimizer(self, optimizer: Any, loss: Tensor, params: list[Tensor], local_flag: bool) -> bool:
        """Average the gradients of ``loss`` over ranks and step, unless some rank flagged or a gradient is not finite.

        Returns True when the step was skipped (the decision is identical on every rank).
        """
        grads = torch.autograd.grad(loss, params)
        grads, bad = average_gradients(list(grads), local_flag, self.world_size)
        if bad:
            return True
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimizer.step()
        return False

    def _update(self, actor_optimizer: Any, critic_optimizer: Any, local_reason: str | None) -> str | None:
        """One critic update, and every ``policy_frequency``-th an actor update plus the target Polyak update.

        ``local_reason`` (this rank's env step failed) is passed to every rank with the critic's gradients; returns
        the reason to stop, identical on every rank, or None.
        """
        hp = self.hparams
        batch = self.replay_buffer.sample(hp.batch_size)
        critic_losses, q_values = self._critic_losses(batch)
        critic_loss = critic_losses.sum()
        if local_reason is None:
            q_max = q_values.detach().abs().max()
            if not bool(torch.isfinite(critic_loss)):
                local_reason = "the critic loss is not finite"
            elif bool(q_max > hp.max_abs_q):
                local_reason = f"the critic diverged (|Q| = {float(q_max):.3g} > max_abs_q = {hp.max_abs_q:g})"
        if self._step_optimizer(critic_optimizer, critic_loss, self._critic_params, local_reason is not None):
            return local_reason or "a critic loss, Q-value or gradient diverged on another rank"
        self.critic_updates += 1
        self._last_metrics["critic_losses"] = critic_losses.detach()
        self._last_metrics["q_values"] = q_values.detach()
        if self.critic_updates % hp.policy_frequency == 0:
            actor_loss = -self.critic(batch.obs, self.actor(batch.obs), num_members=1).mean()
            if self._step_optimizer(actor_optimizer, actor_loss, self._actor_params, False):
                return "the actor loss or gradient is not finite"
            self._last_metrics["actor_loss"] = actor_loss.detach()
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._online_params, hp.tau)
        return None

    def on_train_start(self) -> None:
        self._actor_params = [p for p in self.actor.parameters() if p.requires_grad]
        self._critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        self._online_params = [*self.actor.parameters(), *self.critic.parameters()]
        self._target_params = [*self.target_actor.parameters(), *self.target_critic.parameters()]

    def training_step(self, batch_index: int) -> None:
        hp = self.hparams
        actor_optimizer, critic_optimizer = self.optimizers()
        first_vector_step = batch_index * hp.steps_per_training_step
        vector_steps = min(hp.steps_per_training_step, self.vector_steps_per_rank - first_vector_step)
        log_before = self.env_steps // hp.log_interval
        eval_before = self.env_steps // hp.eval_interval if hp.eval_interval else 0
        reason = None
        for _ in range(vector_steps):
            reason = self._env_step()
            if self.env_steps > self.learning_resumes_at:
                # Every rank updates at the same vector steps: a reason raised by one rank's env step travels to all
                # ranks with the critic's gradients, and every rank stops at the same update.
                reason = self._update(actor_optimizer, critic_optimizer, reason)
            if reason is not None:
                break
        stop_on_divergence(self, reason)
        if self.env_steps // hp.log_interval != log_before:
            self._log_metrics()
        if hp.eval_interval and self.env_steps // hp.eval_interval != eval_before:
            self._evaluate()

    def _log_metrics(self) -> None:
        metrics: dict[str, Tensor] = self.episode_statistics.compute()
        if "critic_losses" in self._last_metrics:
            critic_losses, q_values = self._last_metrics["critic_losses"], self._last_metrics["q_values"]
            for i in range(critic_losses.shape[0]):
                metrics[f"losses/qf{i + 1}_loss"] = critic_losses[i]
                metrics[f"losses/qf{i + 1}_values"] = q_values[i].mean()
            metrics["losses/qf_loss"] = critic_losses.mean()
        if "actor_loss" in self._last_metrics:
            metrics["losses/actor_loss"] = self._last_metrics["actor_loss"]
        metrics["charts/critic_updates"] = torch.tensor(float(self.critic_updates))
        self.log_env_metrics(metrics)

    def _evaluate(self) -> None:
        returns = evaluate_policy(
            lambda obs: self.act(torch.as_tensor(obs, dtype=torch.float32)).cpu().numpy(),
            self.eval_envs,
            self.hparams.num_eval_episodes,
            self.eval_env_seeds(1),
        )
        mean = self.trainer.strategy.reduce(torch.tensor(returns.mean(), device=self.device), reduce_op="mean")
        self.log_env_metrics({"eval/return_mean": mean})
        self._last_eval_step = self.env_steps

    def on_train_epoch_end(self) -> None:
        if self.env_steps // self.env_steps_per_vector_step >= self.vector_steps_per_rank:
            self.trainer.should_stop = True
            if self.hparams.eval_interval and self._last_eval_step != self.env_steps:
                self._evaluate()

    # ------------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["critic_updates"] = self.critic_updates
        checkpoint["learning_resumes_at"] = self.learning_resumes_at
        if self.hparams.save_replay_buffer and self.replay_buffer is not None:
            checkpoint["replay_buffer"] = self.replay_buffer.state_dict(include_storage=True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.critic_updates = int(checkpoint["critic_updates"])
        self.learning_resumes_at = int(checkpoint["learning_resumes_at"])
        self._buffer_state = checkpoint.get("replay_buffer")
        if self._buffer_state is None and self.env_steps >= self.hparams.learning_starts:
            self.learning_resumes_at = self.env_steps + self.hparams.learning_starts
