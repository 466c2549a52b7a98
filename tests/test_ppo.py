"""PPO: math against independent references, bad input, non-finite guard, checkpoints, DDP, a short learning run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from ddp_script import assert_ranks_agree, run_on_two_ranks
from example_scripts import EXAMPLES
from gymnasium import spaces
from helpers import params_of, quiet_trainer
from lightning.pytorch.cli import LightningCLI

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.cli import config_model_args
from lightning_alphagrad.rl import PPO

torch.set_num_threads(1)


class ChainEnv(gym.Env):
    """Observation ``[t, 1]`` at step ``t`` of an episode, reward 1 per step; terminates after ``terminate_at``."""

    def __init__(self, terminate_at: int = 1_000) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.terminate_at = terminate_at
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return np.array([self.t, 1.0], np.float32), 1.0, self.t >= self.terminate_at, False, {}


class MultiDiscreteEnv(ChainEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.MultiDiscrete([2, 2])


gym.register("TestChainTruncated-v0", entry_point=ChainEnv, max_episode_steps=3)
gym.register("TestChainTerminated-v0", entry_point=ChainEnv, kwargs={"terminate_at": 3})
gym.register("TestMultiDiscrete-v0", entry_point=MultiDiscreteEnv)

TINY = dict(env_id="CartPole-v1", num_envs=2, num_steps=16, num_minibatches=4, update_epochs=2, num_eval_episodes=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"env_id": "NoSuchEnv-v0"}, "env_id"),
        ({"env_id": "TestMultiDiscrete-v0"}, "action space"),
        ({"num_steps": 100, "num_minibatches": 32}, "num_minibatches"),
        ({"num_envs": 0}, "num_envs"),
        ({"num_steps": -1}, "num_steps"),
        ({"total_timesteps": 0}, "total_timesteps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.inf}, r"learning_rate: inf; it must be finite"),
        ({"update_epochs": 0}, "update_epochs"),
        ({"gamma": 1.5}, "gamma"),
        ({"gae_lambda": -0.1}, "gae_lambda"),
        ({"gae_lambda": math.nan}, r"gae_lambda: nan; it must be finite and lie in \[0.0, 1.0\]"),
        ({"clip_coef": 0.0}, "clip_coef"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"alpha": 0.0}, "alpha"),
        ({"momentum": 1.0}, "momentum"),
        ({"target_kl": 0.0}, "target_kl"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PPO(**{**dict(env_id="Pendulum-v1", num_steps=64, num_minibatches=4), **kwargs})


def test_defaults_follow_cleanrl_and_the_paper() -> None:
    adam = PPO(env_id="HalfCheetah-v5")
    hp = adam.hparams
    assert (adam.num_steps, hp.num_minibatches, hp.update_epochs, adam.minibatch_size) == (2048, 32, 10, 64)
    assert adam.max_grad_norm == 0.5 and hp.clip_coef == 0.2 and hp.vf_coef == 0.5 and hp.ent_coef == 0.0
    optimizer = adam.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["eps"] == 1e-5
    alphagrad = PPO(env_id="HalfCheetah-v5", optimizer="alphagrad", alpha=196.0)
    assert alphagrad.max_grad_norm is None  # the paper ran AlphaGrad without clipping
    optimizer = alphagrad.configure_optimizers()
    assert isinstance(optimizer, AlphaGrad)
    defaults = optimizer.defaults
    assert (defaults["alpha"], defaults["momentum"], defaults["eps"]) == (196.0, 0.9, 1e-5)
    # Orthogonal init: hidden weights have singular values sqrt(2), the actor head 0.01, the critic head 1.
    assert torch.allclose(torch.linalg.svdvals(adam.actor[0].weight), torch.full((17,), math.sqrt(2)), atol=1e-5)
    assert torch.allclose(torch.linalg.svdvals(adam.actor[4].weight), torch.full((6,), 0.01), atol=1e-6)
    assert torch.allclose(torch.linalg.svdvals(adam.critic[4].weight), torch.ones(1), atol=1e-6)
    assert torch.equal(adam.actor_logstd, torch.zeros(6))
    assert torch.equal(params_of(adam), params_of(PPO(env_id="HalfCheetah-v5")))  # seeded init


def test_log_prob_and_entropy_match_torch_distributions() -> None:
    continuous = PPO(env_id="Pendulum-v1", num_steps=64, num_minibatches=4)
    with torch.no_grad():
        continuous.actor_logstd.copy_(torch.tensor([-0.7]))
    obs, actions = torch.randn(5, 3), torch.randn(5, 1)
    log_prob, entropy = continuous.log_prob_and_entropy(obs, actions)
    reference = torch.distributions.Normal(continuous.actor(obs), continuous.actor_logstd.exp())
    torch.testing.assert_close(log_prob, reference.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, reference.entropy().sum(-1))

    discrete = PPO(env_id="CartPole-v1", num_steps=64, num_minibatches=4)
    obs, actions = torch.randn(7, 4), torch.tensor([0, 1, 1, 0, 1, 0, 0])
    log_prob, entropy = discrete.log_prob_and_entropy(obs, actions)
    reference = torch.distributions.Categorical(logits=discrete.actor(obs))
    torch.testing.assert_close(log_prob, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())


def test_gumbel_sampling_follows_the_categorical_policy() -> None:
    """argmax(logits + Gumbel noise) picks each action with its softmax probability (chi-square-free check)."""
    model = PPO(env_id="CartPole-v1", num_envs=1, num_steps=64, num_minibatches=4)
    logits = torch.tensor([0.3, -0.5])
    noise = model.sampling_noise(40_000)[:, 0]  # (40000, 2)
    frequency = (logits + noise).argmax(-1).float().mean().item()
    assert frequency == pytest.approx(torch.softmax(logits, -1)[1].item(), abs=0.01)  # 4 standard errors


def test_gae_matches_discounted_sum_of_td_errors_within_episodes() -> None:
    model = PPO(env_id="CartPole-v1", num_envs=2, num_steps=6, num_minibatches=2, gamma=0.9, gae_lambda=0.8)
    generator = torch.Generator().manual_seed(0)
    values, rewards = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
    ends = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.float32)
    next_value = torch.randn(2, generator=generator)
    rollout = {"values": values, "rewards": rewards, "ends": ends, "next_value": next_value}
    advantages, returns = model.compute_advantages(rollout)
    for env in range(2):
        for t in range(6):
            expected, discount = 0.0, 1.0
            for k in range(t, 6):  # sum of (gamma lambda)^(k-t) delta_k up to the end of t's episode
                following = values[k + 1, env] if k + 1 < 6 else next_value[env]
                bootstrap = 0.0 if ends[k, env] else 0.9 * following
                expected += discount * (rewards[k, env] + bootstrap - values[k, env])
                if ends[k, env]:
                    break
                discount *= 0.9 * 0.8
            assert advantages[t, env].item() == pytest.approx(float(expected), abs=1e-5)
    torch.testing.assert_close(returns, advantages + values)


class RolloutProbe(L.Callback):
    """Keeps the first rollout of a run."""

    def on_train_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        original = pl_module.collect_rollout

        def collect() -> dict[str, torch.Tensor]:
            rollout = original()
            self.rollout = rollout
            return rollout

        pl_module.collect_rollout = collect  # type: ignore[method-assign]


@pytest.mark.parametrize("env_id", ["TestChainTruncated-v0", "TestChainTerminated-v0"])
def test_truncation_bootstraps_from_final_observation_termination_does_not(env_id: str) -> None:
    model = PPO(
        env_id=env_id,
        num_envs=1,
        num_steps=8,
        num_minibatches=1,
        update_epochs=1,
        total_timesteps=8,
        normalize_observation=False,
        normalize_reward=False,
        num_eval_episodes=0,
    )
    probe = RolloutProbe()
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    quiet_trainer(max_epochs=1, callbacks=[probe]).fit(model)
    rollout = probe.rollout
    # Episodes of 3 steps: observations [0,1], [1,1], [2,1], then the reset observation [0,1] again.
    torch.testing.assert_close(rollout["obs"][:, 0, 0], torch.tensor([0.0, 1, 2, 0, 1, 2, 0, 1]))
    torch.testing.assert_close(rollout["ends"][:, 0], torch.tensor([0.0, 0, 1, 0, 0, 1, 0, 0]))
    critic = model.critic
    with torch.no_grad():
        for p, before in zip(critic.parameters(), critic_before, strict=True):
            p.copy_(before)  # the critic as it was during the rollout
        final_value = critic(torch.tensor([[3.0, 1.0]])).item()
    truncated = env_id == "TestChainTruncated-v0"
    expected_last_reward = 1.0 + (0.99 * final_value if truncated else 0.0)
    rewards = rollout["rewards"][:, 0]
    assert rewards[2].item() == pytest.approx(expected_last_reward, rel=1e-5)
    assert rewards[5].item() == pytest.approx(expected_last_reward, rel=1e-5)
    torch.testing.assert_close(rewards[[0, 1, 3, 4, 6, 7]], torch.ones(6))


class NaNGradient(L.Callback):
    """Poisons one critic gradient on every backward pass."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        pl_module.critic[0].weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))


