"""Run by ``test_ppo.py``: PPO on CartPole with ``strategy="ddp"`` (2 CPU processes); each rank saves a report.

``strategy="ddp"`` re-launches this script for rank 1, so it must be a file of its own:
``python tests/ddp_ppo_script.py OUTPUT_DIR``.
"""

from __future__ import annotations

import sys

import lightning as L
import torch

from lightning_alphagrad.rl import PPO


class RankReport(L.Callback):
    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        self.before = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()]).clone()

    def on_train_end(self, trainer: L.Trainer, pl_module: PPO) -> None:
        report = {
            "before": self.before,
            "params": torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()]),
            "obs_mean": pl_module.obs_rms.mean,
            "env_steps": pl_module.env_steps,
            "world_size": trainer.world_size,
        }
        torch.save(report, f"{self.directory}/rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    model = PPO(
        env_id="CartPole-v1",
        num_envs=2,
        num_steps=16,
        num_minibatches=4,
        update_epochs=2,
        total_timesteps=3 * 32 * 2,
        num_eval_episodes=2,
        seed=9,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RankReport(sys.argv[1])],
    )
    trainer.fit(model)
