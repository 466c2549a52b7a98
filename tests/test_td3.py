"""TD3: update math against a reference written here, bad input, determinism, resume, divergence stop, 2-process DDP."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from ddp_script import assert_ranks_agree, run_on_two_ranks
from helpers import params_of, quiet_trainer
from torch import Tensor, nn

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.callbacks import StopAtEnvSteps
from lightning_alphagrad.rl import TD3, DivergenceError, EnsembleCritic, ReplayBatch
from lightning_alphagrad.rl.td3 import average_gradients

torch.set_num_threads(1)

SMALL = dict(env_id="Pendulum-v1", total_timesteps=240, learning_starts=80, batch_size=32, buffer_size=1000)


class SmallActor(nn.Module):
    """A 16-unit actor for Pendulum (actions in [-2, 2])."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1), nn.Tanh())

    def forward(self, obs: Tensor) -> Tensor:
        return 2.0 * self.net(obs)


def small_td3(**kwargs: object) -> TD3:
    arguments = {**SMALL, "actor": SmallActor(), "critic": EnsembleCritic(3, 1, hidden_sizes=(16,)), **kwargs}
    return TD3(**arguments)


# ------------------------------------------------------------------------------------------------------- math
def test_ensemble_members_are_independent_mlps() -> None:
    torch.manual_seed(0)
    critic = EnsembleCritic(3, 2, hidden_sizes=(8, 8), num_critics=3)
    obs, action = torch.randn(5, 3), torch.randn(5, 2)
    q = critic(obs, action)
    assert q.shape == (3, 5)
    for i, member in enumerate(critic.members):
        x = torch.cat([obs, action], dim=1)
        for layer in member:
            x = layer(x)
        torch.testing.assert_close(q[i], x.squeeze(1))
    torch.testing.assert_close(critic(obs, action, num_members=1), q[:1])
    assert not torch.equal(q[0], q[1])


def test_critic_target_matches_the_td3_formula() -> None:
    torch.manual_seed(0)
    model = small_td3(gamma=0.9, policy_noise=0.4, noise_clip=0.3)
    batch = ReplayBatch(
        torch.randn(6, 3), torch.rand(6, 1) * 4 - 2, torch.randn(6), torch.randn(6, 3),
        torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0]),
    )  # fmt: skip
    with torch.no_grad():  # targets differ from the online nets, as after some Polyak steps
        for p in [*model.target_actor.parameters(), *model.target_critic.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    model.generator.manual_seed(7)
    losses, q_values = model._critic_losses(batch)

    noise = torch.randn(6, 1, generator=torch.Generator().manual_seed(7))
    smoothing = (0.4 * noise).clamp(-0.3, 0.3) * 2.0  # Pendulum's action scale is 2
    next_action = (model.target_actor(batch.next_obs) + smoothing).clamp(-2.0, 2.0)
    target_members = [m for m in model.target_critic.members]
    x = torch.cat([batch.next_obs, next_action], dim=1)
    next_q = torch.minimum(target_members[0](x), target_members[1](x)).squeeze(1)
    target = batch.rewards + 0.9 * (1 - batch.terminations) * next_q
    online = [m(torch.cat([batch.obs, batch.actions], dim=1)).squeeze(1) for m in model.critic.members]
    expected = torch.stack([F.mse_loss(q, target) for q in online])
    torch.testing.assert_close(losses, expected)
    torch.testing.assert_close(q_values, torch.stack(online))


def test_delayed_actor_and_polyak_targets(tmp_path: object) -> None:
    """Critic updates = env steps after learning_starts; the actor and targets move every second update only."""
    model = small_td3(total_timesteps=120, learning_starts=100, tau=0.5, steps_per_training_step=1)
    snapshots: list[tuple[Tensor, Tensor, Tensor]] = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, module: TD3, *args: object) -> None:
            snapshots.append((params_of(module.actor), params_of(module.target_actor), params_of(module.critic)))

    quiet_trainer(tmp_path, max_epochs=-1, callbacks=[Snapshot()]).fit(model)
    # CleanRL: global_step g = 0, 1, ... updates after its env step when g > learning_starts: g = 101..119.
    assert model.env_steps == 120 and model.critic_updates == 19
    # Update u (1..19) follows env step 101 + u, so snapshots[100 + u] is the state right after it.
    moved = [not torch.equal(snapshots[99 + u][0], snapshots[100 + u][0]) for u in range(1, 20)]
    assert moved == [u % 2 == 0 for u in range(1, 20)]  # the actor moves on updates 2, 4, ..., 18 only
    assert torch.equal(snapshots[0][0], snapshots[100][0])
    # The target actor follows target <- 0.5 * target + 0.5 * actor right after each actor update, else stays.
    before, after = snapshots[101], snapshots[102]
    torch.testing.assert_close(after[1], 0.5 * before[1] + 0.5 * after[0])
    assert torch.equal(snapshots[103][1], snapshots[102][1])
    assert model.frozen_actor_updates == 0


