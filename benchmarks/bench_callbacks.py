"""Cost of the three monitoring callbacks on the paper's PPO network, measured side by side.

The PPO networks of the paper (actor 17-64-64-6 tanh with a state-independent log-std, critic 17-64-64-1 tanh)
train on synthetic minibatches of 64 with the PPO clipped loss and AlphaGrad (alpha 196, momentum 0.9, eps 1e-5).
Three Lightning runs alternate round by round (in a rotating order): ``plain`` without callbacks, ``empty`` with
three ``Callback()`` instances (Lightning dispatches each of the six per-batch hooks to each of them: what any three
callbacks cost), and ``monitored`` with GradNormMonitor + TanhSaturationMonitor + AlphaMonitor (which leave the four
per-batch hooks they do not use undispatched); all log the loss and write a CSV log every ``log_every_n_steps``
steps. The wall time of a training step is the time between consecutive ``on_train_batch_start`` calls (data,
forward, backward, optimizer, callbacks, logging); the first steps of each run are left out as warm-up. Prints
per-round CPU times, the ratios of the total CPU and wall times to ``plain``, and the ratios of the typical step
(lower quartile of the per-step wall times of logging and of other steps, weighted 1 : log_every - 1), which other
processes on a shared machine disturb least.

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
from lightning_alphagrad.optim.alphagrad import AUTO_COMPILE_AFTER

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


ARMS = ("plain", "empty", "monitored")


def timed_run(steps: int, log_every: int, arm: str, data: SyntheticRollouts) -> StepTimer:
    """Times ``steps`` training steps (past a warm-up of 20) with the callbacks of ``arm`` (one of ``ARMS``)."""
    timer = StepTimer(warmup=20, log_every=log_every)
    callbacks: list[pl.Callback] = {
        "plain": [],
        "empty": [pl.Callback(), pl.Callback(), pl.Callback()],
        "monitored": [GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor()],
    }[arm]
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
    parser.add_argument("--rounds", type=int, default=20, help="rounds of one run per arm")
    parser.add_argument("--steps", type=int, default=500, help="timed training steps per run (a multiple of 50)")
    parser.add_argument("--log-every", type=int, default=50, help="log_every_n_steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = SyntheticRollouts(max(args.steps, AUTO_COMPILE_AFTER + 50) + 21)
    # warm up imports and allocator, and compile AlphaGrad's whole-group step (after AUTO_COMPILE_AFTER flat steps)
    timed_run(AUTO_COMPILE_AFTER + 50, args.log_every, "monitored", data)
    totals = {(clock, arm): 0.0 for clock in ("wall", "cpu") for arm in ARMS}
    steps: dict[tuple[str, bool], list[float]] = {(arm, log): [] for arm in ARMS for log in (False, True)}
    for round_index in range(args.rounds):
        shift = round_index % len(ARMS)
        order = ARMS[shift:] + ARMS[:shift]
        timers = {arm: timed_run(args.steps, args.log_every, arm, data) for arm in order}
        for arm, timer in timers.items():
            totals["wall", arm] += timer.wall
            totals["cpu", arm] += timer.cpu
            for logging_step in (False, True):
                steps[arm, logging_step] += timer.steps[logging_step]
        per_step = ", ".join(f"{arm} {1e3 * timers[arm].cpu / args.steps:.3f}" for arm in ARMS)
        print(f"round {round_index:2d}: CPU ms/step {per_step}", flush=True)
    for clock in ("cpu", "wall"):
        ratios = ", ".join(f"{arm} {totals[clock, arm] / totals[clock, 'plain']:.4f}" for arm in ARMS[1:])
        print(f"{clock:4s} time totals / plain: {ratios}")
    # Robust to other processes: the lower quartile of the per-step wall times, logging and other steps weighted
    # as in training (1 in log_every).
    typical = {}
    for arm in ARMS:
        other, logging = (1e3 * quantile(steps[arm, log], 0.25) for log in (False, True))
        typical[arm] = ((args.log_every - 1) * other + logging) / args.log_every
        print(f"lower-quartile step, {arm}: other steps {other:.3f} ms, logging steps {logging:.3f} ms")
    print("typical step: " + ", ".join(f"{arm} {typical[arm]:.3f} ms" for arm in ARMS))
    print(
        f"ratio (lower-quartile steps): monitored / plain {typical['monitored'] / typical['plain']:.4f} "
        f"(target <= 1.03); empty / plain {typical['empty'] / typical['plain']:.4f} (three no-op callbacks)"
    )


if __name__ == "__main__":
    main()
