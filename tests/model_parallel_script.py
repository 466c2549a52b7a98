"""Run by test_sharded.py: a model sharded with FSDP2 by Lightning's ModelParallelStrategy on 2 CPU processes,
AlphaGrad from ``alphagrad_config`` with the adaptive alpha (``SaturationTargetAlpha``), the monitors on.

``python tests/model_parallel_script.py OUT straight`` fits 2 epochs; ``... OUT resume`` fits 1 epoch, saves a
checkpoint and fits the second epoch from it. Each rank writes ``OUT/<mode>-rank{r}.json``. The strategy re-runs
this file for rank 1, so it must be a script of its own.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, TensorDataset

from lightning_alphagrad import (
    AlphaGrad,
    SaturationTargetAlpha,
    alphagrad_config,
    normalized_tanh_update,
    pause_for_gloo_at_exit,
)
from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor


class Blocks(L.LightningModule):
    """Two residual blocks (Linear, Tanh, LayerNorm, Linear) and a head, sharded block by block as Lightning documents
    FSDP2: 12 -> 3 features, 1,359 parameters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(12, 25), nn.Tanh(), nn.LayerNorm(25), nn.Linear(25, 12)) for _ in range(2)
        )
        self.head = nn.Linear(12, 3)

    def configure_model(self) -> None:
        pause_for_gloo_at_exit()
        mesh = self.device_mesh["data_parallel"]
        for block in self.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(self, mesh=mesh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> Any:
        adaptive = functools.partial(SaturationTargetAlpha, target=0.1, every=2)
        return alphagrad_config(self, lr=3e-2, alpha=2.0, size_aware=True, momentum=0.9, weight_decay=0.01,
                                total_steps=8, lr_schedule="cosine", warmup_steps=2,
                                alpha_schedule=adaptive)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(64, 12, generator=generator)
        return DataLoader(TensorDataset(x, torch.sin(x[:, :3] * 2)), batch_size=8)


class Record(Logger):
    """Keeps every logged record on every rank (Lightning's file loggers write on rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "record"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append({**metrics, "step": step})


class FullGradients(L.Callback):
    """The reference for the monitors, from the gathered full gradients before each optimizer step: the total norm
    and the saturated fraction of AlphaGrad's update (its groups' alpha and eps, size-aware, threshold 0.99)."""

    def __init__(self) -> None:
        self.totals: list[float] = []
        self.saturation: list[float] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, module: L.LightningModule, optimizer: Any) -> None:
        squares, saturated, size = [], 0, 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                grad = p.grad.full_tensor()
                squares.append(grad.double().square().sum().item())
                u = normalized_tanh_update(grad, group["alpha"], group["eps"], size_aware=True)
                saturated += int((u.abs() >= 0.99).sum())
                size += grad.numel()
        self.totals.append(math.sqrt(sum(squares)))
        self.saturation.append(saturated / size)


def trainer(epochs: int, logger: Logger, callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=2, strategy=ModelParallelStrategy(data_parallel_size=2,
                     tensor_parallel_size=1), max_epochs=epochs, logger=logger, log_every_n_steps=1,
                     callbacks=[GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor(), *callbacks],
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip


def main(out: Path, mode: str) -> None:
    logger, reference = Record(), FullGradients()
    model = Blocks()
    if mode == "straight":
        fit = trainer(2, logger, [reference])
        fit.fit(model)
    else:
        first = trainer(1, logger, [reference])
        first.fit(model)
        checkpoint = out / "checkpoint"
        first.save_checkpoint(checkpoint)
        model = Blocks()
        fit = trainer(2, logger, [reference])
        fit.fit(model, ckpt_path=checkpoint)
    optimizer = fit.optimizers[0]
    assert isinstance(optimizer, AlphaGrad)
    report = {
        "params": [p.full_tensor().flatten().tolist() for p in model.parameters()],
        "records": logger.records,
        "full_norms": reference.totals,
        "full_saturation": reference.saturation,
        "groups": {g["name"]: g["param_names"] for g in optimizer.param_groups},
        "lr": optimizer.param_groups[0]["lr"],
        "global_step": fit.global_step,
    }
    (out / f"{mode}-rank{fit.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