def test_average_gradients_single_process_flags() -> None:
    tiny = [torch.zeros(3), torch.tensor([[0.0, 1e-30], [0.0, 0.0]])]
    grads, bad, all_zero = average_gradients(tiny, False, world_size=1)
    assert (bad, all_zero) == (False, False) and all(torch.equal(a, b) for a, b in zip(grads, tiny, strict=True))
    assert average_gradients([torch.zeros(3), torch.zeros(2, 2)], False, 1)[1:] == (False, True)
    assert average_gradients([torch.zeros(3), torch.zeros(2, 2)], True, 1)[1] is True  # the local flag
    assert average_gradients([torch.tensor([1.0, float("nan")])], False, 1)[1] is True
    assert average_gradients([torch.tensor([float("-inf"), 1.0])], False, 1)[1] is True


def test_an_actor_saturated_everywhere_is_reported_as_frozen(tmp_path: object) -> None:
    """tanh(100) is 1 in fp32 with a derivative of exactly 0: no gradient reaches the actor, which never moves."""
    actor = SmallActor()
    with torch.no_grad():
        actor.net[2].weight.zero_()
        actor.net[2].bias.fill_(100.0)
    model = small_td3(actor=actor, total_timesteps=300, optimizer="alphagrad", alpha=100.0)
    before = params_of(model.actor)
    with pytest.warns(UserWarning, match="exactly zero for 100 consecutive actor updates"):
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
    assert model.critic_updates == 219 and model.frozen_actor_updates == 219 // 2  # every actor update
    assert torch.equal(params_of(model.actor), before)


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"env_id": "CartPole-v1"}, "env_id"),
        ({"env_id": "NoSuchEnv-v0"}, "env_id"),
        ({"learning_starts": 10_000}, "learning_starts"),
        ({"batch_size": 2000}, "batch_size"),
        ({"tau": 0.0}, "tau"),
        ({"gamma": 1.5}, "gamma"),
        ({"policy_frequency": 0}, "policy_frequency"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"total_timesteps": -1}, "total_timesteps"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TD3(**{**SMALL, **kwargs})


# ---------------------------------------------------------------------------------------- optimizers, determinism
def test_optimizers_by_name_alpha_and_injection() -> None:
    model = small_td3(optimizer="alphagrad", alpha=50.0, critic_alpha=7.0)
    actor_opt, critic_opt = model.configure_optimizers()
    assert isinstance(actor_opt, AlphaGrad) and isinstance(critic_opt, AlphaGrad)
    assert actor_opt.param_groups[0]["alpha"] == 50.0 and critic_opt.param_groups[0]["alpha"] == 7.0
    assert actor_opt.param_groups[0]["momentum"] == 0.9 and actor_opt.param_groups[0]["eps"] == 1e-5
    injected = small_td3(critic_optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    actor_opt, critic_opt = injected.configure_optimizers()
    assert isinstance(actor_opt, torch.optim.Adam) and isinstance(critic_opt, torch.optim.SGD)
    assert {id(p) for p in critic_opt.param_groups[0]["params"]} == {id(p) for p in injected.critic.parameters()}


def test_same_seed_same_run(tmp_path: object) -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_td3(seed=3, optimizer="alphagrad")
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
        runs.append((params_of(model), model.critic_updates, model.env_steps))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1:] == runs[1][1:] == (159, 240)


# ------------------------------------------------------------------------------------------------------ resume
class Inspect(L.Callback):
    """Compares the restored state with the saved one when training restarts."""

    def __init__(self, params: Tensor, targets: Tensor, moments: dict) -> None:
        self.params, self.targets, self.moments = params, targets, moments
        self.checks: dict[str, object] = {}

    def on_train_start(self, trainer: L.Trainer, module: TD3) -> None:
        state = trainer.optimizers[1].state_dict()["state"]
        self.checks = {
            "params": torch.equal(params_of(module), self.params),
            "targets": torch.equal(params_of(module.target_critic), self.targets),
            "moments": all(torch.equal(state[k]["exp_avg"], v["exp_avg"]) for k, v in self.moments.items()),
            "buffer": len(module.replay_buffer),
        }