@pytest.mark.parametrize("optimizer", ["adam", "alphagrad"])
def test_non_finite_gradients_never_reach_the_weights(optimizer: str) -> None:
    model = PPO(**{**TINY, "total_timesteps": 64}, optimizer=optimizer)
    before = params_of(model).clone()
    if optimizer == "alphagrad":  # AlphaGrad warns at every step it skips
        with pytest.warns(RuntimeWarning, match="the step was skipped") as caught:
            quiet_trainer(max_epochs=1, callbacks=[NaNGradient()]).fit(model)
        assert sum("the step was skipped" in str(w.message) for w in caught) == model.skipped_updates
    else:
        quiet_trainer(max_epochs=1, callbacks=[NaNGradient()]).fit(model)
    torch.testing.assert_close(params_of(model), before, rtol=0, atol=0)
    hp = model.hparams
    assert model.skipped_updates == 2 * hp.update_epochs * hp.num_minibatches  # 2 iterations of 32 steps


class StopAndSave(L.Callback):
    """Saves a checkpoint after ``stop_after`` iterations and stops the run there."""

    def __init__(self, path: Path, stop_after: int) -> None:
        self.path, self.stop_after = path, stop_after

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: PPO, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 == self.stop_after:
            trainer.save_checkpoint(self.path)
            self.state = snapshot(pl_module, trainer)
            trainer.should_stop = True


