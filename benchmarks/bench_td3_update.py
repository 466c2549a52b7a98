"""Lower bounds on one TD3 update here: its matmuls alone, and a plain torch update with no env and no Lightning.

One update as in CleanRL's ``td3_continuous_action.py`` on Hopper (obs 11, action 3, batch 256, 256-256 ReLU actor
and twin critics): target actor and both target critics forward, both critics forward and backward, Adam; every
second update also the actor forward through the first critic, backward to the actor's weights, Adam and the Polyak
update of all targets. Two measurements alternate within one process on one torch thread:

- ``matmuls``: only the matrix products that update needs (the shapes autograd would run), on random data;
- ``plain torch``: the whole update written directly in torch (fused Adam, gradients of the actor loss for the
  actor's weights only), on random batches already in memory.

    python benchmarks/bench_td3_update.py --rounds 5

Compare with the per-update time of the full modules in ``bench_rl_offpolicy.py`` (env, replay and Lightning
included).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightning_alphagrad.rl.networks import mlp

OBS, ACT, HIDDEN, BATCH = 11, 3, 256, 256


def relu_mlp(n_in: int, n_out: int) -> nn.Sequential:
    return mlp([n_in, HIDDEN, HIDDEN, n_out], nn.ReLU)


def matmuls_only() -> Callable[[], None]:
    """One update's matrix products: ``addmm`` for each forward layer, ``mm`` for each gradient autograd computes."""
    r = torch.randn
    weights = {"critic": [r(HIDDEN, OBS + ACT), r(HIDDEN, HIDDEN), r(1, HIDDEN)],
               "actor": [r(HIDDEN, OBS), r(HIDDEN, HIDDEN), r(ACT, HIDDEN)]}  # fmt: skip
    biases = {net: [r(w.shape[0]) for w in ws] for net, ws in weights.items()}
    inputs = {"critic": r(BATCH, OBS + ACT), "actor": r(BATCH, OBS)}
    out_grads = {"critic": r(BATCH, 1), "actor": r(BATCH, ACT)}
    hidden, hidden_grad = r(BATCH, HIDDEN), r(BATCH, HIDDEN)

    def forward(net: str) -> None:
        layer_inputs = (inputs[net], hidden, hidden)
        for x, w, b in zip(layer_inputs, weights[net], biases[net], strict=True):
            torch.addmm(b, x, w.t())

    def backward(net: str, weight_grads: bool = True, input_grad: bool = False) -> None:
        w1, w2, w3 = weights[net]
        if weight_grads:
            torch.mm(out_grads[net].t(), hidden)
            torch.mm(hidden_grad.t(), hidden)
            torch.mm(hidden_grad.t(), inputs[net])
        torch.mm(out_grads[net], w3)
        torch.mm(hidden_grad, w2)
        if input_grad:  # the actor loss needs dQ/d(action)
            torch.mm(hidden_grad, w1)

    count = [0]

    def update() -> None:
        for net in ("actor", "critic", "critic"):  # the targets
            forward(net)
        for _ in range(2):  # the twin critics
            forward("critic")
            backward("critic")
        if count[0] % 2 == 0:
            forward("actor")
            forward("critic")
            backward("critic", weight_grads=False, input_grad=True)
            backward("actor")
        count[0] += 1

    return update


def plain_torch() -> Callable[[], None]:
    """The whole TD3 update on fixed random batches (Hopper's action bounds are +-1)."""
    actor, critics = relu_mlp(OBS, ACT), nn.ModuleList([relu_mlp(OBS + ACT, 1), relu_mlp(OBS + ACT, 1)])
    target_actor, target_critics = copy.deepcopy(actor), copy.deepcopy(critics)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4, fused=True)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=3e-4, fused=True)
    actor_params, critic_params = list(actor.parameters()), list(critics.parameters())
    online = [*actor.parameters(), *critics.parameters()]
    targets = [*target_actor.parameters(), *target_critics.parameters()]
    obs, next_obs = torch.randn(BATCH, OBS), torch.randn(BATCH, OBS)
    actions, rewards, dones = torch.rand(BATCH, ACT) * 2 - 1, torch.randn(BATCH), torch.zeros(BATCH)
    count = [0]

    def q_values(nets: nn.ModuleList, o: Tensor, a: Tensor) -> list[Tensor]:
        x = torch.cat([o, a], dim=1)
        return [net(x).squeeze(1) for net in nets]

    def update() -> None:
        with torch.no_grad():
            noise = (torch.randn(BATCH, ACT) * 0.2).clamp(-0.5, 0.5)
            next_actions = (torch.tanh(target_actor(next_obs)) + noise).clamp(-1, 1)
            next_q = torch.minimum(*q_values(target_critics, next_obs, next_actions))
            target = rewards + (1 - dones) * 0.99 * next_q
        loss = sum((q - target).pow(2).mean() for q in q_values(critics, obs, actions))
        for p, g in zip(critic_params, torch.autograd.grad(loss, critic_params), strict=True):
            p.grad = g
        critic_opt.step()
        if count[0] % 2 == 0:
            actor_loss = -critics[0](torch.cat([obs, torch.tanh(actor(obs))], dim=1)).mean()
            for p, g in zip(actor_params, torch.autograd.grad(actor_loss, actor_params), strict=True):
                p.grad = g
            actor_opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(targets, online, 0.005)
        count[0] += 1

    return update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=200, help="updates per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    arms = {"matmuls": matmuls_only(), "plain torch": plain_torch()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for update in arms.values():  # warm-up
        for _ in range(20):
            update()
    for _ in range(args.rounds):
        for name, update in arms.items():
            start = time.process_time()
            for _ in range(args.updates):
                update()
            times[name].append((time.process_time() - start) / args.updates * 1e3)
    print(f"ms per TD3 update (CPU time, 1 torch thread, {args.rounds} rounds of {args.updates} updates)")
    for name, ms in times.items():
        print(f"  {name:12s} median {statistics.median(ms):.2f}  (rounds: {', '.join(f'{t:.2f}' for t in ms)})")


if __name__ == "__main__":
    main()