@pytest.mark.parametrize("save_replay_buffer", [True, False])
def test_resume_continues_the_run(tmp_path: object, save_replay_buffer: bool) -> None:
    torch.manual_seed(0)
    model = small_td3(save_replay_buffer=save_replay_buffer)
    trainer = quiet_trainer(tmp_path, max_epochs=-1, callbacks=[StopAtEnvSteps(160)])
    trainer.fit(model)
    path = os.path.join(str(tmp_path), "mid.ckpt")
    trainer.save_checkpoint(path)
    assert model.env_steps == 160 and model.critic_updates == 79  # g = 81..159
    saved_params, saved_targets = params_of(model), params_of(model.target_critic)
    saved_moments = copy.deepcopy(trainer.optimizers[1].state_dict()["state"])

    finals = []
    for _ in range(2):
        resumed = small_td3(save_replay_buffer=save_replay_buffer)
        inspect = Inspect(saved_params, saved_targets, saved_moments)
        quiet_trainer(tmp_path, max_epochs=-1, callbacks=[inspect]).fit(resumed, ckpt_path=path)
        checks = inspect.checks
        assert checks["params"] and checks["targets"] and checks["moments"]
        assert checks["buffer"] == (160 if save_replay_buffer else 0)
        assert resumed.env_steps == 240
        # With the buffer, updates go on at once (80 more); without, a refill of learning_starts = 80 steps first.
        assert resumed.critic_updates == (159 if save_replay_buffer else 79)
        finals.append(params_of(resumed))
    assert torch.equal(finals[0], finals[1])  # a resume is deterministic
    if not save_replay_buffer:
        assert torch.equal(finals[0], saved_params)  # refill only: no update happened after the resume


# -------------------------------------------------------------------------------------------------- divergence
class NaNActor(SmallActor):
    """An actor whose acting output turns NaN after 150 calls: what a diverged policy hands MuJoCo."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, obs: Tensor) -> Tensor:
        self.calls += 1
        action = super().forward(obs)
        return action * float("nan") if self.calls > 150 and not torch.is_grad_enabled() else action


def test_nan_action_stops_with_a_last_good_checkpoint(tmp_path: object) -> None:
    model = small_td3(actor=NaNActor())
    with pytest.raises(DivergenceError, match="non-finite action") as error:
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
    checkpoint = torch.load(error.value.checkpoint_path, weights_only=False)
    tensors = [v for v in checkpoint["state_dict"].values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in tensors)
    assert checkpoint["env_steps"] == model.env_steps < 240


def test_diverged_critic_stops_before_the_bad_update(tmp_path: object) -> None:
    model = small_td3(max_abs_q=1e-3)
    with pytest.raises(DivergenceError, match="critic diverged") as error:
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
    assert model.critic_updates == 0 and model.env_steps == 82  # stopped at the first update, which was skipped
    checkpoint = torch.load(error.value.checkpoint_path, weights_only=False)
    restored = small_td3()
    restored.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(params_of(restored), params_of(model))


# --------------------------------------------------------------------------------------------------------- DDP
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_plain_ddp_keeps_ranks_identical(tmp_path: Path, strategy: str) -> None:
    # no find_unused_parameters flag: the critic's loss never touches the actor, the module averages gradients itself
    ranks = run_on_two_ranks("td3", strategy, tmp_path)
    assert_ranks_agree(ranks)
    assert not torch.equal(ranks[0]["replay_obs"], ranks[1]["replay_obs"])  # each rank has its own envs and buffer
    # 240 env steps over 2 ranks: global_step g = 0, 2, ..., 238 per vector step; updates for g > 80 (g = 82..238).
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 240
    assert ranks[0]["critic_updates"] == ranks[1]["critic_updates"] == 79
    if strategy == "ddp_spawn":  # the weights and the counters come back to the main process
        main = torch.load(tmp_path / "main.pt", weights_only=False)
        assert torch.equal(main["params"], ranks[0]["params"])
        assert main["env_steps"] == 240 and main["critic_updates"] == 79


def test_lightning_cli_injects_both_optimizers() -> None:
    from lightning.pytorch.cli import LightningCLI

    args = ["--model.env_id=Pendulum-v1", "--model.total_timesteps=240", "--model.learning_starts=80",
            "--model.actor_optimizer=lightning_alphagrad.AlphaGrad", "--model.actor_optimizer.alpha=5",
            "--model.critic_optimizer=torch.optim.SGD", "--model.critic_optimizer.lr=0.1",
            "--seed_everything=0"]  # fmt: skip
    cli = LightningCLI(TD3, run=False, auto_configure_optimizers=False, args=args)
    actor_opt, critic_opt = cli.model.configure_optimizers()
    assert isinstance(actor_opt, AlphaGrad) and actor_opt.param_groups[0]["alpha"] == 5.0
    assert isinstance(critic_opt, torch.optim.SGD) and critic_opt.param_groups[0]["lr"] == 0.1