class ResumeProbe(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        self.state = snapshot(pl_module, trainer)
        self.iterations = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: PPO, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.iterations += 1


def snapshot(model: PPO, trainer: L.Trainer) -> dict[str, Any]:
    optimizer = trainer.optimizers[0]
    return {
        "params": params_of(model).clone(),
        "buffers": torch.cat([optimizer.state[p]["momentum_buffer"].reshape(-1) for p in model.parameters()]),
        "lr": optimizer.param_groups[0]["initial_lr"],
        "obs_mean": model.obs_rms.mean.copy(),
        "obs_var": model.obs_rms.var.copy(),
        "return_var": model.reward_scaler.return_rms.var.copy(),
        "env_steps": model.env_steps,
    }


def test_resume_restores_networks_optimizer_normalizers_and_env_steps(tmp_path: Path) -> None:
    kwargs = {**TINY, "total_timesteps": 5 * 32, "optimizer": "alphagrad", "alpha": 5.0}
    path = tmp_path / "mid.ckpt"
    first = PPO(**kwargs)
    stopper = StopAndSave(path, stop_after=2)
    quiet_trainer(max_epochs=1, callbacks=[stopper]).fit(first)
    assert first.env_steps == 64

    resumed, probe = PPO(**kwargs), ResumeProbe()
    resumed_trainer = quiet_trainer(max_epochs=1, callbacks=[probe])
    resumed_trainer.fit(resumed, ckpt_path=path)
    for key, saved in stopper.state.items():
        restored = probe.state[key]
        assert np.array_equal(np.asarray(restored), np.asarray(saved)), key
    assert probe.iterations >= 3 and resumed.env_steps == 5 * 32  # the remaining 3 iterations, then stop
    assert not torch.equal(params_of(resumed), stopper.state["params"])
    # The lr keeps annealing from where it stopped: after iteration 5 of 5, lr = (1 - 4/5) * lr0.
    assert resumed_trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.2 * 3e-4)


