"""PPO (Schulman et al. 2017) as a LightningModule, with the details and defaults of CleanRL's PPO (MuJoCo variant).

One ``training_step`` is one PPO iteration: a rollout of ``num_steps`` steps on each of ``num_envs`` sub-envs, GAE,
then ``update_epochs`` epochs of ``num_minibatches`` minibatch updates (manual optimization). Under DDP every rank
collects its own rollout; DDP averages the gradients of each minibatch, so one minibatch update uses
``world_size * minibatch_size`` samples, and ``total_timesteps`` counts the steps of all ranks together.

CleanRL's discrete ``ppo`` defaults differ from the constructor defaults (which are the MuJoCo ones):
``num_envs=4, num_steps=128, learning_rate=2.5e-4, num_minibatches=4, update_epochs=4, ent_coef=0.01,
normalize_observation=False, normalize_reward=False`` (see ``docs/RL.md``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from lightning_alphagrad._validation import check_arg, check_range
from lightning_alphagrad.optim import AlphaGrad
from lightning_alphagrad.rl.data import step_index_loader
from lightning_alphagrad.rl.envs import Vectorization, check_spaces, final_observations, make_vector_env, probe_spaces
from lightning_alphagrad.rl.episodes import EpisodeStatistics, EpisodeTracker
from lightning_alphagrad.rl.module import RLModule
from lightning_alphagrad.rl.networks import ppo_mlp
from lightning_alphagrad.rl.normalization import RewardScaler, RunningMeanStd
from lightning_alphagrad.rl.optimizer_choice import check_optimizer_name, make_optimizer

__all__ = ["PPO"]

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class PPO(RLModule):
    """Proximal Policy Optimization with a Gaussian (Box actions) or categorical (Discrete actions) policy.

    Args:
        env_id: gymnasium id; observations must be a 1-D Box, actions a 1-D bounded Box or Discrete.
        num_envs: sub-envs per rank.
        num_steps: rollout length per sub-env and iteration.
        total_timesteps: environment steps of the whole run, summed over ranks.
        learning_rate: initial learning rate.
        anneal_lr: anneal the learning rate linearly to 0 over the run.
        gamma: discount factor.
        gae_lambda: GAE lambda.
        num_minibatches: minibatches per epoch; must divide ``num_envs * num_steps``.
        update_epochs: epochs over each rollout.
        norm_adv: normalize advantages per minibatch.
        clip_coef: surrogate clipping coefficient (also the value clipping range).
        clip_vloss: clip the value loss as in the PPO paper's implementation.
        ent_coef: entropy bonus coefficient.
        vf_coef: value loss coefficient.
        max_grad_norm: global gradient-norm clipping; ``"auto"`` is 0.5 for Adam and off for AlphaGrad (as in the
            AlphaGrad paper); ``None`` turns it off.
        target_kl: stop the epochs of an iteration once the approximate KL (averaged over ranks) exceeds it.
        normalize_observation: running observation normalization (clipped to +-10), as CleanRL's MuJoCo wrappers.
        normalize_reward: reward scaling by the std of the discounted return (clipped to +-10).
        optimizer: ``"adam"`` (eps 1e-5) or ``"alphagrad"``; the Lightning CLI's ``--optimizer`` replaces it.
        alpha: AlphaGrad's tanh steepness.
        momentum: AlphaGrad's momentum.
        eps: epsilon of Adam or AlphaGrad.
        actor: network mapping observations ``(batch, obs_dim)`` to action means ``(batch, action_dim)`` or logits
            ``(batch, num_actions)``; default ``ppo_mlp`` with output gain 0.01.
        critic: network mapping observations ``(batch, obs_dim)`` to values ``(batch, 1)``; default ``ppo_mlp``.
        hidden_sizes: hidden layers of the default networks.
        vectorization: ``"sync"`` (sub-envs in this process) or ``"async"`` (one process each).
        env_kwargs: keyword arguments of ``gym.make``.
        eval_interval: evaluate the deterministic policy every this many global env steps; ``None``: only at the end.
        num_eval_episodes: episodes per rank per evaluation; 0 disables evaluation.
        seed: seed of the network initialization, the envs and the sampling (see :class:`RLModule`).

    Envs are created in ``setup`` and reset at the start of ``fit``; a resumed run restores networks, optimizer,
    normalization statistics and ``env_steps`` (hence the learning-rate schedule), and restarts its envs.
    """

    COUNTERS = (*RLModule.COUNTERS, "skipped_updates")

    def __init__(
        self,
        env_id: str = "HalfCheetah-v5",
        num_envs: int = 1,
        num_steps: int = 2048,
        total_timesteps: int = 1_000_000,
        learning_rate: float = 3e-4,
        anneal_lr: bool = True,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        num_minibatches: int = 32,
        update_epochs: int = 10,
        norm_adv: bool = True,
        clip_coef: float = 0.2,
        clip_vloss: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | Literal["auto"] | None = "auto",
        target_kl: float | None = None,
        normalize_observation: bool = True,
        normalize_reward: bool = True,
        optimizer: Literal["adam", "alphagrad"] = "adam",
        alpha: float = 98.0,
        momentum: float = 0.9,
        eps: float = 1e-5,
        actor: nn.Module | None = None,
        critic: nn.Module | None = None,
        hidden_sizes: Sequence[int] = (64, 64),
        vectorization: Vectorization = "sync",
        env_kwargs: dict[str, Any] | None = None,
        eval_interval: int | None = None,
        num_eval_episodes: int = 10,
        seed: int = 1,
    ) -> None:
        super().__init__(seed=seed)
        self.save_hyperparameters(ignore=["actor", "critic"])
        positive = dict(
            num_envs=num_envs,
            num_steps=num_steps,
            total_timesteps=total_timesteps,
            learning_rate=learning_rate,
            num_minibatches=num_minibatches,
            update_epochs=update_epochs,
            eps=eps,
            alpha=alpha,
        )
        for name, value in positive.items():
            check_range(name, value, 0.0, math.inf, low_open=True, high_open=True)
        check_range("gamma", gamma, 0.0, 1.0)
        check_range("gae_lambda", gae_lambda, 0.0, 1.0)
        batch = num_envs * num_steps
        check_arg("num_minibatches", num_minibatches, batch % num_minibatches == 0,
                  f"a divisor of num_envs * num_steps ({num_envs} * {num_steps} = {batch})")  # fmt: skip
        check_arg("clip_coef", clip_coef, clip_coef > 0, "> 0")
        check_arg("ent_coef", ent_coef, ent_coef >= 0, ">= 0")
        check_arg("vf_coef", vf_coef, vf_coef >= 0, ">= 0")
        check_arg("max_grad_norm", max_grad_norm, max_grad_norm in ("auto", None)
                  or (isinstance(max_grad_norm, int | float) and max_grad_norm > 0), "> 0, 'auto' or None")  # fmt: skip
        check_arg("target_kl", target_kl, target_kl is None or target_kl > 0, "> 0 or None")
        check_optimizer_name(optimizer)
        check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        check_arg("eval_interval", eval_interval, eval_interval is None or eval_interval > 0, "> 0 or None")
        check_arg("num_eval_episodes", num_eval_episodes, num_eval_episodes >= 0, ">= 0")
        check_arg("vectorization", vectorization, vectorization in ("sync", "async"), "'sync' or 'async'")

        observation_space, action_space = probe_spaces(env_id, env_kwargs)
        check_spaces(observation_space, action_space)
        self.observation_space, self.action_space = observation_space, action_space
        self.continuous = isinstance(action_space, spaces.Box)
        obs_dim = observation_space.shape[0]
        action_dim = action_space.shape[0] if self.continuous else int(action_space.n)

        self.env_id, self.env_kwargs, self.vectorization = env_id, env_kwargs, vectorization
        self.num_envs, self.num_steps, self.total_timesteps = num_envs, num_steps, total_timesteps
        self.batch_size = num_envs * num_steps
        self.minibatch_size = self.batch_size // num_minibatches
        # the algorithm's own settings are read from self.hparams; "auto" resolved here
        self.max_grad_norm = (0.5 if optimizer == "adam" else None) if max_grad_norm == "auto" else max_grad_norm
        self.eval_interval, self.num_eval_episodes = eval_interval, num_eval_episodes

        init_generator = torch.Generator().manual_seed(seed)
        self.actor = actor or ppo_mlp(obs_dim, action_dim, hidden_sizes, out_gain=0.01, generator=init_generator)
        self.critic = critic or ppo_mlp(obs_dim, 1, hidden_sizes, out_gain=1.0, generator=init_generator)
        self.actor_logstd = nn.Parameter(torch.zeros(action_dim)) if self.continuous else None
        self.obs_rms = RunningMeanStd(observation_space.shape) if normalize_observation else None
        self.reward_scaler = RewardScaler(num_envs, gamma=gamma) if normalize_reward else None
        self.episode_stats = EpisodeStatistics()
        self.skipped_updates = 0
        self.automatic_optimization = False

    # ----------------------------------------------------------------------------------------------- policy
    def normalize_obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        """Observations ``(n, obs_dim)`` as the networks see them (float32); ``update`` feeds the statistics."""
        if self.obs_rms is None:
            return obs.astype(np.float32, copy=False)
        if update:
            self.obs_rms.update(obs)
        return self.obs_rms.normalize(obs)

    def log_prob_and_entropy(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability ``(batch,)`` of ``actions`` under the current policy and the policy entropy ``(batch,)``."""
        out = self.actor(obs)
        if self.continuous:
            log_std = self.actor_logstd.expand_as(out)
            log_prob = -0.5 * ((actions - out) / log_std.exp()) ** 2 - log_std - LOG_SQRT_2PI
            entropy = (0.5 + LOG_SQRT_2PI + log_std).sum(-1)
            return log_prob.sum(-1), entropy
        log_probs = torch.log_softmax(out, dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy

    def sampling_noise(self, num_steps: int) -> Tensor:
        """Noise for a rollout, drawn at once: ``(num_steps, num_envs, action_dim)`` standard normal (Box) or
        ``(num_steps, num_envs, num_actions)`` standard Gumbel (Discrete: ``argmax(logits + noise)`` samples the
        categorical policy)."""
        shape = (num_steps, self.num_envs, self.actor_logstd.numel() if self.continuous else self.action_space.n)
        if self.continuous:
            return torch.randn(shape, generator=self.generator).to(self.device)
        uniform = torch.rand(shape, generator=self.generator).clamp_(min=torch.finfo(torch.float32).tiny)
        return (-(-uniform.log()).log()).to(self.device)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions as the env takes them: clipped to the Box bounds (the unclipped ones are learned from)."""
        if not self.continuous:
            return actions
        if not np.isfinite(actions).all():
            raise RuntimeError(
                f"The policy produced non-finite actions at env step {self.env_steps}; the run diverged "
                "(with AlphaGrad, try a smaller alpha)"
            )
        return np.minimum(np.maximum(actions, self.action_space.low), self.action_space.high)

    @torch.no_grad()
    def act_deterministic(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy (mean action, or argmax) for raw observations ``(n, obs_dim)``."""
        out = self.actor(torch.from_numpy(self.normalize_obs(obs, update=False)).to(self.device))
        actions = (out if self.continuous else out.argmax(-1)).cpu().numpy()
        return self.env_actions(actions)

    # ----------------------------------------------------------------------------------------------- setup
    @property
    def global_batch_size(self) -> int:
        """Environment steps per iteration over all ranks."""
        return self.batch_size * self.world_size

    @property
    def num_iterations(self) -> int:
        """Iterations of the whole run: ``total_timesteps // global_batch_size``."""
        return self.total_timesteps // self.global_batch_size

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.num_iterations < 1:
            raise ValueError(
                f"Invalid total_timesteps: {self.total_timesteps}; it must be >= num_envs * num_steps * world_size "
                f"({self.global_batch_size})"
            )
        self.envs = make_vector_env(self.env_id, self.num_envs, self.vectorization, self.env_kwargs)
        self.eval_envs = make_vector_env(self.env_id, 1, "sync", self.env_kwargs) if self.num_eval_episodes else None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return make_optimizer(
            self.parameters(), hp.optimizer, hp.learning_rate, hp.alpha, hp.momentum, hp.eps, hp.eps
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        # One item per iteration; resumed runs skip the done ones in training_step (env_steps is the clock).
        return step_index_loader(0, self.num_iterations)

    def on_train_start(self) -> None:
        # After a checkpoint restore, so seeds account for the restored env_steps.
        self.reseed_generator()
        obs, _ = self.envs.reset(seed=self.train_env_seeds(self.num_envs))
        self.next_obs = self.normalize_obs(obs, update=True)
        self.episode_tracker = EpisodeTracker(self.num_envs)
        self.start_time, self.start_env_steps = time.perf_counter(), self.env_steps

    # ----------------------------------------------------------------------------------------------- training
    @torch.no_grad()
    def collect_rollout(self) -> dict[str, Tensor]:
        """One rollout: tensors of shape ``(num_steps, num_envs, ...)`` and ``next_value`` of shape ``(num_envs,)``.

        Per env step only the actor runs; values and log-probabilities of the whole rollout come from one batched
        forward pass afterwards (the parameters do not change during a rollout). ``rewards`` hold the (scaled) rewards
        with ``gamma * V(final_obs)`` added on truncation; ``ends`` flag the steps that ended an episode, so no value
        is bootstrapped across them.
        """
        num_steps, num_envs, device = self.num_steps, self.num_envs, self.device
        obs_buffer = torch.zeros((num_steps, num_envs, *self.observation_space.shape), device=device)
        action_shape = self.action_space.shape if self.continuous else ()
        actions_buffer = torch.zeros((num_steps, num_envs, *action_shape), device=device)
        rewards = np.zeros((num_steps, num_envs), dtype=np.float32)
        ends = np.zeros((num_steps, num_envs), dtype=np.float32)
        noise = self.sampling_noise(num_steps)
        std = self.actor_logstd.exp() if self.continuous else None
        truncated_steps, truncated_envs, truncated_obs = [], [], []
        next_obs = self.next_obs
        for step in range(num_steps):
            obs = torch.from_numpy(next_obs).to(device)
            obs_buffer[step] = obs
            out = self.actor(obs)
            actions = out + std * noise[step] if self.continuous else (out + noise[step]).argmax(-1)
            actions_buffer[step] = actions
            raw_obs, reward, terminated, truncated, infos = self.envs.step(self.env_actions(actions.cpu().numpy()))
            done = np.logical_or(terminated, truncated)
            self.episode_stats.update(*self.episode_tracker.step(reward, done))
            if self.reward_scaler is not None:
                reward = self.reward_scaler.scale(reward, terminated.astype(np.float64))
            rewards[step], ends[step] = reward, done
            next_obs = self.normalize_obs(raw_obs, update=True)
            bootstrap = np.flatnonzero(truncated & ~terminated)
            if bootstrap.size:
                final_obs = final_observations(raw_obs, terminated, truncated, infos)[bootstrap]
                truncated_steps += [step] * bootstrap.size
                truncated_envs += bootstrap.tolist()
                truncated_obs.append(self.normalize_obs(final_obs, update=False))
        self.next_obs = next_obs
        self.env_steps += self.global_batch_size

        flat_obs = obs_buffer.reshape(num_steps * num_envs, -1)
        flat_actions = actions_buffer.reshape(num_steps * num_envs, *action_shape)
        log_probs, _ = self.log_prob_and_entropy(flat_obs, flat_actions)
        values = self.critic(flat_obs).reshape(num_steps, num_envs)
        rewards = torch.from_numpy(rewards).to(device)
        if truncated_obs:
            final_values = self.critic(torch.from_numpy(np.concatenate(truncated_obs)).to(device)).squeeze(-1)
            rewards[truncated_steps, truncated_envs] += self.hparams.gamma * final_values
        return {
            "obs": obs_buffer,
            "actions": actions_buffer,
            "log_probs": log_probs.reshape(num_steps, num_envs),
            "values": values,
            "rewards": rewards,
            "ends": torch.from_numpy(ends).to(device),
            "next_value": self.critic(torch.from_numpy(next_obs).to(device)).squeeze(-1),
        }

    def compute_advantages(self, rollout: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """GAE advantages and returns ``(num_steps, num_envs)`` (computed in numpy: a 2048-step loop of tiny ops)."""
        values = rollout["values"].cpu().numpy()
        rewards, ends = rollout["rewards"].cpu().numpy(), rollout["ends"].cpu().numpy()
        advantages = np.zeros_like(rewards)
        last_advantage = np.zeros(self.num_envs, dtype=np.float32)
        next_value = rollout["next_value"].cpu().numpy()
        gamma, gae_lambda = self.hparams.gamma, self.hparams.gae_lambda
        for t in reversed(range(self.num_steps)):
            not_end = 1.0 - ends[t]
            delta = rewards[t] + gamma * next_value * not_end - values[t]
            last_advantage = delta + gamma * gae_lambda * not_end * last_advantage
            advantages[t] = last_advantage
            next_value = values[t]
        advantages_tensor = torch.from_numpy(advantages).to(self.device)
        return advantages_tensor, advantages_tensor + rollout["values"]

    def set_learning_rate(self, optimizer: torch.optim.Optimizer) -> float:
        """Anneal every group's lr linearly from its initial value to 0 over the run; returns the first group's lr."""
        frac = 1.0 - self.env_steps / (self.num_iterations * self.global_batch_size) if self.hparams.anneal_lr else 1.0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = frac * group["initial_lr"]
        return optimizer.param_groups[0]["lr"]

    def update(
        self, optimizer: torch.optim.Optimizer, schedulers: list[Any], params: list[nn.Parameter], loss: Tensor
    ) -> None:
        """Backward (DDP averages gradients), optional clipping; steps only when every gradient is finite.

        Schedulers from ``configure_optimizers`` (e.g. the CLI's ``--lr_scheduler``, an alpha schedule) step once per
        update, skipped or not; with ``anneal_lr`` the learning rate is reset every iteration, so an lr scheduler
        needs ``anneal_lr=False``.
        """
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        params = [p for p in params if p.grad is not None]
        alphagrad = getattr(optimizer, "optimizer", optimizer)  # the CLI hands over a LightningOptimizer
        if self.max_grad_norm is None and isinstance(alphagrad, AlphaGrad):
            # AlphaGrad checks the gradients itself with the per-tensor norms it needs anyway, and skips (and
            # counts) a non-finite step: no separate pass over the gradients here.
            skipped = alphagrad.skipped_steps
            optimizer.step()
            self.skipped_updates += alphagrad.skipped_steps - skipped
        else:
            if self.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm, foreach=True)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
            if torch.isfinite(norm):
                optimizer.step()
            else:
                self.skipped_updates += 1
        for scheduler in schedulers:
            scheduler.step()

    def ppo_loss(
        self,
        obs: Tensor,
        actions: Tensor,
        old_log_probs: Tensor,
        advantages: Tensor,
        returns: Tensor,
        old_values: Tensor,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The PPO objective on one minibatch (all inputs ``(minibatch, ...)``), as a loss to minimize:
        ``L = L^CLIP + vf_coef * L^VF - ent_coef * S`` (clipped surrogate, value loss, entropy bonus).

        Returns the loss and, detached where they are statistics, ``(L^CLIP, L^VF, S, old approx KL, approx KL,
        clip fraction)``.
        """
        hp = self.hparams
        new_log_prob, entropy = self.log_prob_and_entropy(obs, actions)
        new_value = self.critic(obs).squeeze(-1)
        log_ratio = new_log_prob - old_log_probs
        ratio = log_ratio.exp()
        with torch.no_grad():
            old_approx_kl = (-log_ratio).mean()
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1.0).abs() > hp.clip_coef).float().mean()

        if hp.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        pg_loss1 = -advantages * ratio
        pg_loss2 = -advantages * ratio.clamp(1 - hp.clip_coef, 1 + hp.clip_coef)
        pg_loss = torch.max(pg_loss1, pg_loss2).mean()

        v_loss_unclipped = (new_value - returns) ** 2
        if hp.clip_vloss:
            v_clipped = old_values + (new_value - old_values).clamp(-hp.clip_coef, hp.clip_coef)
            v_loss_clipped = (v_clipped - returns) ** 2
            v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
        else:
            v_loss = 0.5 * v_loss_unclipped.mean()
        entropy_loss = entropy.mean()
        loss = pg_loss - hp.ent_coef * entropy_loss + v_loss * hp.vf_coef
        return loss, (pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipfrac)

    def training_step(self, batch: int, batch_idx: int) -> None:
        if self.env_steps >= self.num_iterations * self.global_batch_size:
            self.trainer.should_stop = True
            return
        optimizer = self.optimizers()
        schedulers = self.lr_schedulers()
        schedulers = [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]
        learning_rate = self.set_learning_rate(optimizer.optimizer)
        rollout = self.collect_rollout()
        for normalizer in (self.obs_rms, self.reward_scaler):
            if normalizer is not None:
                normalizer.sync(self.all_gather_fn, self.device)
        advantages, returns = self.compute_advantages(rollout)

        b_obs = rollout["obs"].reshape(self.batch_size, -1)
        b_actions = rollout["actions"].reshape(self.batch_size, *rollout["actions"].shape[2:])
        b_log_probs, b_advantages = rollout["log_probs"].reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), rollout["values"].reshape(-1)
        clipfracs = []
        params = [p for p in self.parameters() if p.requires_grad]
        for _epoch in range(self.hparams.update_epochs):
            permutation = torch.randperm(self.batch_size, generator=self.generator).to(self.device)
            for start in range(0, self.batch_size, self.minibatch_size):
                index = permutation[start : start + self.minibatch_size]
                loss, parts = self.ppo_loss(
                    b_obs[index], b_actions[index], b_log_probs[index], b_advantages[index], b_returns[index],
                    b_values[index],
                )  # fmt: skip
                pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipfrac = parts
                clipfracs.append(clipfrac)
                self.update(optimizer, schedulers, params, loss)

            if self.hparams.target_kl is not None:
                mean_kl = self.trainer.strategy.reduce(approx_kl.detach(), reduce_op="mean")
                if mean_kl > self.hparams.target_kl:  # the same decision on every rank
                    break

        explained_variance = 1.0 - (b_returns - b_values).var() / b_returns.var()  # nan when returns are constant
        stats = torch.stack(
            [
                v_loss.detach(),
                pg_loss.detach(),
                entropy_loss.detach(),
                old_approx_kl,
                approx_kl,
                torch.stack(clipfracs).mean(),
                explained_variance,
            ]
        )
        stats = self.trainer.strategy.reduce(stats, reduce_op="mean")
        names = ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac", "explained_variance")
        metrics: dict[str, float | Tensor] = {f"losses/{name}": value for name, value in zip(names, stats, strict=True)}
        metrics["charts/learning_rate"] = learning_rate
        metrics["charts/skipped_updates"] = self.skipped_updates
        metrics["charts/SPS"] = (self.env_steps - self.start_env_steps) / (time.perf_counter() - self.start_time)
        metrics.update(self.episode_stats.compute())
        if (
            self.eval_interval is not None
            and self.env_steps // self.eval_interval > (self.env_steps - self.global_batch_size) // self.eval_interval
        ):
            metrics.update(self.evaluate())
        self.log_env_metrics(metrics)
        if self.env_steps >= self.num_iterations * self.global_batch_size:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        if self.num_eval_episodes:
            self.log_env_metrics(self.evaluate())

    def evaluate(self) -> dict[str, Tensor]:
        """``eval/return_mean`` of ``num_eval_episodes`` deterministic episodes per rank, averaged over ranks."""
        return {"eval/return_mean": self.evaluation_return(self.act_deterministic, self.num_eval_episodes)}
