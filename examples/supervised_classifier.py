"""AlphaGrad in an ordinary supervised LightningModule, side by side with Adam.

A 3-class spiral (generated, no download) classified by an MLP 2-128-128-3. Three optimizers are trained from the
same initialization and data order: AlphaGrad with a fixed alpha, AlphaGrad with the size-aware alpha
(``alpha * sqrt(numel)`` per tensor), and Adam. The script prints each one's validation accuracy and loss.

    python examples/supervised_classifier.py            # ~1 minute on 2 CPU cores
    python examples/supervised_classifier.py --epochs 2 # smoke scale
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_alphagrad import alphagrad_config
from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor

OPTIMIZERS = ("alphagrad", "alphagrad-size-aware", "adam")


def make_spirals(points_per_class: int, classes: int = 3, noise: float = 0.2, seed: int = 0) -> TensorDataset:
    """``classes`` interleaved spiral arms in 2-D: inputs (N, 2) float32, labels (N,) int64."""
    gen = torch.Generator().manual_seed(seed)
    radius = torch.linspace(0.05, 1.0, points_per_class)
    xs, ys = [], []
    for label in range(classes):
        angle = torch.linspace(0.0, 3.0 * math.pi, points_per_class) + 2 * math.pi * label / classes
        angle = angle + noise * torch.randn(points_per_class, generator=gen)
        xs.append(torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1))
        ys.append(torch.full((points_per_class,), label))
    return TensorDataset(torch.cat(xs), torch.cat(ys))


class SpiralClassifier(L.LightningModule):
    """MLP 2-128-128-3 (ReLU) trained with cross-entropy; ``optimizer`` is one of :data:`OPTIMIZERS`."""

    def __init__(self, optimizer: str = "alphagrad", lr: float = 3e-3, alpha: float = 10.0,
                 size_aware_alpha: float = 1.0) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Invalid optimizer: {optimizer!r}; it must be one of {OPTIMIZERS}")
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 3))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y))
        self.log("val/accuracy", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr)
        size_aware = hp.optimizer == "alphagrad-size-aware"
        return alphagrad_config(self, lr=hp.lr, alpha=hp.size_aware_alpha if size_aware else hp.alpha,
                                momentum=0.9, size_aware=size_aware, lr_schedule="cosine")


def train(optimizer: str, epochs: int, seed: int = 0, default_root_dir: str = "runs/supervised") -> dict[str, float]:
    """Train one classifier; returns the final validation metrics."""
    L.seed_everything(seed, verbose=False)
    train_data, val_data = make_spirals(1000, seed=seed), make_spirals(300, seed=seed + 1)
    model = SpiralClassifier(optimizer=optimizer)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, default_root_dir=default_root_dir, deterministic=True,
        logger=L.pytorch.loggers.CSVLogger(default_root_dir, name=optimizer), enable_checkpointing=False,
        log_every_n_steps=10,
        enable_progress_bar=False, enable_model_summary=False, callbacks=watch_callbacks(optimizer),
    )
    trainer.fit(
        model,
        DataLoader(train_data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        DataLoader(val_data, batch_size=900),
    )
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def watch_callbacks(optimizer: str) -> list[L.Callback]:
    """The monitoring callbacks of a run (they log to its CSV file): gradient norms for every optimizer, tanh
    saturation and alpha for AlphaGrad."""
    return [GradNormMonitor(), *((TanhSaturationMonitor(), AlphaMonitor()) if optimizer != "adam" else ())]


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per optimizer (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/supervised", help="log directory")
    args = parser.parse_args(argv)
    if args.epochs <= 0:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    torch.set_num_threads(1)
    results = {name: train(name, args.epochs, args.seed, args.out) for name in OPTIMIZERS}
    print(f"{'optimizer':<24}{'val accuracy':>14}{'val loss':>10}")
    for name, metrics in results.items():
        print(f"{name:<24}{metrics['val/accuracy']:>14.3f}{metrics['val/loss']:>10.3f}")
    print(f"CSV logs under {args.out}/")
    return results


if __name__ == "__main__":
    main()
