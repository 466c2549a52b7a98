"""Discrete PPO on CartPole-v1: episodic return after ``--total-timesteps`` env steps for one seed.

    python examples/studies/ppo_cartpole.py --preset cleanrl --seed 0
    python examples/studies/ppo_cartpole.py --preset zoo --seed 0

Presets: ``cleanrl`` is CleanRL's ``ppo.py`` (4 envs x 128 steps, lr 2.5e-4 annealed, 4 minibatches x 4 epochs, ent
0.01, value clipping); ``zoo`` is the RL-Baselines3-Zoo CartPole tuning (8 envs x 32 steps, lr 1e-3 annealed, one
minibatch of 256 x 20 epochs, gamma 0.98, lambda 0.8, no entropy bonus, no value clipping). Prints the mean training
return over the last ``--window`` env steps (per-iteration means from the CSV log) and the final deterministic
evaluation over 10 episodes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_alphagrad.cli import config_model_args
from lightning_alphagrad.plotting import read_curve
from lightning_alphagrad.rl import PPO

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
PRESETS = {
    "cleanrl": dict(num_envs=4, num_steps=128, learning_rate=2.5e-4, num_minibatches=4, update_epochs=4, ent_coef=0.01),
    # the main job's RL-Zoo settings at the Zoo's own learning rate
    "zoo": {**config_model_args(DEFAULT_CONFIG), "learning_rate": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cleanrl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10_000, help="env steps averaged at the end")
    parser.add_argument("--optimizer", choices=["adam", "alphagrad"], default="adam")
    parser.add_argument("--alpha", type=float, default=98.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = dict(env_id="CartPole-v1", total_timesteps=args.total_timesteps, normalize_observation=False,
                 normalize_reward=False, optimizer=args.optimizer, alpha=args.alpha, eval_interval=None,
                 num_eval_episodes=10, seed=args.seed)  # fmt: skip
    model = PPO(**{**PRESETS[args.preset], **study})
    with tempfile.TemporaryDirectory() as directory:
        logger = CSVLogger(directory, name="cartpole")
        trainer = L.Trainer(
            accelerator="cpu",
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.fit(model)
        seconds = time.perf_counter() - start
        logger.finalize("success")
        steps, returns = read_curve(Path(logger.log_dir) / "metrics.csv", "charts/episodic_return")
    returns = returns[steps > model.env_steps - args.window]
    result = {
        "preset": args.preset,
        "optimizer": args.optimizer,
        "seed": args.seed,
        "env_steps": model.env_steps,
        f"train_return_last_{args.window}": float(returns.mean()),
        "eval_return_mean": float(trainer.callback_metrics["eval/return_mean"]),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
