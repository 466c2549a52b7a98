"""``RLProgressBar``: Lightning's progress bar with the environment-step count and the latest episodic return."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar

__all__ = ["RLProgressBar"]


class RLProgressBar(TQDMProgressBar):
    """Shows ``env_steps`` and the latest ``charts/episodic_return`` (as ``return``) beside Lightning's metrics.

    The RL modules publish both in ``trainer.callback_metrics`` every iteration; the bar's own time estimate counts
    training steps (iterations), so its remaining time is the run's ETA.
    """

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float | dict]:
        metrics = super().get_metrics(trainer, pl_module)
        shown = trainer.callback_metrics
        if "env_steps" in shown:
            metrics["env_steps"] = str(int(shown["env_steps"]))
        if "charts/episodic_return" in shown:
            metrics["return"] = f"{float(shown['charts/episodic_return']):.1f}"
        return metrics
