"""Optimizer step under FSDP2: AlphaGrad against torch.optim.AdamW on a sharded MLP, with the collectives per step.

    python -m torch.distributed.run --nproc_per_node 2 benchmarks/bench_fsdp.py            # 2 CPU processes, gloo
    python -m torch.distributed.run --nproc_per_node 2 benchmarks/bench_fsdp.py --device cuda   # one GPU per rank

The model is ``--layers`` x Linear(``--width``, ``--width``) (default 4 x 1024: 4.2M parameters), each layer and the
root sharded with ``fully_shard``. Gradients are fixed random tensors (the backward is not timed). The arms run in
turns, ``--rounds`` x ``--steps`` steps each, and the table gives the median step time per arm, its ratio to AdamW,
the optimizer state per rank and the collectives one step makes (as ``CommDebugMode`` counts them, DTensor's
included). Time it on a quiet machine, one torch thread per process by default.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.debug import CommDebugMode

from lightning_alphagrad import AlphaGrad

ARMS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "AdamW": lambda params: torch.optim.AdamW(params, lr=1e-4),
    "AlphaGrad(momentum=0)": lambda params: AlphaGrad(params, lr=1e-4, alpha=2.0, size_aware=True),
    "AlphaGrad(momentum=0.9)": lambda params: AlphaGrad(params, lr=1e-4, alpha=2.0, size_aware=True, momentum=0.9),
}


def collectives(step: Callable[[], object]) -> dict[str, int]:
    """The collectives ``step()`` makes, by operation, as ``CommDebugMode`` counts them (c10d calls such as
    AlphaGrad's all-reduce and DTensor's own)."""
    with CommDebugMode() as comm:
        step()
    return {str(op): count for op, count in comm.get_comm_counts().items()}


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of this rank's optimizer state tensors (the local shards of sharded ones)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.numel() > 1:
                local = value.to_local() if isinstance(value, DTensor) else value
                total += local.numel() * local.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="steps per arm and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo" if args.device == "cpu" else "nccl")
    rank = dist.get_rank()
    device = torch.device(args.device, rank % torch.cuda.device_count() if args.device == "cuda" else 0)
    if args.device == "cuda":
        torch.cuda.set_device(device)
    mesh = init_device_mesh(args.device, (dist.get_world_size(),))

    def synchronize() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    setups = {}
    for name, make in ARMS.items():
        torch.manual_seed(0)
        model = nn.Sequential(*(nn.Linear(args.width, args.width) for _ in range(args.layers))).to(device)
        for layer in model:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = make(params)
        optimizer.step()  # state and any lazy initialization outside the timing
        setups[name] = (optimizer, collectives(optimizer.step))
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    for _ in range(args.rounds):
        for name, (optimizer, _) in setups.items():
            dist.barrier()
            synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            synchronize()
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    if rank == 0:
        numel = sum(p.numel() for p in nn.Sequential(*(nn.Linear(args.width, args.width)
                                                       for _ in range(args.layers))).parameters())  # fmt: skip
        print(f"FSDP2 on {dist.get_world_size()} {args.device} processes, {numel / 1e6:.1f}M parameters, "
              f"{args.threads} thread(s) each, median of {args.rounds} rounds x {args.steps} steps")
        print("| optimizer | step (ms) | vs AdamW | state per rank (MB) | collectives per step |")
        print("|---|---|---|---|---|")
        adamw = statistics.median(times["AdamW"])
        for name, (optimizer, counts) in setups.items():
            median = statistics.median(times[name])
            print(f"| {name} | {median:.2f} | {median / adamw:.2f} | {state_bytes(optimizer) / 1e6:.1f} | "
                  f"{', '.join(f'{n} {op}' for op, n in counts.items()) or 'none'} |")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
