"""``StopAtEnvSteps``: ends training once an RL module has taken a given number of env steps."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

__all__ = ["StopAtEnvSteps"]


class StopAtEnvSteps(Callback):
    """Stops training at the end of the batch in which the module's ``env_steps`` reaches ``env_steps``.

    Whatever depends on ``total_timesteps`` (DQN's exploration schedule, PPO's learning-rate annealing) keeps its
    course: e.g. the first 250k env steps of a 500k-step DQN schedule, or one session of a run split into several
    (save a checkpoint, resume later). ``env_steps`` counts all ranks' envs and is the same on every rank, so all ranks
    stop at the same batch.
    """

    def __init__(self, env_steps: int) -> None:
        if isinstance(env_steps, bool) or not isinstance(env_steps, int) or env_steps <= 0:
            raise ValueError(f"Invalid env_steps: {env_steps!r}; it must be a positive int")
        self.env_steps = env_steps

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not hasattr(pl_module, "env_steps"):
            raise ValueError(
                f"StopAtEnvSteps needs a module that counts env_steps (PPO, TD3, DQN); got {type(pl_module).__name__}"
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if pl_module.env_steps >= self.env_steps:
            trainer.should_stop = True
