"""Cost of the three monitoring callbacks on the paper's PPO network, measured side by side in one training run.

The PPO networks of the paper (actor 17-64-64-6 tanh with a state-independent log-std, critic 17-64-64-1 tanh)
train on synthetic minibatches of 64 with the PPO clipped loss and AlphaGrad (alpha 196, momentum 0.9, eps 1e-5),
logging the loss and writing a CSV log every ``log_every_n_steps`` (50) steps. One Trainer runs a warm-up (which
includes AlphaGrad's switch to its compiled whole-group step) and then ``--cycles`` cycles of three blocks of
``log_every_n_steps`` steps, one block per arm in a rotating order:

- ``plain``: no other callbacks;
- ``empty``: three ``Callback()`` instances (Lightning dispatches each of its six per-batch hooks to each of them:
  what any three callbacks cost);
- ``monitored``: GradNormMonitor + TanhSaturationMonitor + AlphaMonitor (they leave the per-batch hooks they do not
  use undispatched).

An arm's callbacks enter ``trainer.callbacks`` at its block's first step; every block holds one logging step, in its
middle, so the steps after a logging step count for the same arm. Alternating inside one run keeps the model, its
tensors, their memory layout and the logger the same for all arms; the typical step of separate runs of one arm
varies with a standard deviation of 2-5 %, more than the effect measured here. The time of a step runs from one
``on_train_batch_start`` to the next (data, forward, backward, optimizer, callbacks, logging). Prints, per arm, the
mean wall and CPU time per step and the ratios to ``plain``: of the totals, and the median over cycles of the ratio
of the arm's block to the ``plain`` block of the same cycle (which other processes on the machine disturb least).

    python benchmarks/bench_callbacks.py --cycles 200
"""

from __future__ import annotations

import argparse
import csv
import statistics
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
from lightning_alphagrad.rl.networks import mlp

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 17, 6, 64, 64


def tanh_mlp(out_dim: int) -> nn.Sequential:
    return mlp([OBS_DIM, HIDDEN, HIDDEN, out_dim], nn.Tanh)


class PPONetworks(pl.LightningModule):
    """Actor and critic of the paper's PPO, one clipped-surrogate + value-loss step per minibatch."""

    def __init__(self, clip_coef: float = 0.2, vf_coef: float = 0.5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.actor_mean = tanh_mlp(ACT_DIM)
        self.actor_logstd = nn.Parameter(torch.zeros(1, ACT_DIM))
        self.critic = tanh_mlp(1)
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
    """``length`` minibatches of 64 transitions, cycling through 256 fixed random ones (the loader passes them on)."""

    def __init__(self, length: int) -> None:
        self.length = length
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            {
                "obs": torch.randn(BATCH, OBS_DIM, generator=generator),
                "actions": torch.randn(BATCH, ACT_DIM, generator=generator),
                "logprobs": torch.randn(BATCH, generator=generator) - 8.0,
                "advantages": torch.randn(BATCH, generator=generator),
                "returns": torch.randn(BATCH, generator=generator),
            }
            for _ in range(256)
        ]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batches[index % len(self.batches)]


ARMS = ("plain", "empty", "monitored")


class ArmSwitcher(pl.Callback):
    """Times every step and, from step ``warmup`` on, gives each block of ``block`` steps to one arm: a cycle of three
    blocks holds one block per arm, in an order that rotates from cycle to cycle. Must be the Trainer's first callback:
    it replaces the callbacks behind it with the arm's at the first step of a block."""

    def __init__(self, warmup: int, block: int, callbacks: dict[str, list[pl.Callback]]) -> None:
        self.warmup, self.block, self.callbacks = warmup, block, callbacks
        self.arm: str | None = None  # None during the warm-up
        self.cycle = -1
        self.wall: dict[tuple[int, str], float] = {}  # (cycle, arm) -> seconds of its block
        self.cpu: dict[tuple[int, str], float] = {}
        self._last: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.arm is not None and self._last is not None:  # the step of batch idx - 1 belongs to the current arm
            key = (self.cycle, self.arm)
            self.wall[key] = self.wall.get(key, 0.0) + now[0] - self._last[0]
            self.cpu[key] = self.cpu.get(key, 0.0) + now[1] - self._last[1]
        if idx >= self.warmup and (idx - self.warmup) % self.block == 0:
            block = (idx - self.warmup) // self.block
            self.cycle = block // len(ARMS)
            self.arm = ARMS[(block + self.cycle) % len(ARMS)]
            trainer.callbacks[1:] = self.callbacks[self.arm]
            for callback in self.callbacks[self.arm]:  # as if training started here: no catching up on windows missed
                callback.on_train_start(trainer, pl_module)
        self._last = (time.perf_counter(), time.process_time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="cycles of one block per arm")
    parser.add_argument("--log-every", type=int, default=50, help="log_every_n_steps, also the block length")
    args = parser.parse_args()
    torch.set_num_threads(1)
    every = args.log_every
    # past AlphaGrad's compile (AUTO_COMPILE_AFTER flat steps) and a margin; blocks start half a window before a
    # logging step ((step + 1) % every == 0)
    warmup = -(-(AUTO_COMPILE_AFTER + 2 * every) // every) * every + every // 2
    total = warmup + args.cycles * len(ARMS) * every
    switcher = ArmSwitcher(
        warmup,
        every,
        {
            "plain": [],
            "empty": [pl.Callback(), pl.Callback(), pl.Callback()],
            "monitored": [GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor()],
        },
    )
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=total + 1,  # the last block's last step ends at the start of this one
            log_every_n_steps=every,
            logger=CSVLogger(log_dir, name="", version=""),
            callbacks=[switcher],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(PPONetworks(), DataLoader(SyntheticRollouts(total + 1), batch_size=None, shuffle=False))
        with open(f"{trainer.logger.log_dir}/metrics.csv") as file:
            records = sum(1 for row in csv.DictReader(file) if row.get("saturation/AlphaGrad/all"))
    print(f"monitor records: {records} (one per monitored block: {args.cycles})")
    cycles = sorted({cycle for cycle, _ in switcher.wall if all((cycle, arm) in switcher.wall for arm in ARMS)})
    steps = len(cycles) * every
    for arm in ARMS:
        wall = sum(switcher.wall[c, arm] for c in cycles)
        cpu = sum(switcher.cpu[c, arm] for c in cycles)
        print(f"{arm:9s}: {1e3 * wall / steps:.4f} ms/step wall, {1e3 * cpu / steps:.4f} ms/step CPU ({steps} steps)")
    for arm in ARMS[1:]:
        totals = {clock: sum(t[c, arm] for c in cycles) / sum(t[c, "plain"] for c in cycles)
                  for clock, t in (("wall", switcher.wall), ("cpu", switcher.cpu))}  # fmt: skip
        paired = statistics.median(switcher.wall[c, arm] / switcher.wall[c, "plain"] for c in cycles)
        target = " (target <= 1.03)" if arm == "monitored" else " (three no-op callbacks)"
        print(
            f"{arm} / plain: totals {totals['wall']:.4f} wall, {totals['cpu']:.4f} CPU; "
            f"median of per-cycle ratios {paired:.4f}{target}"
        )


if __name__ == "__main__":
    main()
