"""Cost of the three monitoring callbacks on the paper's PPO network, measured side by side.

The PPO networks of the paper (actor 17-64-64-6 tanh with a state-independent log-std, critic 17-64-64-1 tanh)
train on synthetic minibatches of 64 with the PPO clipped loss and AlphaGrad (alpha 196, momentum 0.9, eps 1e-5).
Two Lightning runs alternate round by round: without callbacks, and with GradNormMonitor + TanhSaturationMonitor +
AlphaMonitor; both log the loss and write a CSV log every ``log_every_n_steps`` steps. The wall time of a training
step is the time between consecutive ``on_train_batch_start`` calls (data, forward, backward, optimizer, callbacks,
logging); the first steps of each run are left out as warm-up. Prints per-round ratios, the ratios of the total CPU
and wall times, and the ratio of the typical step (lower quartile of the per-step wall times of logging and of other
steps, weighted 1 : log_every - 1), which other processes on a shared machine disturb least.

    python benchmarks/bench_callbacks.py --rounds 20 --steps 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 17, 6, 64, 64


def mlp(out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(OBS_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, out_dim)
    )


class PPONetworks(pl.LightningModule):
    """Actor and critic of the paper's PPO, one clipped-surrogate + value-loss step per minibatch."""

    def __init__(self, clip_coef: float = 0.2, vf_coef: float = 0.5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.actor_mean = mlp(ACT_DIM)
        self.actor_logstd = nn.Parameter(torch.zeros(1, ACT_DIM))
        self.critic = mlp(1)
        self.clip_coef, self.vf_coef = clip_coef, vf_coef

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        mean = self.actor_mean(batch["obs"])
        dist = torch.distributions.Normal(mean, self.actor_logstd.expand_as(mean).exp())
        ratio = (dist.log_prob(batch["actions"]).sum(-1) - batch["logprobs"]).exp()
        advantages = batch["advantages"]
        policy_loss = torch.max(
            -advantages * ratio, -advantages * ratio.clamp(1 - self.clip_coef, 1 + self.clip_coef)
        ).mean()
        value_loss = 0.5 * (self.critic(batch["obs"]).squeeze(-1) - batch["returns"]).pow(2).mean()
        loss = policy_loss + self.vf_coef * value_loss
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        return AlphaGrad(self.parameters(), lr=3e-4, alpha=196.0, momentum=0.9, eps=1e-5)


class SyntheticRollouts(Dataset):
    """``length`` fixed random minibatches of 64 transitions (batching is done here, the loader passes them on)."""

    def __init__(self, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            {
                "obs": torch.randn(BATCH, OBS_DIM, generator=generator),
                "actions": torch.randn(BATCH, ACT_DIM, generator=generator),
                "logprobs": torch.randn(BATCH, generator=generator) - 8.0,
                "advantages": torch.randn(BATCH, generator=generator),
                "returns": torch.randn(BATCH, generator=generator),
            }
            for _ in range(length)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batches[index]


class StepTimer(pl.Callback):
    """Time of every training step past ``warmup`` (from one ``on_train_batch_start`` to the next): wall-clock
    seconds per step, split into logging steps (``(batch + 1) % log_every == 0``) and the others, and the total CPU
    time of this process (which leaves out time spent waiting for a core on a shared machine)."""

    def __init__(self, warmup: int, log_every: int) -> None:
        self.warmup, self.log_every = warmup, log_every
        self.steps: dict[bool, list[float]] = {True: [], False: []}
        self.cpu = 0.0
        self._last: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        now = (time.perf_counter(), time.process_time())
        if self._last is not None and idx > self.warmup:
            self.steps[idx % self.log_every == 0].append(now[0] - self._last[0])  # the step of batch idx - 1
            self.cpu += now[1] - self._last[1]
        self._last = now

    @property
    def wall(self) -> float:
        return sum(self.steps[True]) + sum(self.steps[False])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_run(steps: int, log_every: int, monitored: bool, data: SyntheticRollouts) -> StepTimer:
    """Times ``steps`` training steps (past a warm-up of 20) with or without the three monitors."""
    timer = StepTimer(warmup=20, log_every=log_every)
    callbacks: list[pl.Callback] = [GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor()] if monitored else []
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps + 21,
            log_every_n_steps=log_every,
            logger=CSVLogger(log_dir, name="", version=""),
            callbacks=[timer, *callbacks],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(PPONetworks(), DataLoader(data, batch_size=None, shuffle=False))
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="alternating pairs of runs")
    parser.add_argument("--steps", type=int, default=500, help="timed training steps per run (a multiple of 50)")
    parser.add_argument("--log-every", type=int, default=50, help="log_every_n_steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = SyntheticRollouts(args.steps + 21)
    timed_run(100, args.log_every, True, data)  # warm up imports and allocator
    totals = {(clock, monitored): 0.0 for clock in ("wall", "cpu") for monitored in (False, True)}
    steps: dict[tuple[bool, bool], list[float]] = {(m, log): [] for m in (False, True) for log in (False, True)}
    for round_index in range(args.rounds):
        order = (False, True) if round_index % 2 == 0 else (True, False)
        timers = {monitored: timed_run(args.steps, args.log_every, monitored, data) for monitored in order}
        for monitored, timer in timers.items():
            totals["wall", monitored] += timer.wall
            totals["cpu", monitored] += timer.cpu
            for logging_step in (False, True):
                steps[monitored, logging_step] += timer.steps[logging_step]
        print(
            f"round {round_index:2d}: CPU ms/step plain {1e3 * timers[False].cpu / args.steps:.3f}, monitored "
            f"{1e3 * timers[True].cpu / args.steps:.3f}, ratio {timers[True].cpu / timers[False].cpu:.4f} | "
            f"wall ratio {timers[True].wall / timers[False].wall:.4f}"
        )
    timed_steps = args.rounds * args.steps
    for clock in ("cpu", "wall"):
        plain, monitored = totals[clock, False], totals[clock, True]
        print(
            f"{clock:4s} time totals: plain {1e3 * plain / timed_steps:.3f} ms/step, monitored "
            f"{1e3 * monitored / timed_steps:.3f} ms/step, ratio {monitored / plain:.4f}"
        )
    # Robust to other processes: the lower quartile of the per-step wall times, logging and other steps weighted
    # as in training (1 in log_every).
    typical = {}
    for monitored in (False, True):
        other, logging = (1e3 * quantile(steps[monitored, log], 0.25) for log in (False, True))
        typical[monitored] = ((args.log_every - 1) * other + logging) / args.log_every
        name = "monitored" if monitored else "plain"
        print(f"lower-quartile step, {name}: other steps {other:.3f} ms, logging steps {logging:.3f} ms")
    print(f"typical step: plain {typical[False]:.3f} ms, monitored {typical[True]:.3f} ms")
    print(f"ratio (lower-quartile steps) {typical[True] / typical[False]:.4f} (target <= 1.03)")


if __name__ == "__main__":
    main()
