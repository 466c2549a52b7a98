"""Env steps per second of this project's TD3 and DQN vs Stable-Baselines3 with the same hyper-parameters, and TD3
against its floor: the plain-torch update loop of ``bench_td3_update.py``.

Both run in this process on one torch thread, alternately (ours, SB3, ours, SB3, ...). Rates are env steps per second
of this process's CPU time (robust on a shared machine, where wall time depends on other jobs), with wall-time rates
beside them; the ratio of the median CPU-time rates is printed, with the raw env-stepping rate as the ceiling.

    python benchmarks/bench_rl_offpolicy.py --algo td3   # Hopper-v4, 3000 steps, learning_starts 1000
    python benchmarks/bench_rl_offpolicy.py --algo dqn   # CartPole-v1, 30000 steps, learning_starts 10000
    python benchmarks/bench_rl.py --algo td3             # the same, through the project's RL benchmark
    python benchmarks/bench_rl_offpolicy.py --algo td3 --against floor --total 5000 --learning-starts 256
    python benchmarks/bench_rl.py --algo td3 --against floor                # the same

``--against floor`` (TD3): ours in fp32 and in ``bf16-mixed`` against ``1 / (plain-torch update time)``, the env
steps/s one update per env step allows when env, replay and Lightning cost nothing; with ``learning_starts`` small,
the ratio is the share of our TD3's time that the update math takes.

Settings shared by both implementations: TD3 as CleanRL (256-256 actor and twin critics, Adam lr 3e-4, batch 256,
buffer 1e6, tau 0.005, policy delay 2, target noise 0.2 clipped at 0.5, exploration noise 0.1, one update per env
step); DQN as CleanRL (120-84 Q-network, Adam lr 2.5e-4 eps 1e-5, batch 128, buffer 1e4, train every 10 steps,
target copy every 500 steps, epsilon 1 -> 0.05 over half the run) with SB3's Huber loss and no gradient clipping.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from bench_td3_update import plain_torch  # a sibling script

warnings.filterwarnings("ignore")


def raw_env_rate(env_id: str, steps: int) -> float:
    """Env steps/s of one ``gym.make`` env with pre-sampled random actions (no agent at all)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def timed(run: Callable[[], object], total: int) -> tuple[float, float]:
    """``(total / CPU seconds, total / wall seconds)`` of ``run()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return total / (time.process_time() - cpu), total / (time.perf_counter() - wall)


def ours(algo: str, total: int, learning_starts: int, precision: str = "32-true") -> tuple[float, float]:
    """Env steps/s (CPU time, wall time) of this project's module over a whole ``fit`` of ``total`` env steps."""
    from lightning_alphagrad.rl import DQN, TD3

    if algo == "td3":
        model = TD3(env_id="Hopper-v4", total_timesteps=total, learning_starts=learning_starts, seed=0)
    else:
        model = DQN(
            env_id="CartPole-v1", total_timesteps=total, learning_starts=learning_starts, loss="huber", adam_eps=1e-5,
            seed=0,
        )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        precision=precision,
    )  # fmt: skip
    return timed(lambda: trainer.fit(model), total)


def sb3_model(algo: str, learning_starts: int, seed: int = 0) -> object:
    """Stable-Baselines3's TD3 on Hopper-v4 or DQN on CartPole-v1 with the settings above."""
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3 import TD3 as SB3TD3
    from stable_baselines3.common.noise import NormalActionNoise

    if algo == "td3":
        env = gym.make("Hopper-v4")
        n = env.action_space.shape[0]
        return SB3TD3(
            "MlpPolicy", env, learning_rate=3e-4, buffer_size=1_000_000, learning_starts=learning_starts,
            batch_size=256, tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1,
            action_noise=NormalActionNoise(np.zeros(n), 0.1 * np.ones(n)), policy_delay=2, target_policy_noise=0.2,
            target_noise_clip=0.5, policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu",
        )  # fmt: skip
    env = gym.make("CartPole-v1")
    return SB3DQN(
        "MlpPolicy", env, learning_rate=2.5e-4, buffer_size=10_000, learning_starts=learning_starts,
        batch_size=128, tau=1.0, gamma=0.99, train_freq=10, gradient_steps=1, target_update_interval=500,
        exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05, max_grad_norm=1e12,
        policy_kwargs={"net_arch": [120, 84], "optimizer_kwargs": {"eps": 1e-5}}, seed=seed, device="cpu",
    )  # fmt: skip


