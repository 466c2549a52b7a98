"""Returns of Stable-Baselines3's TD3 on Hopper-v4 with this project's (CleanRL's) settings: a reference for TD3.

    python benchmarks/sb3_returns.py --algo td3 --total-timesteps 100000 --seed 0

Same settings as ``bench_rl_offpolicy.py`` (whose SB3 models it trains) with learning_starts 25k, one torch thread.
Prints, like ``lightning-alphagrad fit`` after a run, the mean return of the last ``--last-episodes`` training
episodes at the end, the best running mean of that many episodes and the first env step where it reached
``--threshold``. (``--algo dqn`` runs SB3's DQN with the settings of ``bench_rl_offpolicy.py``, Huber loss included;
on CartPole-v1 it did not learn here: mean returns of 9-10 at 250k env steps on seeds 0, 1, 2, so it is no reference
for this project's DQN.)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_rl_offpolicy import sb3_model  # a sibling script
from stable_baselines3.common.callbacks import BaseCallback


class EpisodeLog(BaseCallback):
    """Records ``(env step, return)`` of every finished episode and stops training after ``stop_at`` env steps."""

    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.episodes: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return self.num_timesteps < self.stop_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=("td3", "dqn"), required=True)
    parser.add_argument("--total-timesteps", type=int, required=True)
    parser.add_argument("--stop-at", type=int, default=None, help="stop early at this many env steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--last-episodes", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=None, help="td3: 1000, dqn: 450")
    args = parser.parse_args()

    torch.set_num_threads(1)
    env_id = "Hopper-v4" if args.algo == "td3" else "CartPole-v1"
    learning_starts = 25_000 if args.algo == "td3" else 10_000
    threshold = args.threshold or (1000.0 if args.algo == "td3" else 450.0)
    model = sb3_model(args.algo, learning_starts, seed=args.seed)  # SB3 adds its Monitor: info["episode"]
    log = EpisodeLog(args.stop_at or args.total_timesteps)
    model.learn(args.total_timesteps, callback=log)

    steps = np.array([step for step, _ in log.episodes])
    returns = np.array([ret for _, ret in log.episodes])
    window = args.last_episodes
    running = np.convolve(returns, np.ones(window) / window, "valid")
    reached = np.flatnonzero(running >= threshold)
    first = f"{steps[reached[0] + window - 1]}" if reached.size else "never"
    print(
        f"SB3 {args.algo} {env_id} seed {args.seed}: {len(returns)} episodes to {log.num_timesteps} env steps; "
        f"mean return of the last {window}: {returns[-window:].mean():.1f}; max running mean {running.max():.1f}; "
        f"running mean >= {threshold:g} first at env step {first}"
    )


if __name__ == "__main__":
    main()
