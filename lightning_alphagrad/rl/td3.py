"""TD3 (Fujimoto et al., 2018) as a LightningModule, following CleanRL's ``td3_continuous_action.py``."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

from lightning_alphagrad._validation import check_arg
from lightning_alphagrad.rl.divergence import stop_on_divergence
from lightning_alphagrad.rl.networks import DeterministicActor, EnsembleCritic
from lightning_alphagrad.rl.offpolicy import OffPolicyModule
from lightning_alphagrad.rl.optimizer_choice import OptimizerName, make_optimizer
from lightning_alphagrad.rl.replay import ReplayBatch

__all__ = ["TD3"]

FROZEN_ACTOR_WARNING_UPDATES = 100  # consecutive all-zero actor gradients before the warning


def average_gradients(grads: list[Tensor], local_flag: bool, world_size: int) -> tuple[list[Tensor], bool, bool]:
    """Average ``grads`` over ranks in one all-reduce that also carries ``local_flag``.

    Returns the averaged gradients, whether any rank raised its flag or any gradient is non-finite, and whether every
    averaged entry is exactly zero: every rank gets the same answers, so every rank takes the same decisions. With one
    process nothing is communicated.
    """
    flat = torch.cat([g.reshape(-1) for g in grads] + [torch.full((1,), float(local_flag), device=grads[0].device)])
    if world_size > 1:
        torch.distributed.all_reduce(flat)
        flat /= world_size
    # One pass (NaN propagates into min and max): non-finite if any entry is, zero if and only if every entry is.
    low, high = map(float, torch.aminmax(flat[:-1]))
    bad = not (math.isfinite(low) and math.isfinite(high)) or float(flat[-1]) > 0
    averaged = [chunk.view_as(g) for chunk, g in zip(flat[:-1].split([g.numel() for g in grads]), grads, strict=True)]
    return averaged, bad, low == high == 0.0


class TD3(OffPolicyModule):
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
    ``bf16-mixed`` (no gradient scaler is used). An actor whose averaged gradient is exactly zero (a tanh output
    saturated for the whole batch) is counted in ``frozen_actor_updates``; at 100 such updates in a row the module
    warns that it cannot learn any more.

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

    COUNTERS = (*OffPolicyModule.COUNTERS, "critic_updates", "frozen_actor_updates")

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
        super().__init__(
            env_id=env_id, action_space_type=spaces.Box, total_timesteps=total_timesteps, buffer_size=buffer_size,
            batch_size=batch_size, learning_starts=learning_starts, num_envs=num_envs, gamma=gamma, tau=tau,
            learning_rate=learning_rate, optimizer=optimizer, max_abs_q=max_abs_q,
            save_replay_buffer=save_replay_buffer, eval_interval=eval_interval, num_eval_episodes=num_eval_episodes,
            log_interval=log_interval, env_kwargs=env_kwargs, seed=seed,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["actor", "critic", "actor_optimizer", "critic_optimizer"])
        for name, value in (
            ("policy_frequency", policy_frequency),
            ("steps_per_training_step", steps_per_training_step),
        ):
            check_arg(name, value, isinstance(value, int) and value > 0, "a positive int")
        for name, value in (("policy_noise", policy_noise), ("exploration_noise", exploration_noise),
                            ("noise_clip", noise_clip)):  # fmt: skip
            check_arg(name, value, value >= 0.0, ">= 0")
        action_space = self.action_space
        self.act_dim = int(np.prod(action_space.shape))
        self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32), persistent=False)
        self.register_buffer("action_scale", (self.action_high - self.action_low) / 2, persistent=False)

        with torch.random.fork_rng(devices=[]):  # default networks are initialized from ``seed``
            torch.manual_seed(seed)
            self.actor = actor or DeterministicActor(self.obs_dim, self.action_low, self.action_high)
            self.critic = critic or EnsembleCritic(self.obs_dim, self.act_dim)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = actor_optimizer
        self.critic_optimizer = critic_optimizer
        self.automatic_optimization = False

        self.vector_steps_per_training_step = steps_per_training_step
        self.critic_updates = 0
        self.frozen_actor_updates = 0  # consecutive actor updates whose gradient was exactly zero everywhere
        self._last_metrics: dict[str, Tensor] = {}

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

    @torch.no_grad()
    def explore(self) -> Tensor:
        """Actions ``(num_envs, act_dim)``: uniform before ``learning_starts``, then the actor plus Gaussian noise."""
        shape = (self.num_envs, self.act_dim)
        if self.env_steps < self.learning_starts:
            uniform = torch.rand(shape, generator=self.generator).to(self.device)
            return self.action_low + (self.action_high - self.action_low) * uniform
        noise = torch.randn(shape, generator=self.generator).to(self.device)
        actions = self.actor(self.obs.to(self.device)) + noise * self.action_scale * self.hparams.exploration_noise
        return actions.clamp(self.action_low, self.action_high)

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

    def _step_optimizer(
        self, optimizer: Any, loss: Tensor, params: list[Tensor], local_flag: bool
    ) -> tuple[bool, bool]:
        """Average the gradients of ``loss`` over ranks and step, unless some rank flagged or a gradient is not finite.

        Returns whether the step was skipped and whether the averaged gradient was exactly zero everywhere (both
        identical on every rank).
        """
        grads = torch.autograd.grad(loss, params)
        grads, bad, all_zero = average_gradients(list(grads), local_flag, self.world_size)
        if bad:
            return True, all_zero
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimizer.step()
        return False, all_zero

    def _update(self, actor_optimizer: Any, critic_optimizer: Any, local_reason: str | None) -> str | None:
        """One critic update, and every ``policy_frequency``-th an actor update plus the target Polyak update.

        ``local_reason`` (this rank's env step failed) is passed to every rank with the critic's gradients; returns
        the reason to stop, identical on every rank, or None.
        """
        hp = self.hparams
        batch = self.replay_buffer.sample(self.batch_size)
        critic_losses, q_values = self._critic_losses(batch)
        critic_loss = critic_losses.sum()
        if local_reason is None:
            q_max = q_values.detach().abs().max()
            if not bool(torch.isfinite(critic_loss)):
                local_reason = "the critic loss is not finite"
            elif bool(q_max > hp.max_abs_q):
                local_reason = f"the critic diverged (|Q| = {float(q_max):.3g} > max_abs_q = {hp.max_abs_q:g})"
        if self._step_optimizer(critic_optimizer, critic_loss, self._critic_params, local_reason is not None)[0]:
            return local_reason or "a critic loss, Q-value or gradient diverged on another rank"
        self.critic_updates += 1
        self._last_metrics["critic_losses"] = critic_losses.detach()
        self._last_metrics["q_values"] = q_values.detach()
        if self.critic_updates % hp.policy_frequency == 0:
            actor_loss = -self.critic(batch.obs, self.actor(batch.obs), num_members=1).mean()
            skipped, all_zero = self._step_optimizer(actor_optimizer, actor_loss, self._actor_params, False)
            if skipped:
                return "the actor loss or gradient is not finite"
            self._count_frozen_actor_update(all_zero)
            self._last_metrics["actor_loss"] = actor_loss.detach()
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._online_params, hp.tau)
        return None

    def _count_frozen_actor_update(self, all_zero: bool) -> None:
        """Count consecutive actor updates with an all-zero gradient; warn once their number reaches
        ``FROZEN_ACTOR_WARNING_UPDATES``. A tanh output saturated for every observation in the batch passes exactly
        zero gradient in fp32: the actor cannot move again (seen with AlphaGrad at large ``alpha * momentum``)."""
        self.frozen_actor_updates = self.frozen_actor_updates + 1 if all_zero else 0
        if self.frozen_actor_updates == FROZEN_ACTOR_WARNING_UPDATES:
            rank_zero_warn(
                f"TD3: the actor's gradient has been exactly zero for {FROZEN_ACTOR_WARNING_UPDATES} consecutive actor"
                f" updates (env step {self.env_steps}): its output is saturated at the action bounds and it cannot"
                " learn any more. Restart with a smaller learning rate, alpha or momentum."
            )

    def on_train_start(self) -> None:
        self._actor_params = [p for p in self.actor.parameters() if p.requires_grad]
        self._critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        self._online_params = [*self.actor.parameters(), *self.critic.parameters()]
        self._target_params = [*self.target_actor.parameters(), *self.target_critic.parameters()]

    def training_step(self, batch_index: int) -> None:
        actor_optimizer, critic_optimizer = self.optimizers()
        env_steps_before = self.env_steps
        reason = None
        for _ in range(self.chunk_length()):
            learning = self.learning  # CleanRL: update after the env step of global_step > learning_starts
            reason = self.env_step()
            if learning:
                # Every rank updates at the same vector steps: a reason raised by one rank's env step travels to all
                # ranks with the critic's gradients, and every rank stops at the same update.
                reason = self._update(actor_optimizer, critic_optimizer, reason)
            if reason is not None:
                break
        stop_on_divergence(self, reason)
        self.log_and_evaluate(env_steps_before, self._metrics)

    def _metrics(self) -> dict[str, Tensor]:
        """CleanRL's TD3 panels from the last update: per-critic loss and mean Q, mean critic loss, actor loss."""
        metrics = {
            "charts/critic_updates": torch.tensor(float(self.critic_updates)),
            "charts/frozen_actor_updates": torch.tensor(float(self.frozen_actor_updates)),
        }
        if "critic_losses" in self._last_metrics:
            critic_losses, q_values = self._last_metrics["critic_losses"], self._last_metrics["q_values"]
            for i in range(critic_losses.shape[0]):
                metrics[f"losses/qf{i + 1}_loss"] = critic_losses[i]
                metrics[f"losses/qf{i + 1}_values"] = q_values[i].mean()
            metrics["losses/qf_loss"] = critic_losses.mean()
        if "actor_loss" in self._last_metrics:
            metrics["losses/actor_loss"] = self._last_metrics["actor_loss"]
        return metrics
