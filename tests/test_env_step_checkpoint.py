"""EnvStepCheckpoint: a run that dies after a checkpoint resumes with what the checkpoint holds, and finishes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import params_of, quiet_trainer

from lightning_alphagrad.callbacks import EnvStepCheckpoint
from lightning_alphagrad.rl import DQN

torch.set_num_threads(1)

SMALL = dict(total_timesteps=600, learning_starts=200, batch_size=16, buffer_size=500, target_network_frequency=100,
             save_replay_buffer=True)  # fmt: skip


class Crash(L.Callback):
    """Raises once the module has taken ``env_steps`` env steps (a process killed mid-run)."""

    def __init__(self, env_steps: int) -> None:
        self.env_steps = env_steps

    def on_train_batch_end(self, trainer: L.Trainer, module: DQN, *args: object) -> None:
        if module.env_steps >= self.env_steps:
            raise RuntimeError("killed")


class Restored(L.Callback):
    """What the module holds when training restarts."""

    def on_train_start(self, trainer: L.Trainer, module: DQN) -> None:
        buffer = module.replay_buffer
        self.env_steps, self.epsilon = module.env_steps, module.epsilon()
        self.buffer = (buffer.size, buffer.obs[: buffer.size].clone(), buffer.actions[: buffer.size].clone())
        self.params = params_of(module.q_network)


def test_killed_run_resumes_from_the_last_checkpoint_and_finishes(tmp_path: Path) -> None:
    saver = EnvStepCheckpoint(tmp_path / "ckpt", every_n_env_steps=200)
    with pytest.raises(RuntimeError, match="killed"):  # dies at 450 env steps, after the checkpoint at 400
        quiet_trainer(tmp_path, max_epochs=-1, callbacks=[saver, Crash(450)]).fit(DQN(**SMALL))
    path = tmp_path / "ckpt" / "last.ckpt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file left
    promised = torch.load(path, weights_only=False)
    assert promised["env_steps"] == 400 and promised["replay_buffer"]["size"] == 400

    restored = Restored()
    resumed = DQN(**SMALL)
    callbacks = [EnvStepCheckpoint(tmp_path / "ckpt", 200), restored]
    quiet_trainer(tmp_path, max_epochs=-1, callbacks=callbacks).fit(resumed, ckpt_path=path)
    assert restored.env_steps == 400
    reference = DQN(**SMALL)
    reference.env_steps = 400
    assert restored.epsilon == reference.epsilon() < 1.0  # the exploration schedule goes on at 400 steps
    size, obs, actions = restored.buffer
    assert size == 400
    assert torch.equal(obs, promised["replay_buffer"]["obs"])
    assert torch.equal(actions, promised["replay_buffer"]["actions"])
    q_network = [v.reshape(-1) for k, v in promised["state_dict"].items() if k.startswith("q_network.")]
    assert torch.equal(restored.params, torch.cat(q_network))
    assert resumed.env_steps == 600  # finished
    assert torch.load(path, weights_only=False)["env_steps"] == 600  # and saved again at 600


def test_checkpoint_times_follow_the_env_steps(tmp_path: Path) -> None:
    saved = []

    class Record(EnvStepCheckpoint):
        def save(self, trainer: L.Trainer) -> None:
            saved.append(trainer.lightning_module.env_steps)

    model = DQN(**SMALL)
    quiet_trainer(tmp_path, max_epochs=-1, callbacks=[Record(tmp_path, 250)]).fit(model)
    chunk = model.vector_steps_per_training_step * model.env_steps_per_vector_step  # env steps per batch
    assert chunk > 1 and saved == [-(-250 // chunk) * chunk, -(-500 // chunk) * chunk]  # first batch ends past them


@pytest.mark.parametrize("kwargs, match", [
    (dict(every_n_env_steps=0), "every_n_env_steps: 0; it must be a positive int"),
    (dict(every_n_env_steps=1.5), "every_n_env_steps: 1.5"),
    (dict(every_n_env_steps=10, filename="a/b.ckpt"), "filename: 'a/b.ckpt'; it must be a plain file name"),
])  # fmt: skip
def test_bad_input_is_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EnvStepCheckpoint(tmp_path, **kwargs)


def test_module_without_env_steps_is_refused(tmp_path: Path) -> None:
    class Plain(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.layer(batch).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)
    with pytest.raises(ValueError, match="needs a module that counts env_steps"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[EnvStepCheckpoint(tmp_path, 10)]).fit(Plain(), loader)
