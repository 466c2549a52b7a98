"""``OptimizerStepMonitor``: the base of the monitors; measures once per optimizer and logging window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer

from lightning_alphagrad.optim.alphagrad import AlphaGrad

__all__ = ["OptimizerStepMonitor", "group_name", "layer_name"]


def layer_name(param_name: str) -> str:
    """The module a parameter belongs to: ``"actor.0.weight" -> "actor.0"`` (a top-level parameter keeps its name)."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def group_name(group: dict, index: int) -> str:
    """The param group's ``name`` if it has one, else ``pg{index}``."""
    return str(group.get("name", f"pg{index}"))


# Lightning calls a callback's hook only if it is callable. The per-batch hooks a monitor does not implement are None
# on the instance, so a training step does not pay Lightning's dispatch for them (~2 us per hook and callback): three
# callbacks with every hook dispatched add 2.9-4.4 % to a minibatch update of the paper's PPO networks
# (`benchmarks/bench_callbacks.py --cycles 100`, "empty" arm; the three monitors with this: 3.1-4.9 %).
_PER_BATCH_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_zero_grad", "on_train_batch_end",
)  # fmt: skip


class OptimizerStepMonitor(Callback):
    """Calls :meth:`measure` in ``on_before_optimizer_step`` once per optimizer per logging window and logs its result.

    A logging window is ``log_every_n_steps`` training batches; an optimizer is measured at its first step in each
    window, which is the logging step ``(batch + 1) % log_every_n_steps == 0`` for an optimizer stepped every batch,
    and the next step after it for one stepped less often (TD3's delayed actor). The decision depends only on the
    batch count, so under DDP every rank measures on the same steps. Nothing is computed without a logger or with
    ``log_every_n_steps=0``. Metrics go to every logger at the step ``self.log`` uses for that batch, as one record per
    optimizer step with those of the Trainer's other monitors: the last monitor in ``trainer.callbacks`` writes it.

    Keys name the optimizer like ``LearningRateMonitor``: its class name, with ``-1``, ``-2``, ... for further
    optimizers of the same class, unless ``optimizer_names`` (one name per optimizer, in the order of
    ``configure_optimizers``) is given.
    """

    def __init__(self, optimizer_names: Sequence[str] | None = None) -> None:
        self.optimizer_names = list(optimizer_names) if optimizer_names is not None else None
        self._names: dict[int, str] = {}
        self._param_names: dict[int, str] = {}
        self._every = 0
        self._first_step = 0
        self._next_step: dict[int, int] = {}
        self._warned: set[str] = set()
        # The Trainer's last monitor collects the metrics of all its monitors by step and writes them as one record
        # (one CSV row, not one per monitor).
        self._writer: OptimizerStepMonitor = self
        self._records: dict[int, dict[str, float]] = {}
        for hook in _PER_BATCH_HOOKS:
            if getattr(type(self), hook) is getattr(Callback, hook):
                setattr(self, hook, None)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = [getattr(opt, "optimizer", opt) for opt in trainer.optimizers]
        if self.optimizer_names is not None:
            if len(self.optimizer_names) != len(optimizers):
                raise ValueError(
                    f"Invalid optimizer_names: {self.optimizer_names}; expected one name for each of the "
                    f"{len(optimizers)} optimizers"
                )
            names = self.optimizer_names
        else:
            seen: Counter[str] = Counter()
            names = []
            for opt in optimizers:
                cls = type(opt).__name__
                names.append(cls if seen[cls] == 0 else f"{cls}-{seen[cls]}")
                seen[cls] += 1
        self._names = {id(opt): name for opt, name in zip(optimizers, names, strict=True)}
        self._param_names = {id(p): name for name, p in pl_module.named_parameters()}
        self._every = trainer.log_every_n_steps if trainer.loggers else 0
        self._next_step = {}
        self._writer = [cb for cb in trainer.callbacks if isinstance(cb, OptimizerStepMonitor)][-1]
        self._records = {}
        if self._every:
            self._first_step = self._window_end(trainer.fit_loop.epoch_loop._batches_that_stepped)

    def _window_end(self, step: int) -> int:
        """The logging step ``(s + 1) % every == 0`` that closes the window holding step ``step``."""
        return (step // self._every + 1) * self._every - 1

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if not self._every:
            return
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        key = id(optimizer)
        if step >= self._next_step.get(key, self._first_step) and key in self._names:
            self._next_step[key] = self._window_end(step + 1)
            metrics = self.measure(optimizer, self._names[key])
            if metrics:
                self._writer._records.setdefault(step, {}).update(metrics)
        if self._writer is self and self._records:
            self._write(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: pl.Trainer) -> None:
        for step, metrics in self._records.items():
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        self._records = {}

    def is_alphagrad(self, optimizer: Optimizer, name: str) -> bool:
        """Whether ``optimizer`` is AlphaGrad; for monitors of AlphaGrad only, warns once per optimizer when not."""
        if isinstance(optimizer, AlphaGrad):
            return True
        if name not in self._warned:
            self._warned.add(name)
            rank_zero_warn(f"{type(self).__name__}: optimizer {name} is not AlphaGrad; it is not monitored")
        return False

    def param_name(self, param: Tensor, group_index: int, index: int) -> str:
        """The parameter's name in the LightningModule (``pg{group_index}.{index}`` if it is not registered there)."""
        return self._param_names.get(id(param), f"pg{group_index}.{index}")

    def measure(self, optimizer: Optimizer, name: str) -> dict[str, float]:
        """Metrics of ``optimizer`` (keyed ``.../{name}/...``) right before its step; at most one host transfer."""
        raise NotImplementedError
