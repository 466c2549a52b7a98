"""Run by the RL tests: a small PPO, TD3 or DQN fit on 2 CPU processes; each rank saves a report.

``strategy="ddp"`` re-launches this script for rank 1, so the run must be a file of its own:
``python tests/ddp_script.py {ppo,td3,dqn} {ddp,ddp_spawn} OUTPUT_DIR`` writes ``OUTPUT_DIR/rank{r}.pt`` (and, for
``ddp_spawn``, ``OUTPUT_DIR/main.pt`` from the main process).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from helpers import params_of  # a sibling module

from lightning_alphagrad.rl import DQN, PPO, TD3, RLModule


class RankReport(L.Callback):
    """Saves what the ranks must agree on (parameters, step counts) and what they must not (their own data)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_start(self, trainer: L.Trainer, pl_module: RLModule) -> None:
        self.before = params_of(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: RLModule) -> None:
        report = {
            "before": self.before,
            "params": params_of(pl_module),
            "env_steps": pl_module.env_steps,
            "world_size": trainer.world_size,
        }
        if isinstance(pl_module, PPO):
            report["obs_mean"] = pl_module.obs_rms.mean
        else:
            report["replay_obs"] = pl_module.replay_buffer.obs[:20].clone()
        if isinstance(pl_module, TD3):
            report["critic_updates"] = pl_module.critic_updates
        torch.save(report, f"{self.directory}/rank{trainer.global_rank}.pt")


def make_module(algo: str) -> RLModule:
    if algo == "ppo":
        return PPO(env_id="CartPole-v1", num_envs=2, num_steps=16, num_minibatches=4, update_epochs=2,
                   total_timesteps=3 * 32 * 2, num_eval_episodes=2, seed=9)  # fmt: skip
    if algo == "td3":  # 240 env steps over 2 ranks, updates after env step 80
        return TD3(env_id="Pendulum-v1", total_timesteps=240, learning_starts=80, batch_size=32, buffer_size=1000,
                   optimizer="alphagrad", alpha=20.0, seed=3)  # fmt: skip
    return DQN(total_timesteps=600, learning_starts=200, batch_size=16, buffer_size=500, target_network_frequency=100,
               optimizer="alphagrad", seed=5)  # fmt: skip


def run_on_two_ranks(algo: str, strategy: str, directory: Path) -> list[dict[str, Any]]:
    """Run this script in a fresh process (as a user would) and return the two ranks' reports."""
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    subprocess.run([sys.executable, __file__, algo, strategy, str(directory)], check=True, env=environment, timeout=300)
    return [torch.load(directory / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def assert_ranks_agree(ranks: list[dict[str, Any]]) -> None:
    """Two ranks that started from the same parameters, trained, and ended with identical parameters."""
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert torch.equal(ranks[0]["before"], ranks[1]["before"])
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    assert not torch.equal(ranks[0]["params"], ranks[0]["before"])


if __name__ == "__main__":
    algo, strategy, directory = sys.argv[1:4]
    torch.set_num_threads(1)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RankReport(directory)],
    )
    module = make_module(algo)
    trainer.fit(module)
    if strategy == "ddp_spawn":  # the main process gets the state_dict back, counters included
        torch.save({"params": params_of(module), **module.get_extra_state()}, f"{directory}/main.pt")
