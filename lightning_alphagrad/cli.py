"""The ``lightning-alphagrad`` command: Lightning's CLI with this package's classes selectable by short name.

    lightning-alphagrad fit --config examples/configs/default.yaml
    lightning-alphagrad fit --model PPO --model.env_id CartPole-v1 --optimizer AlphaGrad --optimizer.alpha 196

Importing this module registers the short names: models (``PPO``, ``TD3``, ``DQN``), ``--optimizer AlphaGrad``,
alpha schedules (``--lr_scheduler``) and callbacks (``--trainer.callbacks+=...``). Schedulers given on the command
line are stepped every optimizer step (Lightning's CLI default is every epoch). After ``fit`` the command prints
where the logs and checkpoints are and writes a PNG learning curve next to the CSV logs.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

# Imported so that their classes resolve by short name (--optimizer AlphaGrad, --lr_scheduler CosineAlpha, ...).
from lightning_alphagrad import callbacks, schedules  # noqa: F401
from lightning_alphagrad.optim import AlphaGrad  # noqa: F401
from lightning_alphagrad.plotting import plot_learning_curves, read_curve

__all__ = ["AlphaGradCLI", "config_model_args", "main"]


LAST_WINDOWS = 10  # logged windows of charts/episodic_return in the summary after fit


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
        evaluation = trainer.callback_metrics.get("eval/return_mean")
        if evaluation is not None:
            print(f"\nFinal evaluation: mean return {float(evaluation):.1f}")
        print(f"\nLogs: {trainer.log_dir}")
        checkpoint = trainer.checkpoint_callback
        path = checkpoint and (getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", ""))
        if path:
            print(f"Checkpoint: {path}")
        for logger in trainer.loggers:
            metrics_csv = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
            if metrics_csv is None or not metrics_csv.exists():
                continue
            _, returns = read_curve(metrics_csv, "charts/episodic_return")
            if len(returns):
                last = returns[-LAST_WINDOWS:]
                print(f"Training return, mean of the last {len(last)} logged windows: {last.mean():.1f}")
            try:
                png = plot_learning_curves({"run": metrics_csv}, metrics_csv.with_name("learning_curve.png"),
                                           run_title(trainer.lightning_module, metrics_csv))  # fmt: skip
            except ValueError:  # no episodic return was logged (not an RL run, or no episode finished)
                continue
            print(f"Learning curve: {png}")


def config_model_args(config: str | Path) -> dict[str, Any]:
    """The ``model.init_args`` of a ``lightning-alphagrad fit`` config file, to build the same module in Python:
    ``PPO(**{**config_model_args("examples/configs/default.yaml"), "seed": 3})``."""
    with open(config) as file:
        return dict(yaml.safe_load(file)["model"]["init_args"])


def run_title(module: LightningModule, metrics_csv: Path) -> str:
    """``"PPO on CartPole-v1, 30,000 env steps, seed 0"`` for an RL module, the log directory otherwise."""
    hparams = module.hparams
    if {"env_id", "total_timesteps", "seed"} <= set(hparams):
        return (f"{type(module).__name__} on {hparams['env_id']}, {hparams['total_timesteps']:,} env steps, "
                f"seed {hparams['seed']}")  # fmt: skip
    return f"{metrics_csv.parent.parent.name}/{metrics_csv.parent.name}"


# What jsonargparse wraps around the reason for a bad value: the union members it tried and a dump of the value.
_WRAPPING = (
    "Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>",
    "Given value", "Problem with given class_path",
)  # fmt: skip


def brief_error(message: str) -> str:
    """A configuration error in one line: ``--model.num_envs: Expected a <class 'int'>. Got value: abc``.

    Keeps the option (from jsonargparse's nested ``Parser key "..."`` lines), the reason and the value given, and
    drops the union members tried and the dump of the whole model configuration around them.
    """
    keys, reasons, given = [], [], None
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ")
        key = re.fullmatch(r'Parser key "([^"]+)":\s*(.*)', line)
        if key:
            keys.append(key[1])
            line = key[2]
        if line.startswith("Given value: "):
            given = line.removeprefix("Given value: ")
        if line and not line.startswith(_WRAPPING):
            reasons.append(line)
    text = "; ".join(dict.fromkeys(reasons)) or message.strip()
    if given is not None and "Got value" not in text and not given.startswith(("Namespace(", "NestedArg(")):
        text += f"; got {given}"
    return (f"--{'.'.join(keys)}: " if keys else "") + text


class _DropBanner(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger (nothing a user of this command can act on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_third_party() -> None:
    """Keep third-party messages a user cannot act on off the console: Lightning's logger banner, its deprecation
    warning about torch's pytree API, and its note that checkpoints load with ``weights_only=False`` (ours hold
    counters and replay buffers; they are the user's own files)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropBanner())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)
    warnings.filterwarnings("ignore", message=r".*`weights_only` was not set", category=Warning)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lightning-alphagrad`` console script; a bad option or value exits with status 2 and one
    line saying which option, what value and what it must be."""
    quiet_third_party()
    try:
        AlphaGradCLI(model_class=LightningModule, subclass_mode_model=True, args=args,
                     parser_kwargs={"exit_on_error": False})  # fmt: skip
    except (argparse.ArgumentError, ValueError) as err:  # bad options, or values refused when the classes are built
        print(f"error: {brief_error(str(err))}\n(lightning-alphagrad fit --help lists the options)", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
