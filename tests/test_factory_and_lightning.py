"""``alphagrad_config`` and AlphaGrad inside a Lightning ``Trainer`` (fp32, bf16-mixed, 16-mixed)."""

from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import pytest
import torch
from helpers import quiet_trainer
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, TensorDataset

from lightning_alphagrad import AlphaGrad, LRSchedule, alphagrad_config, weight_decay_groups


def regression_data(n: int = 256, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    w = torch.randn(8, 1, generator=gen)
    return TensorDataset(x, torch.tanh(x @ w) + 0.05 * torch.randn(n, 1, generator=gen))


class Regressor(L.LightningModule):
    def __init__(self, alpha_schedule=None, lr_schedule: str = "cosine", **opt_kwargs) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 1))
        self.alpha_schedule = alpha_schedule
        self.lr_schedule = lr_schedule
        self.opt_kwargs = opt_kwargs

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        kwargs = dict(lr=0.02, alpha=5.0, momentum=0.9, weight_decay=0.01) | self.opt_kwargs
        return alphagrad_config(self, lr_schedule=self.lr_schedule, warmup_steps=5,
                                alpha_schedule=self.alpha_schedule, **kwargs)


def full_loss(model: Regressor, data: TensorDataset) -> float:
    x, y = data.tensors
    with torch.no_grad():
        return float(nn.functional.mse_loss(model.net(x.float()), y))


def fit(model: Regressor, precision: str = "32-true", max_epochs: int = 8, **trainer_kwargs) -> L.Trainer:
    trainer = quiet_trainer(max_epochs=max_epochs, precision=precision, **trainer_kwargs)
    trainer.fit(model, DataLoader(regression_data(), batch_size=32, shuffle=False))
    return trainer


# "16-mixed" on CPU falls back to bf16 in Lightning, so bf16-mixed is the AMP mode that runs here.
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_trainer_fit_lowers_the_loss(precision):
    torch.manual_seed(0)
    model = Regressor()
    data = regression_data()
    before = full_loss(model, data)
    trainer = fit(model, precision=precision)
    after = full_loss(model, data)
    assert after < 0.5 * before, (before, after)
    assert isinstance(trainer.optimizers[0], AlphaGrad)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_weight_decay_groups_exclude_biases_and_norms():
    model = Regressor()
    groups = weight_decay_groups(model, 0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["decay"]["param_names"] == ["net.0.weight", "net.3.weight"]
    assert by_name["no_decay"]["param_names"] == ["net.0.bias", "net.1.weight", "net.1.bias", "net.3.bias"]
    assert by_name["decay"]["weight_decay"] == 0.1 and by_name["no_decay"]["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    for g in groups:
        assert all(p is named[n] for p, n in zip(g["params"], g["param_names"], strict=True))


def test_factory_accepts_params_and_groups():
    model = Regressor()
    cfg = alphagrad_config(model.parameters(), lr=0.1, alpha=3.0)
    assert set(cfg) == {"optimizer"}
    assert len(cfg["optimizer"].param_groups) == 1
    cfg = alphagrad_config([{"params": model.net[0].parameters(), "alpha": 9.0},
                            {"params": model.net[3].parameters()}], lr=0.1, alpha=3.0)
    assert [g["alpha"] for g in cfg["optimizer"].param_groups] == [9.0, 3.0]
    with pytest.raises(TypeError, match="model_or_params"):
        alphagrad_config([1, 2], lr=0.1)
    with pytest.raises(ValueError, match="model_or_params"):
        alphagrad_config([], lr=0.1)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_lr_schedule_matches_formula(kind):
    total, warmup, floor = 50, 10, 0.1
    schedule = LRSchedule(kind, total, warmup, floor)
    for step in range(0, 60):
        if step < warmup:
            expected = (step + 1) / (warmup + 1)
        else:
            t = min(1.0, (step - warmup) / (total - warmup))
            shape = 1 - t if kind == "linear" else (1 + math.cos(math.pi * t)) / 2
            expected = floor + (1 - floor) * shape
        assert schedule(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(kind="square"), "lr_schedule"),
        (dict(kind="cosine", total_steps=None), "total_steps"),
        (dict(kind="linear", total_steps=5, warmup_steps=5), "total_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(min_lr_ratio=1.5), "min_lr_ratio"),
    ],
)
def test_lr_schedule_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LRSchedule(**kwargs)


class DoublingAlpha(LRScheduler):
    """Test schedule: alpha = alpha0 * 2**k after k steps; lrs untouched."""

    def __init__(self, optimizer):
        self.alpha0 = [g["alpha"] for g in optimizer.param_groups]
        super().__init__(optimizer)

    def get_lr(self):
        for group, a0 in zip(self.optimizer.param_groups, self.alpha0, strict=True):
            group["alpha"] = a0 * 2.0 ** self.last_epoch
        return [group["lr"] for group in self.optimizer.param_groups]


def test_lr_and_alpha_schedules_are_stepped_per_optimizer_step():
    torch.manual_seed(0)
    model = Regressor(alpha_schedule=DoublingAlpha, lr_schedule="linear", alpha=1.0)
    trainer = fit(model, max_epochs=1, max_steps=6)
    opt = trainer.optimizers[0]
    assert [g["alpha"] for g in opt.param_groups] == [64.0, 64.0]
    total = trainer.estimated_stepping_batches
    expected_factor = LRSchedule("linear", total, 5)(6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 * expected_factor)
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and config.name == "alphagrad"


def test_pause_for_gloo_at_exit_pauses_once_per_process_and_only_under_gloo() -> None:
    script = """
import atexit, torch.distributed as dist
from lightning_alphagrad import distributed, pause_for_gloo_at_exit
pauses = []
distributed.time.sleep = pauses.append  # record instead of sleeping
pause_for_gloo_at_exit()  # no process group: nothing to wait for
atexit._run_exitfuncs()
print(len(pauses))
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
pause_for_gloo_at_exit()
pause_for_gloo_at_exit()  # a second rank setup (a second fit) in the same process
atexit._run_exitfuncs()
print(pauses)
dist.destroy_process_group()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:2] == ["0", "[0.5]"]