def test_same_seed_same_result_different_seed_different_result() -> None:
    runs = []
    for seed in (3, 3, 4):
        model = PPO(**{**TINY, "total_timesteps": 64, "seed": seed})
        quiet_trainer(max_epochs=1).fit(model)
        runs.append(params_of(model))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


class RankReport(L.Callback):
    """Each rank saves its final parameters, first observations, normalizer statistics and env-step count."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        reset = pl_module.envs.reset  # runs right after this hook, in the module's on_train_start

        def recording_reset(**kwargs: Any) -> tuple[np.ndarray, dict]:
            obs, infos = reset(**kwargs)
            self.first_obs = obs.copy()
            return obs, infos

        pl_module.envs.reset = recording_reset

    def on_train_end(self, trainer: L.Trainer, pl_module: PPO) -> None:
        report = {
            "params": params_of(pl_module),
            "first_obs": self.first_obs,
            "obs_mean": pl_module.obs_rms.mean,
            "return_var": pl_module.reward_scaler.return_rms.var,
            "env_steps": pl_module.env_steps,
            "world_size": trainer.world_size,
        }
        torch.save(report, f"{self.directory}/rank{trainer.global_rank}.pt")


def test_ddp_spawn_two_ranks_identical_params_distinct_envs(tmp_path: Path) -> None:
    model = PPO(**{**TINY, "total_timesteps": 4 * 32 * 2}, seed=5)
    before = params_of(model).clone()
    quiet_trainer(max_epochs=1, devices=2, strategy="ddp_spawn", callbacks=[RankReport(str(tmp_path))]).fit(model)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["world_size"] == 2
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    assert not torch.equal(ranks[0]["params"], before)
    assert not np.array_equal(ranks[0]["first_obs"], ranks[1]["first_obs"])
    # Rank r's sub-env i was reset with seed 5 + 2 r + i, as a lone CartPole would be.
    expected = [gym.make("CartPole-v1").reset(seed=s)[0] for s in (5, 6, 7, 8)]
    np.testing.assert_array_equal(ranks[0]["first_obs"], np.stack(expected[:2]))
    np.testing.assert_array_equal(ranks[1]["first_obs"], np.stack(expected[2:]))
    np.testing.assert_array_equal(ranks[0]["obs_mean"], ranks[1]["obs_mean"])  # merged, not rank 0's broadcast
    np.testing.assert_array_equal(ranks[0]["return_var"], ranks[1]["return_var"])
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 4 * 32 * 2  # 4 iterations x 32 steps x 2 ranks


def test_lightning_cli_optimizer_overrides_the_argument() -> None:
    with pytest.warns(UserWarning, match="PPO.configure_optimizers` will be overridden"):
        cli = LightningCLI(
            PPO,
            run=False,
            seed_everything_default=0,
            args=["--model.env_id=CartPole-v1", "--optimizer=lightning_alphagrad.AlphaGrad", "--optimizer.alpha=7"],
        )
    optimizer = cli.model.configure_optimizers()
    assert isinstance(optimizer, AlphaGrad) and optimizer.defaults["alpha"] == 7.0
    assert {id(p) for p in cli.model.parameters()} == {id(p) for g in optimizer.param_groups for p in g["params"]}


def test_cartpole_learns_within_30k_steps() -> None:
    """Discrete PPO with the RL-Zoo CartPole settings (the main job's config at the Zoo's learning rate) and Adam: the
    deterministic policy balances >= 150 steps after 30k."""
    zoo = {**config_model_args(EXAMPLES / "configs" / "default.yaml"), "learning_rate": 1e-3}
    adam = {"total_timesteps": 30_000, "optimizer": "adam", "eval_interval": None, "num_eval_episodes": 5}
    model = PPO(**{**zoo, **adam})
    fit_trainer = quiet_trainer(max_epochs=1)
    fit_trainer.fit(model)
    assert model.env_steps == 117 * 256
    assert fit_trainer.callback_metrics["eval/return_mean"].item() >= 150.0


def test_ddp_subprocess_two_ranks_identical_params(tmp_path: Path) -> None:
    ranks = run_on_two_ranks("ppo", "ddp", tmp_path)  # strategy="ddp" re-runs its script per rank
    assert_ranks_agree(ranks)
    np.testing.assert_array_equal(ranks[0]["obs_mean"], ranks[1]["obs_mean"])
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 3 * 32 * 2


class PPOWithCountingScheduler(PPO):
    """PPO whose ``configure_optimizers`` adds a scheduler, as the CLI's ``--lr_scheduler`` does."""

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = super().configure_optimizers()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_schedulers_step_once_per_update_and_target_kl_stops_epochs_early() -> None:
    model = PPOWithCountingScheduler(**{**TINY, "total_timesteps": 64, "update_epochs": 3, "anneal_lr": False})
    fit_trainer = quiet_trainer(max_epochs=1)
    fit_trainer.fit(model)
    assert fit_trainer.lr_scheduler_configs[0].scheduler.last_epoch == 2 * 3 * 4  # iterations x epochs x minibatches
    early = PPO(**{**TINY, "total_timesteps": 64, "update_epochs": 3, "target_kl": 1e-12})
    early_trainer = quiet_trainer(max_epochs=1)
    early_trainer.fit(early)
    assert early_trainer.global_step == 2 * 1 * 4  # the KL exceeds the target after the first epoch of each iteration


