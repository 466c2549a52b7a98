"""Throughput of PPO here vs Stable-Baselines3's PPO with identical hyper-parameters, and the raw env-stepping ceiling.

    python benchmarks/bench_rl.py --env-id HalfCheetah-v5 --iterations 5 --repeats 2

Settings of both (CleanRL's MuJoCo PPO): 1 env, 2048-step rollouts, 10 epochs x 32 minibatches (64 samples), Adam
(lr 3e-4 annealed, eps 1e-5), grad-norm clip 0.5, GAE 0.99/0.95, clip 0.2 with value clipping, separate 64-64 tanh
actor and critic, observation normalization and reward scaling clipped to +-10. Runs alternate (ours, SB3, ours, ...)
so both see the same machine load; env steps/s counts everything from building the model and envs to the end of
``fit``/``learn``, with one torch thread.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import torch
from bench_rl_offpolicy import floor, raw_env_rate, run  # the off-policy benchmark, a sibling script

from lightning_alphagrad.rl import PPO


def ours_rate(env_id: str, total_timesteps: int, seed: int) -> float:
    start = time.perf_counter()
    model = PPO(env_id=env_id, total_timesteps=total_timesteps, num_eval_episodes=0, seed=seed)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    return model.env_steps / (time.perf_counter() - start)


def sb3_rate(env_id: str, total_timesteps: int, seed: int) -> float:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    start = time.perf_counter()
    envs = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), clip_obs=10.0, clip_reward=10.0, gamma=0.99)
    model = SB3PPO(
        "MlpPolicy",
        envs,
        learning_rate=lambda progress_remaining: 3e-4 * progress_remaining,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        clip_range_vf=0.2,
        normalize_advantage=True,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={"optimizer_kwargs": {"eps": 1e-5}},
        device="cpu",
        seed=seed,
        verbose=0,
    )
    model.learn(total_timesteps=total_timesteps)
    return total_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=("ppo", "td3", "dqn"), default="ppo", help="td3/dqn: bench_rl_offpolicy.py")
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=5, help="PPO iterations of 2048 steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved (ours, SB3) pairs")
    parser.add_argument("--against", choices=("sb3", "floor"), default="sb3",
                        help="td3: floor = the plain-torch update loop (see bench_rl_offpolicy.py)")  # fmt: skip
    args = parser.parse_args()
    if args.algo == "td3" and args.against == "floor":
        floor(5000, 256, rounds=args.repeats)
        return
    if args.algo != "ppo":
        run(args.algo, rounds=args.repeats)
        return
    torch.set_num_threads(1)
    total_timesteps = 2048 * args.iterations

    raw = raw_env_rate(args.env_id, 20_000)
    ours, sb3 = [], []
    for repeat in range(args.repeats):
        ours.append(ours_rate(args.env_id, total_timesteps, seed=repeat))
        sb3.append(sb3_rate(args.env_id, total_timesteps, seed=repeat))
        print(f"repeat {repeat}: ours {ours[-1]:.0f} steps/s, SB3 {sb3[-1]:.0f} steps/s", flush=True)
    ratios = np.array(ours) / np.array(sb3)
    print(f"\n{args.env_id}, {total_timesteps} env steps per run, {args.repeats} interleaved pairs, 1 torch thread")
    print(f"raw env stepping (ceiling): {raw:.0f} steps/s")
    print(f"ours (lightning_alphagrad PPO): {np.mean(ours):.0f} steps/s")
    print(f"Stable-Baselines3 PPO:          {np.mean(sb3):.0f} steps/s")
    print(f"ratio ours / SB3: {ratios.mean():.2f}x (per pair: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
