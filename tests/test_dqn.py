"""DQN: TD targets against a reference written here, schedules, bad input, learning, resume, divergence, DDP, CLI."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from ddp_script import assert_ranks_agree, run_on_two_ranks
from helpers import params_of, quiet_trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.callbacks import StopAtEnvSteps
from lightning_alphagrad.rl import DQN, DivergenceError, ReplayBatch

torch.set_num_threads(1)

SMALL = dict(total_timesteps=600, learning_starts=200, batch_size=16, buffer_size=500, target_network_frequency=100)
# A faster-learning CartPole config than CleanRL's 500k-step defaults, for the learning test.
FAST = dict(total_timesteps=12_000, learning_starts=1000, exploration_fraction=0.3, learning_rate=1e-3,
            target_network_frequency=200)  # fmt: skip


# ------------------------------------------------------------------------------------------------------- math
@pytest.mark.parametrize("double_dqn", [False, True])
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_td_loss_matches_the_formula(double_dqn: bool, loss: str) -> None:
    model = DQN(gamma=0.9, double_dqn=double_dqn, loss=loss, seed=4)
    with torch.no_grad():
        for p in model.target_network.parameters():
            p.add_(0.3 * torch.randn_like(p))
    torch.manual_seed(0)
    batch = ReplayBatch(torch.randn(8, 4), torch.randint(2, (8,)), torch.randn(8), torch.randn(8, 4),
                        torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]))  # fmt: skip
    value, q_values = model.td_loss(batch)
    expected_losses = []
    for i in range(8):
        q_next_target = model.target_network(batch.next_obs[i]).detach()
        if double_dqn:
            best = int(model.q_network(batch.next_obs[i]).argmax())
            bootstrap = q_next_target[best]
        else:
            bootstrap = q_next_target.max()
        target = batch.rewards[i] + (0.0 if batch.terminations[i] else 0.9 * bootstrap)
        q = model.q_network(batch.obs[i])[batch.actions[i]]
        torch.testing.assert_close(q_values[i], q)
        error = float((q - target).detach())
        expected_losses.append(error**2 if loss == "mse" else (0.5 * error**2 if abs(error) < 1 else abs(error) - 0.5))
    torch.testing.assert_close(value, torch.tensor(sum(expected_losses) / 8))


def test_greedy_actions_in_numpy_follow_the_torch_network_and_its_updates() -> None:
    model = DQN(env_id="CartPole-v1", total_timesteps=1000, learning_starts=100, seed=3)
    network = model.q_network
    obs = torch.randn(64, 4)
    before = network.greedy_actions(obs.numpy()).tolist()
    assert before == network(obs).argmax(1).tolist()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    network(obs)[:, 0].sum().backward()  # push action 0 up: the numpy views must see the in-place update
    optimizer.step()
    after = network.greedy_actions(obs.numpy()).tolist()
    assert after == network(obs).argmax(1).tolist() and after != before
    other = DQN(env_id="CartPole-v1", total_timesteps=1000, learning_starts=100, seed=4).q_network
    network.load_state_dict(other.state_dict())
    assert network.greedy_actions(obs.numpy()).tolist() == other(obs).argmax(1).tolist()
    last = network.net[-1]
    last.bias = torch.nn.Parameter(torch.tensor([0.0, 1e6]))  # a new Parameter object: action 1 everywhere
    assert network.greedy_actions(obs.numpy()).tolist() == [1] * 64 == network(obs).argmax(1).tolist()
    network.double()  # new storage: float64 leaves the numpy path
    assert network.greedy_actions(obs.numpy()) is None


def test_epsilon_falls_linearly_over_the_exploration_fraction() -> None:
    model = DQN(total_timesteps=1000, learning_starts=100, start_e=1.0, end_e=0.05, exploration_fraction=0.5)
    for step, expected in [(0, 1.0), (100, 1.0 - 0.95 * 100 / 500), (250, 1.0 - 0.95 * 250 / 500), (500, 0.05),
                           (900, 0.05)]:  # fmt: skip
        model.env_steps = step
        assert model.epsilon() == pytest.approx(expected)


def test_target_network_copies_every_frequency_after_learning_starts(tmp_path: object) -> None:
    model = DQN(**{**SMALL, "train_frequency": 10, "updates_per_training_step": 1})  # observed per update
    seen: list[tuple[int, bool, bool]] = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, module: DQN, *args: object) -> None:
            same = torch.equal(params_of(module.target_network), params_of(module.q_network))
            seen.append((module.env_steps, same, torch.equal(params_of(module.target_network), self.last)))
            self.last = params_of(module.target_network)

        def on_train_start(self, trainer: L.Trainer, module: DQN) -> None:
            self.last = params_of(module.target_network)

    quiet_trainer(tmp_path, max_epochs=-1, callbacks=[Watch()]).fit(model)
    for env_steps, same_as_online, unchanged in seen:
        copied = env_steps > 200 and env_steps % 100 == 0
        assert same_as_online == (copied or env_steps <= 200), env_steps  # before learning both stay the initial net
        assert unchanged == (not copied), env_steps


def test_updates_per_training_step_leaves_the_run_unchanged(tmp_path: object) -> None:
    # 3 updates per Lightning batch (the last batch partial: 610 env steps) vs one: the same 41 updates (after env
    # steps 210, 220, ..., 610), target copies, exploration and data, so the same parameters
    runs = {}
    for updates in (1, 3):
        model = DQN(**{**SMALL, "total_timesteps": 610, "updates_per_training_step": updates})
        trainer = quiet_trainer(tmp_path, max_epochs=-1)
        trainer.fit(model)
        runs[updates] = (model, trainer)
    (one, one_trainer), (three, three_trainer) = runs[1], runs[3]
    assert one.env_steps == three.env_steps == 610
    # Lightning's global_step (and 'step'-interval schedulers) count batches: 61 and ceil(61 / 3)
    assert (one_trainer.global_step, three_trainer.global_step) == (61, 21)
    torch.testing.assert_close(params_of(three.q_network), params_of(one.q_network), rtol=0, atol=0)
    torch.testing.assert_close(params_of(three.target_network), params_of(one.target_network), rtol=0, atol=0)
    assert not torch.equal(params_of(three.target_network), params_of(three.q_network))  # last copy at 600


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"env_id": "Pendulum-v1"}, "env_id"),
        ({"env_id": "NoSuchEnv-v0"}, "env_id"),
        ({"learning_starts": 10_000}, "learning_starts"),
        ({"batch_size": 1000}, "batch_size"),
        ({"loss": "l1"}, "loss"),
        ({"exploration_fraction": 0.0}, "exploration_fraction"),
        ({"train_frequency": 0}, "train_frequency"),
        ({"updates_per_training_step": 0}, "updates_per_training_step"),
        ({"end_e": 2.0}, "end_e"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DQN(**{**SMALL, **kwargs})


def test_gradient_accumulation_is_refused(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        quiet_trainer(tmp_path, max_epochs=-1, accumulate_grad_batches=2).fit(DQN(**SMALL))


def test_optimizer_by_name_and_from_the_cli() -> None:
    optimizer = DQN(**SMALL, optimizer="alphagrad", alpha=186.0).configure_optimizers()
    assert isinstance(optimizer, AlphaGrad) and optimizer.param_groups[0]["alpha"] == 186.0
    with pytest.warns(UserWarning, match="DQN.configure_optimizers` will be overridden"):
        cli = LightningCLI(DQN, run=False, seed_everything_default=0,
                           args=["--model.total_timesteps=600", "--model.learning_starts=200",
                                 "--optimizer=torch.optim.SGD", "--optimizer.lr=0.05"])  # fmt: skip
    optimizer = cli.model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.05


# ---------------------------------------------------------------------------------------------------- learning
def test_learns_cartpole_quickly(tmp_path: object) -> None:
    model = DQN(**FAST, seed=1, log_interval=1000)
    returns: list[float] = []

    class Record(Logger):  # the episode statistics logged every 1000 env steps
        name, version = "record", "0"

        def log_hyperparams(self, *args: object, **kwargs: object) -> None:
            pass

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            if "charts/episodic_return" in metrics:
                returns.append(metrics["charts/episodic_return"])

    quiet_trainer(tmp_path, max_epochs=-1, logger=Record()).fit(model)
    assert len(returns) >= 10
    assert sum(returns[-3:]) / 3 >= 150.0  # a random policy averages ~22 on CartPole


# ------------------------------------------------------------------------------------------ resume, divergence
class Inspect(L.Callback):
    """Records the restored networks, exploration rate, Adam moment and buffer size when training restarts."""

    def __init__(self) -> None:
        self.restored: dict[str, object] = {}

    def on_train_start(self, trainer: L.Trainer, module: DQN) -> None:
        self.restored = {
            "nets": (params_of(module.q_network), params_of(module.target_network), module.epsilon()),
            "moment": trainer.optimizers[0].state_dict()["state"][0]["exp_avg"].clone(),
            "buffer": len(module.replay_buffer),
        }


def test_resume_continues_schedule_networks_and_optimizer(tmp_path: object) -> None:
    model = DQN(**SMALL, save_replay_buffer=True)
    trainer = quiet_trainer(tmp_path, max_epochs=-1, callbacks=[StopAtEnvSteps(400)])
    trainer.fit(model)
    path = os.path.join(str(tmp_path), "mid.ckpt")
    trainer.save_checkpoint(path)
    saved = (params_of(model.q_network), params_of(model.target_network), model.epsilon())
    saved_moment = trainer.optimizers[0].state_dict()["state"][0]["exp_avg"].clone()

    finals = []
    for _ in range(2):
        resumed = DQN(**SMALL, save_replay_buffer=True)
        inspect = Inspect()
        quiet_trainer(tmp_path, max_epochs=-1, callbacks=[inspect]).fit(resumed, ckpt_path=path)
        restored = inspect.restored
        assert torch.equal(restored["nets"][0], saved[0]) and torch.equal(restored["nets"][1], saved[1])
        assert restored["nets"][2] == saved[2] < 1.0  # the exploration schedule goes on where it stopped
        assert torch.equal(restored["moment"], saved_moment)
        assert restored["buffer"] == 400 and resumed.env_steps == 600
        finals.append(params_of(resumed.q_network))
    assert torch.equal(finals[0], finals[1]) and not torch.equal(finals[0], saved[0])


def test_counters_are_in_the_state_dict_and_checkpoints_need_the_clock() -> None:
    model = DQN(**SMALL)
    model.env_steps = 330
    state = model.state_dict()
    assert state["_extra_state"] == {"env_steps": 330}
    restored = DQN(**SMALL)
    restored.load_state_dict(state)
    assert restored.env_steps == 330
    resumed = DQN(**SMALL)
    resumed.on_load_checkpoint({"state_dict": state, "env_steps": 330, "learning_resumes_at": 100})
    assert resumed.env_steps == 330 and resumed.learning_resumes_at == 330 + SMALL["learning_starts"]
    with pytest.raises(KeyError, match="env_steps"):  # a checkpoint without the env-step clock is refused
        DQN(**SMALL).on_load_checkpoint({"state_dict": state, "learning_resumes_at": 100})


def test_diverged_q_network_stops_with_a_last_good_checkpoint(tmp_path: object) -> None:
    model = DQN(**SMALL, max_abs_q=1e-4)
    with pytest.raises(DivergenceError, match="Q-network diverged") as error:
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
    assert model.env_steps == 210  # the first update (after 21 chunks of 10 steps) is refused
    checkpoint = torch.load(error.value.checkpoint_path, weights_only=False)
    restored = DQN(**SMALL)
    restored.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(params_of(restored), params_of(model))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_gradient_stops_before_the_optimizer_step(tmp_path: object, bad: float) -> None:
    model = DQN(**SMALL)
    initial = params_of(model.q_network)
    model.q_network.net[2].bias.register_hook(lambda grad: grad * bad)  # finite loss, one non-finite gradient
    with pytest.raises(DivergenceError, match="gradient of the TD loss is not finite"):
        quiet_trainer(tmp_path, max_epochs=-1).fit(model)
    assert model.env_steps == 210 and torch.equal(params_of(model.q_network), initial)


# --------------------------------------------------------------------------------------------------------- DDP
def test_ddp_keeps_ranks_identical(tmp_path: Path) -> None:
    ranks = run_on_two_ranks("dqn", "ddp", tmp_path)  # strategy="ddp" re-runs its script per rank
    assert_ranks_agree(ranks)
    assert not torch.equal(ranks[0]["replay_obs"], ranks[1]["replay_obs"])  # each rank has its own envs and buffer
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 600


# ---------------------------------------------------------------------------------------------- StopAtEnvSteps
def test_stop_at_env_steps_ends_the_run_early_on_the_full_schedule(tmp_path: object) -> None:
    model = DQN(**SMALL)
    quiet_trainer(tmp_path, max_epochs=-1, callbacks=[StopAtEnvSteps(250)]).fit(model)
    per_batch = model.vector_steps_per_training_step * model.env_steps_per_vector_step
    assert 250 <= model.env_steps < 250 + per_batch < SMALL["total_timesteps"]
    # the exploration schedule still runs over total_timesteps (600): epsilon is where the full run has it
    fraction = model.env_steps / (model.hparams.exploration_fraction * SMALL["total_timesteps"])
    expected = model.hparams.start_e + fraction * (model.hparams.end_e - model.hparams.start_e)
    assert model.epsilon() == pytest.approx(max(expected, model.hparams.end_e))


@pytest.mark.parametrize("env_steps", [0, -5, 2.5, True])
def test_stop_at_env_steps_refuses_a_non_positive_or_non_int_count(env_steps: object) -> None:
    with pytest.raises(ValueError, match="Invalid env_steps"):
        StopAtEnvSteps(env_steps)  # type: ignore[arg-type]


def test_stop_at_env_steps_refuses_a_module_without_env_steps(tmp_path: object) -> None:
    from lightning.pytorch.demos.boring_classes import BoringModel

    with pytest.raises(ValueError, match="needs a module that counts env_steps"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[StopAtEnvSteps(10)]).fit(BoringModel())