def test_own_networks_and_logged_panels() -> None:
    model = PPO(
        env_id="Pendulum-v1",
        num_steps=32,
        num_minibatches=2,
        update_epochs=1,
        total_timesteps=2 * 32,
        actor=torch.nn.Linear(3, 1),
        critic=torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)),
        num_eval_episodes=1,
    )
    assert sum(p.numel() for p in model.parameters()) == 4 + 41 + 1  # actor, critic, log-std
    fit_trainer = quiet_trainer(max_epochs=1)
    fit_trainer.fit(model)
    expected = {
        "env_steps",
        "eval/return_mean",
        "charts/learning_rate",
        "charts/skipped_updates",
        "losses/explained_variance",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/policy_loss",
        "losses/value_loss",
    }
    assert expected <= set(fit_trainer.callback_metrics)
    assert fit_trainer.callback_metrics["env_steps"].item() == 64
    # Entropy of the Gaussian policy with log-std s: 0.5 + 0.5 log(2 pi) + s (one action dimension).
    log_std = model.actor_logstd.item()
    assert fit_trainer.callback_metrics["losses/entropy"].item() == pytest.approx(
        0.5 + 0.5 * math.log(2 * math.pi) + log_std, abs=1e-3
    )


def test_non_finite_actions_stop_the_run() -> None:
    model = PPO(env_id="Pendulum-v1", num_steps=64, num_minibatches=4)
    with pytest.raises(RuntimeError, match="non-finite actions"):
        model.env_actions(np.array([[np.nan]], dtype=np.float32))
    np.testing.assert_array_equal(model.env_actions(np.array([[5.0], [-0.5]])), np.array([[2.0], [-0.5]]))
