"""PPO on HalfCheetah-v5 with the paper's settings (CleanRL MuJoCo PPO), Adam or AlphaGrad; CSV logs and final eval.

    python examples/studies/ppo_halfcheetah.py --optimizer adam --total-timesteps 200000
    python examples/studies/ppo_halfcheetah.py --optimizer alphagrad --alpha 98 --total-timesteps 200000

Logs go to ``--log-dir/<optimizer>/version_*/metrics.csv``; the deterministic evaluation (5 episodes) at the end is
``eval/return_mean``.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_alphagrad.rl import PPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", choices=["adam", "alphagrad"], default="adam")
    parser.add_argument("--alpha", type=float, default=98.0)
    parser.add_argument("--total-timesteps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-dir", default="runs/ppo_halfcheetah")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = PPO(
        env_id="HalfCheetah-v5",
        total_timesteps=args.total_timesteps,
        optimizer=args.optimizer,
        alpha=args.alpha,
        seed=args.seed,
        num_eval_episodes=5,
    )
    trainer = L.Trainer(
        logger=CSVLogger(args.log_dir, name=args.optimizer),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model)
    eval_return = float(trainer.callback_metrics["eval/return_mean"])
    print(f"time {time.perf_counter() - start:.0f} s, eval/return_mean {eval_return:.1f}")


if __name__ == "__main__":
    main()