def sb3(algo: str, total: int, learning_starts: int) -> tuple[float, float]:
    """Env steps/s (CPU time, wall time) of Stable-Baselines3 over a whole ``learn`` of ``total`` env steps."""
    model = sb3_model(algo, learning_starts)
    return timed(lambda: model.learn(total), total)


def run(algo: str, total: int | None = None, learning_starts: int | None = None, rounds: int = 2) -> None:
    """Alternate ``rounds`` (ours, SB3) pairs of ``algo`` and print env steps/s and the ratio of the medians."""
    torch.set_num_threads(1)
    total = total or (3000 if algo == "td3" else 30_000)
    learning_starts = learning_starts if learning_starts is not None else total // 3
    env_id = "Hopper-v4" if algo == "td3" else "CartPole-v1"
    print(f"{algo} on {env_id}: {total} env steps per run, learning_starts {learning_starts}, 1 torch thread")
    print(f"raw env stepping (ceiling): {raw_env_rate(env_id, 5000):.0f} steps/s")
    rates: dict[str, list[float]] = {"ours": [], "sb3": []}
    for round_index in range(rounds):
        for name, measure in (("ours", ours), ("sb3", sb3)):
            L.seed_everything(round_index, verbose=False)
            cpu_rate, wall_rate = measure(algo, total, learning_starts)
            rates[name].append(cpu_rate)
            print(f"round {round_index}: {name:4s} {cpu_rate:8.1f} steps/CPU-s ({wall_rate:.1f}/wall-s)", flush=True)
    ours_rate, sb3_rate = statistics.median(rates["ours"]), statistics.median(rates["sb3"])
    ratio = ours_rate / sb3_rate
    print(f"median: ours {ours_rate:.1f}, SB3 {sb3_rate:.1f} env steps/CPU-s; ratio ours/SB3 = {ratio:.2f}")


def floor(total: int, learning_starts: int, rounds: int = 2) -> None:
    """Alternate ours (fp32, bf16-mixed) and the plain-torch update loop; print rates and ours / floor."""
    torch.set_num_threads(1)
    updates = total - learning_starts
    print(f"td3 on Hopper-v4: {total} env steps per run, learning_starts {learning_starts}, 1 torch thread")
    rates: dict[str, list[float]] = {"ours fp32": [], "ours bf16-mixed": [], "floor": []}
    for round_index in range(rounds):
        L.seed_everything(round_index, verbose=False)
        rates["ours fp32"].append(ours("td3", total, learning_starts)[0])
        rates["ours bf16-mixed"].append(ours("td3", total, learning_starts, "bf16-mixed")[0])
        update = plain_torch()
        for _ in range(20):  # warm-up
            update()
        start = time.process_time()
        for _ in range(updates):
            update()
        rates["floor"].append(updates / (time.process_time() - start))
        print(f"round {round_index}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print("median env steps/CPU-s: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()))
    for name in ("ours fp32", "ours bf16-mixed"):
        print(f"{name} / floor = {medians[name] / medians['floor']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=("td3", "dqn"), required=True)
    parser.add_argument("--total", type=int, default=None, help="env steps per run (td3: 3000, dqn: 30000)")
    parser.add_argument("--learning-starts", type=int, default=None, help="default: a third of --total")
    parser.add_argument("--rounds", type=int, default=2, help="alternating (ours, SB3) pairs")
    parser.add_argument("--against", choices=("sb3", "floor"), default="sb3", help="floor: TD3 only, see above")
    args = parser.parse_args()
    if args.against == "floor":
        if args.algo != "td3":
            parser.error("--against floor is for --algo td3")
        floor(args.total or 5000, args.learning_starts if args.learning_starts is not None else 256, args.rounds)
    else:
        run(args.algo, args.total, args.learning_starts, args.rounds)


if __name__ == "__main__":
    main()
