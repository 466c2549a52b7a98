"""Forward + backward time of TD3's two 256-256 critics (batch 256): one after the other vs stacked into baddbmm.

Both variants keep one tensor per critic weight and bias (as AlphaGrad needs); "stacked" stacks them in every forward.
They alternate within one process on one torch thread, so machine load hits both alike.

    python benchmarks/bench_twin_critic.py --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lightning_alphagrad.rl import EnsembleCritic


def stacked_forward(critic: EnsembleCritic, x: torch.Tensor) -> torch.Tensor:
    """Both critics in one ``baddbmm`` per layer on weights stacked for this call: ``(2, B)``."""
    layers = [[m for m in member if isinstance(m, torch.nn.Linear)] for member in critic.members]
    h = x.unsqueeze(0).expand(len(layers), *x.shape)
    for depth in range(len(layers[0])):
        weight = torch.stack([member[depth].weight for member in layers]).transpose(1, 2)
        bias = torch.stack([member[depth].bias for member in layers]).unsqueeze(1)
        h = torch.baddbmm(bias, h, weight)
        if depth < len(layers[0]) - 1:
            h = F.relu(h)
    return h.squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    critic = EnsembleCritic(11, 3)
    params = list(critic.parameters())
    obs, action, target = torch.randn(256, 11), torch.randn(256, 3), torch.randn(256)
    x = torch.cat([obs, action], dim=1)
    variants = {
        "one after the other": lambda: critic(obs, action),
        "stacked baddbmm": lambda: stacked_forward(critic, x),
    }
    torch.testing.assert_close(variants["stacked baddbmm"](), variants["one after the other"]())
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, forward in variants.items():
            for _ in range(10):
                torch.autograd.grad((forward() - target).pow(2).mean(dim=1).sum(), params)
            start = time.perf_counter()
            for _ in range(args.iterations):
                torch.autograd.grad((forward() - target).pow(2).mean(dim=1).sum(), params)
            times[name].append((time.perf_counter() - start) / args.iterations * 1e3)
    for name, values in times.items():
        print(f"{name:20s}: median {statistics.median(values):.2f} ms per forward+backward ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
