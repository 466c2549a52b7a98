"""Alpha schedules: closed forms, validation, state dicts, the adaptive feedback loop and Lightning integration."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from helpers import quiet_trainer
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, TensorDataset

from lightning_alphagrad import AlphaGrad, alphagrad_config
from lightning_alphagrad.schedules import (
    ChainedAlpha,
    ConstantAlpha,
    CosineAlpha,
    ExponentialAlpha,
    LinearAlpha,
    MultiStepAlpha,
    SaturationTargetAlpha,
    SequentialAlpha,
    StepAlpha,
)

ALPHA0 = 8.0


def make_optimizer(alpha: float = ALPHA0, lr: float = 0.1) -> AlphaGrad:
    torch.manual_seed(0)
    return AlphaGrad([nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))], lr=lr, alpha=alpha)


def alphas_over(scheduler: LRScheduler, steps: int) -> list[float]:
    """Alpha used at steps 0..steps-1, stepping the optimizer (zero gradients) and then the scheduler."""
    optimizer = scheduler.optimizer
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["alpha"])
        for p in optimizer.param_groups[0]["params"]:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        scheduler.step()
    return used


def cosine_reference(t: int) -> float:
    warmup, total, start, end = 4, 14, 0.25, 0.5
    if t < warmup:
        return ALPHA0 * (start + (1 - start) * t / warmup)
    progress = min(1.0, (t - warmup) / (total - warmup))
    return ALPHA0 * (end + (1 - end) * (1 + math.cos(math.pi * progress)) / 2)


SCHEDULES: dict[str, tuple[Callable[[AlphaGrad], LRScheduler], Callable[[int], float]]] = {
    "constant": (lambda o: ConstantAlpha(o, factor=0.5), lambda t: 4.0),
    "linear": (lambda o: LinearAlpha(o, 0.5, 2.0, total_iters=6), lambda t: ALPHA0 * (0.5 + 1.5 * min(t, 6) / 6)),
    "cosine": (
        lambda o: CosineAlpha(o, 14, end_factor=0.5, warmup_iters=4, warmup_start_factor=0.25),
        cosine_reference,
    ),
    "exponential": (lambda o: ExponentialAlpha(o, 1.5, max_alpha=50.0), lambda t: min(50.0, ALPHA0 * 1.5**t)),
    "step": (lambda o: StepAlpha(o, step_size=3, gamma=0.5), lambda t: ALPHA0 * 0.5 ** (t // 3)),
    "multistep": (lambda o: MultiStepAlpha(o, [2, 5], gamma=3.0), lambda t: ALPHA0 * 3.0 ** ((t >= 2) + (t >= 5))),
    "sequential": (
        lambda o: SequentialAlpha(o, [LinearAlpha(o, 0.5, 1.0, 4), StepAlpha(o, 2, 0.5)], milestones=[5]),
        lambda t: ALPHA0 * (0.5 + 0.5 * min(t, 4) / 4) if t < 5 else ALPHA0 * 0.5 ** ((t - 5) // 2),
    ),
    "chained": (
        lambda o: ChainedAlpha(o, [LinearAlpha(o, 0.5, 1.0, 4), MultiStepAlpha(o, [6], 0.1)]),
        lambda t: ALPHA0 * (0.5 + 0.5 * min(t, 4) / 4) * (0.1 if t >= 6 else 1.0),
    ),
}


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_fixed_schedules_follow_closed_form_and_keep_lr(kind: str) -> None:
    make, reference = SCHEDULES[kind]
    optimizer = make_optimizer()
    scheduler = make(optimizer)
    used = alphas_over(scheduler, 18)
    assert used == pytest.approx([reference(t) for t in range(18)], rel=1e-12)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1]
    assert scheduler.get_last_lr() == [0.1]
    assert scheduler.get_last_alpha() == [optimizer.param_groups[0]["alpha"]]


@pytest.mark.parametrize("kind", list(SCHEDULES))
def test_state_dict_resumes_same_sequence(kind: str) -> None:
    make, _ = SCHEDULES[kind]
    full = alphas_over(make(make_optimizer()), 16)
    optimizer = make_optimizer()
    scheduler = make(optimizer)
    first = alphas_over(scheduler, 7)
    optimizer_state, scheduler_state = optimizer.state_dict(), scheduler.state_dict()
    torch.save(scheduler_state, "/dev/null")  # state holds no optimizer reference, it serializes
    resumed_optimizer = make_optimizer(alpha=123.0)
    resumed = make(resumed_optimizer)
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(scheduler_state)
    assert first + alphas_over(resumed, 9) == full


def test_alpha_schedule_chained_with_lr_schedule_by_factory() -> None:
    model = nn.Linear(3, 2)
    config = alphagrad_config(
        model,
        lr=1.0,
        alpha=ALPHA0,
        total_steps=10,
        lr_schedule="linear",
        alpha_schedule=functools.partial(StepAlpha, step_size=3, gamma=0.5),
    )
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs, alphas = [], []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        alphas.append(optimizer.param_groups[0]["alpha"])
        optimizer.step()
        scheduler.step()
    assert alphas == [ALPHA0 * 0.5 ** (t // 3) for t in range(12)]
    assert lrs == pytest.approx([max(0.0, 1.0 - t / 10) for t in range(12)])


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda o: ConstantAlpha(o, factor=0.0), "factor"),
        (lambda o: LinearAlpha(o, start_factor=-1.0), "start_factor"),
        (lambda o: LinearAlpha(o, end_factor=math.inf), "end_factor"),
        (lambda o: LinearAlpha(o, total_iters=0), "total_iters"),
        (lambda o: CosineAlpha(o, total_iters=5, warmup_iters=5), "total_iters"),
        (lambda o: CosineAlpha(o, total_iters=5, warmup_iters=-1), "warmup_iters"),
        (lambda o: ExponentialAlpha(o, gamma=0.0), "gamma"),
        (lambda o: ExponentialAlpha(o, gamma=0.9, min_alpha=2.0, max_alpha=1.0), "max_alpha"),
        (lambda o: StepAlpha(o, step_size=0), "step_size"),
        (lambda o: MultiStepAlpha(o, [3, 2]), "milestones"),
        (lambda o: SequentialAlpha(o, [ConstantAlpha(o)], milestones=[2]), "milestones"),
        (lambda o: SequentialAlpha(o, [], milestones=[]), "schedulers"),
        (lambda o: ChainedAlpha(o, [SaturationTargetAlpha(o)]), "schedulers"),
        (lambda o: SaturationTargetAlpha(o, target=1.0), "target"),
        (lambda o: SaturationTargetAlpha(o, threshold=0.0), "threshold"),
        (lambda o: SaturationTargetAlpha(o, every=0), "every"),
        (lambda o: SaturationTargetAlpha(o, gain=-1.0), "gain"),
        (lambda o: SaturationTargetAlpha(o, max_factor=1.0), "max_factor"),
        (lambda o: SaturationTargetAlpha(o, min_alpha=-1.0), "min_alpha"),
        (lambda o: SaturationTargetAlpha(o, min_alpha=10.0, max_alpha=1.0), "max_alpha"),
        (lambda o: ConstantAlpha(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)), "optimizer"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(make: Callable[[AlphaGrad], Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        make(make_optimizer())


def gaussian_saturation(alpha: float, n: int, threshold: float) -> float:
    """Expected saturated fraction for i.i.d. Gaussian gradients of n elements: ||g|| ~ sqrt(n) sigma, so
    |tanh(alpha g / ||g||)| >= threshold  <=>  |z| >= atanh(threshold) sqrt(n) / alpha with z ~ N(0, 1)."""
    return math.erfc(math.atanh(threshold) * math.sqrt(n) / alpha / math.sqrt(2))


def test_adaptive_alpha_reaches_target_saturation_on_synthetic_gradients() -> None:
    """Gaussian gradients for a 64x64 matrix (group 0, alpha far too small) and a 64-vector (group 1, far too
    steep), target 10 %, one update every 10 steps: after 250 steps the matrix's alpha stays where the expected
    saturation is 10 % +- 1 %; the bias (64 components, a noisy measurement) averages 10 % +- 2 % over its last
    10 updates."""
    generator = torch.Generator().manual_seed(0)
    weight, bias = nn.Parameter(torch.zeros(64, 64)), nn.Parameter(torch.zeros(64))
    optimizer = AlphaGrad([{"params": [weight], "alpha": 1.0}, {"params": [bias], "alpha": 500.0}], lr=0.0)
    scheduler = SaturationTargetAlpha(optimizer, target=0.1, threshold=0.99, every=10, max_factor=1.25)
    history = [scheduler.get_last_alpha()]
    assert history == [[1.0, 500.0]]
    for step in range(1, 401):
        weight.grad = torch.randn(64, 64, generator=generator) * 1e-3
        bias.grad = torch.randn(64, generator=generator) * 1e3
        optimizer.step()
        scheduler.step()
        alphas = scheduler.get_last_alpha()
        if step % 10 != 0:
            assert alphas == history[-1]  # alpha only moves every 10 steps
        else:
            for new, old in zip(alphas, history[-1], strict=True):
                assert 1 / 1.25 - 1e-12 <= new / old <= 1.25 + 1e-12  # bounded rate
            if step >= 250:
                assert abs(gaussian_saturation(alphas[0], 4096, 0.99) - 0.1) < 0.01
        history.append(alphas)
    last_updates = [alphas for step, alphas in enumerate(history) if step % 10 == 0][-10:]
    bias_saturation = sum(gaussian_saturation(alphas[1], 64, 0.99) for alphas in last_updates) / 10
    assert abs(bias_saturation - 0.1) < 0.02
    assert abs(scheduler.last_saturation[0] - 0.1) < 0.01  # measured on 4096 components
    # the matrix needs alpha ~ atanh(0.99) * 64 / 1.645 ~ 103, reached from 1.0 at <= 1.25x per update
    assert history[-1][0] == pytest.approx(103.0, rel=0.05)


def test_adaptive_alpha_respects_bounds_and_skips_nonfinite_steps() -> None:
    weight = nn.Parameter(torch.zeros(16, 16))
    optimizer = AlphaGrad([weight], lr=0.0, alpha=1.0)
    scheduler = SaturationTargetAlpha(optimizer, target=0.5, every=1, max_factor=2.0, max_alpha=3.0)
    for _ in range(5):
        weight.grad = torch.randn(16, 16)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_alpha() == [3.0]
    weight.grad = torch.full((16, 16), math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.step()  # AlphaGrad skips the step
    scheduler.step()
    assert scheduler.get_last_alpha() == [3.0]
    weight.grad = None
    with pytest.warns(UserWarning, match="found no gradients"):
        scheduler.step()  # no gradient: alpha unchanged
    assert scheduler.get_last_alpha() == [3.0]


class Regression(pl.LightningModule):
    """Linear regression 5 -> 3 with one AlphaGrad; records the (lr, alpha) every optimizer step uses."""

    def __init__(self, schedule: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
        self.schedule = schedule
        self.used: list[tuple[float, float]] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return ((self.net(x) - y) ** 2).mean()

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.used.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["alpha"]))

    def configure_optimizers(self) -> Any:
        if self.schedule == "factory":
            adaptive = functools.partial(SaturationTargetAlpha, target=0.3, every=3, gain=0.5)
            return alphagrad_config(
                self, lr=0.05, alpha=2.0, total_steps=16, lr_schedule="cosine", alpha_schedule=adaptive
            )
        optimizer = AlphaGrad(self.parameters(), lr=0.05, alpha=2.0, momentum=0.9)
        scheduler = SequentialAlpha(optimizer, [LinearAlpha(optimizer, 1.0, 4.0, 5), CosineAlpha(optimizer, 6)], [6])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def fit(module: Regression, root: Path, epochs: int, ckpt_path: str | None = None) -> pl.Trainer:
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(64, 5, generator=generator), torch.randn(64, 3, generator=generator))
    trainer = quiet_trainer(root, max_epochs=epochs, enable_checkpointing=True)
    trainer.fit(module, DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the resumed run logs into a directory of its own
@pytest.mark.parametrize("schedule", ["factory", "sequential"])
def test_lightning_resume_continues_the_same_alpha_sequence(tmp_path: Path, schedule: str) -> None:
    torch.set_num_threads(1)
    straight = Regression(schedule)
    fit(straight, tmp_path / "straight", epochs=2)
    assert len(straight.used) == 16
    first = Regression(schedule)
    trainer = fit(first, tmp_path / "first", epochs=1)
    checkpoint = trainer.checkpoint_callback.best_model_path
    resumed = Regression(schedule)
    fit(resumed, tmp_path / "resumed", epochs=2, ckpt_path=checkpoint)
    assert first.used + resumed.used == straight.used
    alphas = [alpha for _, alpha in straight.used]
    if schedule == "sequential":
        expected = [2.0 * (1 + 3 * min(t, 5) / 5) for t in range(6)]
        expected += [
            2.0 * (0.1 + 0.9 * (1 + math.cos(math.pi * (t - 6) / 6)) / 2) if t < 12 else 0.2 for t in range(6, 16)
        ]
        assert alphas == pytest.approx(expected, rel=1e-12)
    else:
        assert len(set(alphas)) > 1  # adapted every 3 steps
        assert [lr for lr, _ in straight.used] == pytest.approx(
            [0.05 * (1 + math.cos(math.pi * t / 16)) / 2 for t in range(16)]
        )
