"""Is a TD3 actor still alive? Train briefly, then measure its tanh output's saturation and the gradient reaching it.

    python examples/studies/td3_actor_saturation.py --seed 2 --optimizer alphagrad --alpha 100 --steps 3000 6000
    python examples/studies/td3_actor_saturation.py --seed 2 --optimizer adam --steps 3000 6000

For each ``--steps`` value one fresh, seeded run (Hopper-v4, learning_starts 1000, every other setting TD3's default)
is trained, and on 1024 replay observations it prints: the fraction of action components with ``|a| > 0.99`` (Hopper's
bounds are +-1), the mean ``|pre-tanh|`` of the output layer, and the fraction of the actor's gradient entries (of
the actor loss ``-Q1(s, actor(s))``) that are exactly zero. An actor whose tanh is saturated everywhere receives an
all-zero gradient in fp32 and never moves again.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch

from lightning_alphagrad.rl import TD3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", choices=("adam", "alphagrad"), default="alphagrad")
    parser.add_argument("--alpha", type=float, default=100.0)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--steps", type=int, nargs="+", default=[3000, 6000], help="env steps of each run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {"alpha": args.alpha, "momentum": args.momentum} if args.optimizer == "alphagrad" else {}
    label = args.optimizer + (f" alpha {args.alpha:g} momentum {args.momentum:g}" if options else "")
    for steps in args.steps:
        L.seed_everything(args.seed, verbose=False)
        model = TD3(
            env_id="Hopper-v4", total_timesteps=steps, learning_starts=1000, seed=args.seed, optimizer=args.optimizer,
            **options,
        )  # fmt: skip
        trainer = L.Trainer(
            max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model)
        obs = model.replay_buffer.sample(1024).obs
        pre_tanh = model.actor.net[:-1](obs)  # the output layer before its Tanh
        actions = model.actor(obs)
        actor_loss = -model.critic(obs, actions, num_members=1).mean()
        grads = torch.autograd.grad(actor_loss, list(model.actor.parameters()))
        zero = sum(int((g == 0).sum()) for g in grads) / sum(g.numel() for g in grads)
        at_bounds = float((actions.abs() > 0.99).float().mean())
        print(
            f"{label}, seed {args.seed}, {steps} env steps: |a| > 0.99 for {at_bounds:.1%} of action components,"
            f" mean |pre-tanh| {float(pre_tanh.abs().mean()):.1f}, actor gradient entries exactly zero {zero:.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
