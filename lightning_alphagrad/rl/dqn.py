"""DQN (Mnih et al., 2015) as a LightningModule, following CleanRL's ``dqn.py``."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.optim import Optimizer

from lightning_alphagrad._validation import check_arg
from lightning_alphagrad.rl.divergence import stop_on_divergence
from lightning_alphagrad.rl.networks import QNetwork
from lightning_alphagrad.rl.offpolicy import OffPolicyModule
from lightning_alphagrad.rl.optimizer_choice import OptimizerName, make_optimizer
from lightning_alphagrad.rl.replay import ReplayBatch

__all__ = ["DQN"]


class DQN(OffPolicyModule):
    """Deep Q-learning on a discrete-action gymnasium env, with CleanRL's defaults for CartPole-v1 (``dqn.py``).

    Every ``training_step`` runs ``train_frequency`` vector-env steps with epsilon-greedy actions (epsilon falls
    linearly from ``start_e`` to ``end_e`` over ``exploration_fraction * total_timesteps`` env steps; one draw per
    vector step decides random or greedy for all sub-envs) and, after ``learning_starts`` env steps, returns the TD
    loss of one minibatch: automatic optimization, so ``--optimizer`` of the Lightning CLI can replace the optimizer.
    One Lightning batch holds ``updates_per_training_step`` such updates: :meth:`optimizer_step` runs Lightning's
    closure (``training_step``, backward) and the optimizer step once per update, so the Trainer's per-batch cost
    (~1 ms on a CPU) is paid once per ``updates_per_training_step * train_frequency`` vector steps. Every update goes
    through Lightning's optimizer step (precision, DDP gradient averaging, ``on_before_optimizer_step``, gradient
    clipping); ``trainer.global_step``, ``'step'``-interval schedulers and ``log_every_n_steps`` count batches.
    The TD target is ``r + gamma * (1 - terminated) * max_a Q'(s', a)``, or with ``double_dqn``
    ``Q'(s', argmax_a Q(s', a))``; truncated episodes bootstrap from their final observation. Every
    ``target_network_frequency`` env steps (after ``learning_starts``) the target network moves to
    ``tau * Q + (1 - tau) * Q'`` (``tau = 1``: a copy).

    Step counts are environment steps summed over sub-envs and ranks. Under DDP each rank has its own envs (seeded by
    rank) and replay buffer, gradients are averaged by DDP, and parameters stay identical.

    Args:
        env_id: gymnasium id of an env with a flat ``Box`` observation and a ``Discrete`` action space.
        total_timesteps: env steps of the whole run (the exploration schedule is relative to it).
        learning_rate: optimizer learning rate.
        buffer_size: replay capacity per rank.
        gamma: discount factor in [0, 1].
        tau: target network update coefficient in (0, 1].
        target_network_frequency: env steps between target network updates.
        batch_size: minibatch size per rank, at most ``buffer_size``.
        start_e: initial exploration probability.
        end_e: final exploration probability.
        exploration_fraction: fraction of ``total_timesteps`` over which epsilon falls, in (0, 1].
        learning_starts: env steps before the first update, at most ``total_timesteps``.
        train_frequency: vector-env steps per update (and per ``training_step`` call).
        updates_per_training_step: updates per Lightning batch (checkpoints and ``log_every_n_steps`` count batches).
        num_envs: sub-envs per rank.
        double_dqn: select the next action with the online network, evaluate it with the target network.
        loss: ``"mse"`` (CleanRL) or ``"huber"`` (smooth L1 with delta 1).
        optimizer: ``"adam"`` or ``"alphagrad"`` (the Lightning CLI's ``--optimizer`` overrides it).
        alpha: AlphaGrad steepness (the paper's grid: 93, 186, 279).
        momentum: AlphaGrad momentum.
        alphagrad_eps: AlphaGrad epsilon.
        adam_eps: Adam epsilon: PyTorch's default, as in CleanRL's ``dqn.py``; the paper's DQN runs use 1e-5
            (``examples/configs/dqn_cartpole_adam.yaml``).
        q_network: own network ``obs (B, obs_dim) -> Q (B, num_actions)``; default CleanRL's 120-84 ReLU MLP.
        max_abs_q: Q-values beyond this magnitude count as diverged.
        save_replay_buffer: store the replay buffer's contents in checkpoints (see :class:`OffPolicyModule`).
        eval_interval: evaluate the greedy policy every this many env steps and at the end (0: never).
        num_eval_episodes: episodes per evaluation (per rank).
        log_interval: log losses and episode statistics every this many env steps.
        env_kwargs: keyword arguments of ``gym.make``.
        seed: base seed of envs and exploration (see :class:`~lightning_alphagrad.rl.RLModule`).
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        total_timesteps: int = 500_000,
        learning_rate: float = 2.5e-4,
        buffer_size: int = 10_000,
        gamma: float = 0.99,
        tau: float = 1.0,
        target_network_frequency: int = 500,
        batch_size: int = 128,
        start_e: float = 1.0,
        end_e: float = 0.05,
        exploration_fraction: float = 0.5,
        learning_starts: int = 10_000,
        train_frequency: int = 10,
        updates_per_training_step: int = 8,
        num_envs: int = 1,
        double_dqn: bool = False,
        loss: Literal["mse", "huber"] = "mse",
        optimizer: OptimizerName = "adam",
        alpha: float = 93.0,
        momentum: float = 0.9,
        alphagrad_eps: float = 1e-5,
        adam_eps: float = 1e-8,
        q_network: nn.Module | None = None,
        max_abs_q: float = 1e6,
        save_replay_buffer: bool = False,
        eval_interval: int = 0,
        num_eval_episodes: int = 10,
        log_interval: int = 1000,
        env_kwargs: dict[str, Any] | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__(
            env_id=env_id, action_space_type=spaces.Discrete, total_timesteps=total_timesteps, buffer_size=buffer_size,
            batch_size=batch_size, learning_starts=learning_starts, num_envs=num_envs, gamma=gamma, tau=tau,
            learning_rate=learning_rate, optimizer=optimizer, max_abs_q=max_abs_q,
            save_replay_buffer=save_replay_buffer, eval_interval=eval_interval, num_eval_episodes=num_eval_episodes,
            log_interval=log_interval, env_kwargs=env_kwargs, seed=seed,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["q_network"])
        for name, value in (("target_network_frequency", target_network_frequency),
                            ("train_frequency", train_frequency),
                            ("updates_per_training_step", updates_per_training_step)):  # fmt: skip
            check_arg(name, value, isinstance(value, int) and value > 0, "a positive int")
        check_arg("start_e", start_e, 0.0 <= start_e <= 1.0, "in [0, 1]")
        check_arg("end_e", end_e, 0.0 <= end_e <= 1.0, "in [0, 1]")
        check_arg("exploration_fraction", exploration_fraction, 0.0 < exploration_fraction <= 1.0, "in (0, 1]")
        check_arg("loss", loss, loss in ("mse", "huber"), "'mse' or 'huber'")
        self.num_actions = int(self.action_space.n)
        with torch.random.fork_rng(devices=[]):  # the default network is initialized from ``seed``
            torch.manual_seed(seed)
            self.q_network = q_network or QNetwork(self.obs_dim, self.num_actions)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.vector_steps_per_training_step = train_frequency * updates_per_training_step
        self._epsilon_schedule = (start_e, end_e, exploration_fraction * total_timesteps)
        self._batch_vector_steps = 0  # vector steps of the current Lightning batch
        self._update_vector_steps = 0  # vector steps of the next training_step call (one update)
        self._update_due = False
        self._last_metrics: dict[str, Tensor] = {}

    def configure_optimizers(self) -> Optimizer:
        hp = self.hparams
        return make_optimizer(
            self.q_network.parameters(), hp.optimizer, hp.learning_rate, hp.alpha, hp.momentum, hp.alphagrad_eps,
            hp.adam_eps,
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------------------- acting
    def epsilon(self) -> float:
        """Exploration probability at the current env step (CleanRL's ``linear_schedule``)."""
        start_e, end_e, duration = self._epsilon_schedule
        return max((end_e - start_e) / duration * self.env_steps + start_e, end_e)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Greedy actions ``(N,)`` for observations ``(N, obs_dim)``."""
        return self.q_network(obs.to(self.device)).argmax(dim=1)

    def explore(self) -> Tensor:
        """Epsilon-greedy actions ``(num_envs,)``: all random with probability epsilon, else all greedy (computed in
        numpy by the default float32 Q-network on a CPU, see :meth:`QNetwork.greedy_actions`)."""
        if self.rng.random() < self.epsilon():
            return torch.from_numpy(self.rng.integers(self.num_actions, size=self.num_envs))
        if isinstance(self.q_network, QNetwork):
            actions = self.q_network.greedy_actions(self.obs.numpy())
            if actions is not None:
                return torch.from_numpy(actions)
        return self.act(self.obs)

    # --------------------------------------------------------------------------------------------------- learning
    def td_loss(self, batch: ReplayBatch) -> tuple[Tensor, Tensor]:
        """TD loss (MSE or Huber) of ``batch`` and the Q-values of its actions ``(B,)``."""
        hp = self.hparams
        with torch.no_grad():
            next_q = self.target_network(batch.next_obs)
            if hp.double_dqn:
                next_actions = self.q_network(batch.next_obs).argmax(dim=1, keepdim=True)
                next_value = next_q.gather(1, next_actions).squeeze(1)
            else:
                next_value = next_q.max(dim=1).values
            td_target = batch.rewards + hp.gamma * next_value * (1.0 - batch.terminations)
        q_values = self.q_network(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        loss_fn = F.mse_loss if hp.loss == "mse" else F.smooth_l1_loss
        return loss_fn(q_values, td_target), q_values

    def training_step(self, batch_index: int) -> Tensor | None:
        """The env steps of one update (``train_frequency`` vector steps; before learning starts, the rest of the batch)
        and, when an update is due, its TD loss (``None`` before learning starts, except under DDP)."""
        hp = self.hparams
        env_steps_before = self.env_steps
        reason = None
        for _ in range(self._update_vector_steps):
            reason = self.env_step()
            if reason is not None:
                break
        if reason is None and self._update_due:
            loss, q_values = self.td_loss(self.replay_buffer.sample(self.batch_size))
            q_max = q_values.detach().abs().max()
            if not bool(torch.isfinite(loss)):
                reason = "the TD loss is not finite"
            elif bool(q_max > hp.max_abs_q):
                reason = f"the Q-network diverged (|Q| = {float(q_max):.3g} > max_abs_q = {hp.max_abs_q:g})"
            self._last_metrics = {"losses/td_loss": loss.detach(), "losses/q_values": q_values.detach().mean()}
        elif self.world_size == 1:
            loss = None  # before learning starts: nothing to backpropagate
        else:
            # Lightning's DDP rejects a training_step that returns None: before learning starts the step returns a
            # zero loss touching every parameter and ``optimizer_step`` runs its backward without stepping.
            loss = sum(p.sum() for p in self.q_network.parameters()) * 0.0
        stop_on_divergence(self, reason)
        self.log_and_evaluate(env_steps_before, lambda: self._last_metrics)
        return loss

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # Gradients here are averaged over ranks already, so every rank takes the same decision.
        grads = [p.grad for p in self.q_network.parameters() if p.grad is not None]
        # One fused check (GradScaler's, with scale 1: the gradients keep their values), ~4x cheaper than norms.
        found_non_finite = torch.zeros(1, device=self.device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found_non_finite, torch.ones(1, device=self.device))
        stop_on_divergence(self, "a gradient of the TD loss is not finite" if bool(found_non_finite) else None)

    def on_fit_start(self) -> None:
        accumulate = self.trainer.accumulate_grad_batches
        if accumulate != 1:
            raise ValueError(
                f"Invalid accumulate_grad_batches: {accumulate}; DQN makes one update per train_frequency env steps "
                "inside each batch, so the Trainer must not accumulate batches (use 1)"
            )
        super().on_fit_start()

    def on_train_batch_start(self, batch: int, batch_idx: int) -> int | None:
        self._batch_vector_steps = self.chunk_length()
        return super().on_train_batch_start(batch, batch_idx)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The batch's updates: per update, ``train_frequency`` vector steps and the TD loss's backward (Lightning's
        closure runs ``training_step``), the optimizer step once learning has started, and the target update."""
        hp = self.hparams
        remaining = self._batch_vector_steps
        while remaining > 0:
            # Before learning starts, the rest of the batch runs in one closure call if no update falls in it.
            no_update_left = self.env_steps + remaining * self.env_steps_per_vector_step <= self.learning_resumes_at
            self._update_vector_steps = remaining if no_update_left else min(hp.train_frequency, remaining)
            remaining -= self._update_vector_steps
            # Known before the env steps run: whether they end past learning_starts (an update is due) and whether
            # they cross a multiple of target_network_frequency.
            env_steps_after = self.env_steps + self._update_vector_steps * self.env_steps_per_vector_step
            self._update_due = env_steps_after > self.learning_resumes_at
            frequency = hp.target_network_frequency
            target_update_due = self._update_due and env_steps_after // frequency != self.env_steps // frequency
            if self._update_due:
                super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            else:
                optimizer_closure()  # training_step (under DDP also the backward of its zero loss); no step
            # CleanRL: after the update of a global step that is a multiple of target_network_frequency.
            if target_update_due:
                with torch.no_grad():
                    target_params = list(self.target_network.parameters())
                    online_params = list(self.q_network.parameters())
                    torch._foreach_lerp_(target_params, online_params, hp.tau)
