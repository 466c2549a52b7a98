"""Train TD3 or DQN for the figures in ``docs/RL_OFFPOLICY.md``: one seed, one thread, CSV logs.

Examples::

    python examples/studies/train_offpolicy.py --algo td3 --env-id Hopper-v4 --total-timesteps 100000 --seed 0
    python examples/studies/train_offpolicy.py --algo dqn --env-id CartPole-v1 --total-timesteps 500000 --stop-at 250000
    python examples/studies/train_offpolicy.py --algo td3 --env-id Hopper-v4 --total-timesteps 100000 --seed 0 \
        --optimizer alphagrad --size-aware --alpha 1.5 --learning-starts 1000

Prints the mean return of the last ``--last-episodes`` training episodes (from the episode log) and, with
``--eval-interval``, the deterministic evaluation returns.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.callbacks import StopAtEnvSteps
from lightning_alphagrad.plotting import read_curve
from lightning_alphagrad.rl import DQN, TD3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=("td3", "dqn"), required=True)
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--total-timesteps", type=int, required=True)
    parser.add_argument("--stop-at", type=int, default=None, help="stop early at this many env steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--optimizer", choices=("adam", "alphagrad"), default="adam")
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--actor-alpha", type=float, default=None, help="TD3: the actor's own alpha")
    parser.add_argument("--size-aware", action="store_true", help="TD3, AlphaGrad: alpha * sqrt(numel) per tensor")
    parser.add_argument("--adam-eps", type=float, default=None, help="Adam epsilon (default: the module's)")
    parser.add_argument("--learning-starts", type=int, default=None, help="random steps before updates")
    parser.add_argument("--eval-interval", type=int, default=0)
    parser.add_argument("--last-episodes", type=int, default=10)
    parser.add_argument("--out", default="runs")
    args = parser.parse_args()
    if args.size_aware and (args.algo, args.optimizer, args.alpha is None) != ("td3", "alphagrad", False):
        parser.error("--size-aware needs --algo td3 --optimizer alphagrad and an --alpha")
    if args.actor_alpha is not None and (args.algo, args.optimizer, args.size_aware) != ("td3", "alphagrad", False):
        parser.error("--actor-alpha needs --algo td3 --optimizer alphagrad without --size-aware")

    torch.set_num_threads(1)
    L.seed_everything(args.seed, verbose=False)
    kwargs = dict(env_id=args.env_id, total_timesteps=args.total_timesteps, seed=args.seed, optimizer=args.optimizer)
    if args.alpha is not None:
        kwargs["alpha"] = args.alpha
    if args.actor_alpha is not None:
        kwargs["actor_alpha"] = args.actor_alpha
    if args.adam_eps is not None:
        kwargs["adam_eps"] = args.adam_eps
    if args.learning_starts is not None:
        kwargs["learning_starts"] = args.learning_starts
    if args.size_aware:  # TD3's default AlphaGrad settings with size_aware=True, as injected optimizers
        default = {name: p.default for name, p in inspect.signature(TD3).parameters.items()}
        kwargs["actor_optimizer"] = kwargs["critic_optimizer"] = functools.partial(
            AlphaGrad, lr=default["learning_rate"], alpha=args.alpha, momentum=default["momentum"],
            eps=default["alphagrad_eps"], size_aware=True,
        )  # fmt: skip
    if args.algo == "td3":
        model = TD3(eval_interval=args.eval_interval, log_interval=1000, **kwargs)
    else:
        model = DQN(log_interval=1000, **kwargs)
    name = f"{args.algo}-{args.env_id}-{args.optimizer}-seed{args.seed}"
    if args.optimizer == "alphagrad":
        name += f"-{'size_aware_' if args.size_aware else ''}alpha{args.alpha if args.alpha is not None else 'default'}"
        if args.actor_alpha is not None:
            name += f"-actor_alpha{args.actor_alpha:g}"
    if args.adam_eps is not None:
        name += f"-adam_eps{args.adam_eps:g}"
    if args.learning_starts is not None:
        name += f"-ls{args.learning_starts}"
    logger = CSVLogger(args.out, name=name)
    callbacks = [StopAtEnvSteps(args.stop_at)] if args.stop_at else []
    trainer = L.Trainer(
        max_epochs=-1, logger=logger, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=args.out,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - start
    metrics = os.path.join(logger.log_dir, "metrics.csv")
    _, returns = read_curve(metrics, "charts/episodic_return")
    eval_steps, evals = read_curve(metrics, "eval/return_mean")
    print(f"{name}: env_steps={model.env_steps} seconds={seconds:.0f} steps/s={model.env_steps / seconds:.1f}")
    last = np.mean(returns[-args.last_episodes :])
    print(f"mean return of the last {args.last_episodes} logged windows: {last:.1f}")
    if len(evals):
        pairs = zip(eval_steps, evals, strict=True)
        print("eval/return_mean by env step:", ", ".join(f"{s:.0f}: {r:.1f}" for s, r in pairs))


if __name__ == "__main__":
    main()
