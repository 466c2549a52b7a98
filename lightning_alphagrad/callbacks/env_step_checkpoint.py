"""``EnvStepCheckpoint``: a resumable checkpoint of an RL run every n env steps, written so a kill never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

__all__ = ["EnvStepCheckpoint"]


class EnvStepCheckpoint(Callback):
    """Saves ``dirpath/filename`` each time the module's ``env_steps`` crosses a multiple of ``every_n_env_steps``.

    The file is the Trainer's full checkpoint (networks, optimizers, schedulers, normalizers, step counters and, for
    TD3/DQN with ``save_replay_buffer=True``, the replay buffer), written to a temporary file and renamed over the
    previous one, so a process killed while saving leaves the last complete checkpoint. Resume a killed run with
    ``trainer.fit(model, ckpt_path=dirpath/filename)`` (CLI: ``--ckpt_path``); its envs restart (see ``RLModule``).
    """

    def __init__(self, dirpath: str | Path, every_n_env_steps: int, filename: str = "last.ckpt") -> None:
        if isinstance(every_n_env_steps, bool) or not isinstance(every_n_env_steps, int) or every_n_env_steps <= 0:
            raise ValueError(f"Invalid every_n_env_steps: {every_n_env_steps!r}; it must be a positive int")
        if not filename or Path(filename).name != filename:
            raise ValueError(f"Invalid filename: {filename!r}; it must be a plain file name")
        self.path = Path(dirpath) / filename
        self.every_n_env_steps = every_n_env_steps
        self._saved_at = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not hasattr(pl_module, "env_steps"):
            raise ValueError(
                "EnvStepCheckpoint needs a module that counts env_steps (PPO, TD3, DQN); "
                f"got {type(pl_module).__name__}"
            )
        self._saved_at = pl_module.env_steps  # after a restore: the next save is at the next multiple

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        env_steps = pl_module.env_steps
        if env_steps // self.every_n_env_steps > self._saved_at // self.every_n_env_steps:
            self.save(trainer)
            self._saved_at = env_steps

    def save(self, trainer: pl.Trainer) -> None:
        """Write the checkpoint (a collective call: every rank takes part, rank 0 writes the file)."""
        partial = self.path.with_name(self.path.name + ".partial")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("EnvStepCheckpoint.save")
