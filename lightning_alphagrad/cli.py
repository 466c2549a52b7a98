"""The ``lightning-alphagrad`` command: Lightning's CLI with this package's classes selectable by short name.

    lightning-alphagrad fit --config examples/configs/default.yaml
    lightning-alphagrad fit --model PPO --model.env_id CartPole-v1 --optimizer AlphaGrad --optimizer.alpha 196

Importing this module registers the short names: models (``PPO``, ``TD3``, ``DQN``), ``--optimizer AlphaGrad``,
alpha schedules (``--lr_scheduler``) and callbacks (``--trainer.callbacks+=...``). Schedulers given on the command
line are stepped every optimizer step (Lightning's CLI default is every epoch). After ``fit`` the command prints
where the logs and checkpoints are and writes a PNG learning curve next to the CSV logs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

# Imported so that their classes resolve by short name (--optimizer AlphaGrad, --lr_scheduler CosineAlpha, ...).
from lightning_alphagrad import callbacks, schedules  # noqa: F401
from lightning_alphagrad.optim import AlphaGrad  # noqa: F401
from lightning_alphagrad.plotting import plot_learning_curve

__all__ = ["AlphaGradCLI", "main"]


class AlphaGradCLI(LightningCLI):
    """``LightningCLI`` that steps ``--lr_scheduler`` per optimizer step and reports where a run's outputs are.

    Its progress bar (:class:`~lightning_alphagrad.callbacks.RLProgressBar`) shows env steps, the latest episodic
    return and the remaining time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        chosen = config.get("callbacks") or []
        chosen = chosen if isinstance(chosen, list) else [chosen]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in chosen):
            kwargs.setdefault("callbacks", [*chosen, callbacks.RLProgressBar()])
        return super().instantiate_trainer(**kwargs)

    @staticmethod
    def configure_optimizers(
        lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRScheduler | None = None
    ) -> Any:
        if lr_scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": lr_scheduler,
                "interval": "step",
                "frequency": 1,
                "name": type(lr_scheduler).__name__,
            },
        }

    def after_fit(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        print(f"\nLogs: {trainer.log_dir}")
        checkpoint = trainer.checkpoint_callback
        path = checkpoint and (getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", ""))
        if path:
            print(f"Checkpoint: {path}")
        for logger in trainer.loggers:
            metrics_csv = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
            if metrics_csv is None or not metrics_csv.exists():
                continue
            try:
                png = plot_learning_curve(metrics_csv, metrics_csv.with_name("learning_curve.png"))
            except ValueError:  # no episodic return was logged (not an RL run, or no episode finished)
                continue
            print(f"Learning curve: {png}")


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lightning-alphagrad`` console script."""
    try:
        AlphaGradCLI(model_class=LightningModule, subclass_mode_model=True, args=args)
    except ValueError as err:  # invalid values found when the classes are built (e.g. an unknown env id)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
