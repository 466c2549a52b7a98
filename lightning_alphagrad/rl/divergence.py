"""Stopping a diverged off-policy run: a clear error and a checkpoint of the last finite state."""

from __future__ import annotations

import os

import lightning as L

__all__ = ["DivergenceError", "stop_on_divergence"]

LAST_GOOD_CHECKPOINT = "last-good-before-divergence.ckpt"


class DivergenceError(RuntimeError):
    """Raised when an off-policy run diverges (non-finite action, loss or gradient, or a critic beyond ``max_abs_q``).

    ``checkpoint_path`` is the checkpoint of the last finite state, saved just before raising.
    """

    def __init__(self, message: str, checkpoint_path: str) -> None:
        super().__init__(f"{message}; the last good state is saved in {checkpoint_path}")
        self.checkpoint_path = checkpoint_path


def stop_on_divergence(module: L.LightningModule, local_reason: str | None) -> None:
    """Raise :class:`DivergenceError` on every rank if any rank reports a ``local_reason`` (collective under DDP).

    Before raising, the Trainer saves a checkpoint to ``<default_root_dir>/last-good-before-divergence.ckpt``. The
    caller must only report after skipping the offending update, so that the saved parameters are all finite.
    """
    trainer = module.trainer
    diverged = trainer.strategy.reduce_boolean_decision(local_reason is not None, all=False)
    if not diverged:
        return
    path = os.path.join(trainer.default_root_dir, LAST_GOOD_CHECKPOINT)
    trainer.save_checkpoint(path)
    reason = local_reason or "another rank diverged"
    step = int(getattr(module, "env_steps", trainer.global_step))
    raise DivergenceError(f"Training diverged at env step {step} on rank {trainer.global_rank}: {reason}", path)
