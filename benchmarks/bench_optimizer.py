"""Time ``optimizer.step()`` of AlphaGrad's kernels against torch's SGD and Adam on the paper's networks.

Models: (a) PPO actor + critic (HalfCheetah, 64-64 tanh, state-independent log-std), (b) DQN 4-120-84-2 (CartPole),
(c) TD3 256-256 actor and twin critics (Hopper), (d) a 25M-parameter MLP (6 x Linear(2048, 2048)).
Every optimizer steps the same parameters with the same fixed gradients; within one repeat each optimizer takes one
step in turn (interleaved), so load changes on a shared machine hit all of them alike. Reported: the median step
time, ratios to Adam(fused) and Adam(foreach), the memory-bandwidth lower bound (bytes moved per parameter x
parameters / bandwidth of an in-place streaming add timed in the same loop) and the optimizer state in bytes per
parameter.

    python benchmarks/bench_optimizer.py                     # CPU, one thread, all models
    python benchmarks/bench_optimizer.py --device cuda       # the same on a GPU
    python benchmarks/bench_optimizer.py --models a b --repeats 500 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.optim.alphagrad import AUTO_COMPILE_AFTER, EAGER_STEPS_KEY, LARGE_COMPILE_ELEMENTS
from lightning_alphagrad.rl.networks import mlp

# Memory traffic per parameter and step in fp32 (bytes): reads + writes of every per-parameter tensor.
# AlphaGrad reads the gradient twice (its norm, then the update).
BYTES_PER_PARAM = {
    "SGD(momentum=0.9, fused)": 20,  # read p, g, buf; write p, buf
    "Adam(foreach)": 28,  # read p, g, m, v; write p, m, v
    "Adam(fused)": 28,
    "AlphaGrad(momentum=0)": 16,  # read g (norm); read p, g; write p
    "AlphaGrad(momentum=0.9)": 24,  # read g (norm); read p, g, buf; write p, buf
}


def ppo_halfcheetah() -> list[nn.Parameter]:
    """(a) CleanRL's continuous PPO agent for HalfCheetah (obs 17, act 6): 11,085 parameters in 13 tensors."""
    actor, critic = mlp([17, 64, 64, 6], nn.Tanh), mlp([17, 64, 64, 1], nn.Tanh)
    log_std = nn.Parameter(torch.zeros(6))
    return [*actor.parameters(), *critic.parameters(), log_std]


def dqn_cartpole() -> list[nn.Parameter]:
    """(b) The paper's DQN Q-network 4-120-84-2: 10,934 parameters in 6 tensors."""
    return list(mlp([4, 120, 84, 2], nn.ReLU).parameters())


def td3_hopper() -> list[nn.Parameter]:
    """(c) TD3 for Hopper (obs 11, act 3): actor 11-256-256-3 and twin critics 14-256-256-1, 209,413 parameters."""
    nets = [mlp([11, 256, 256, 3], nn.ReLU), mlp([14, 256, 256, 1], nn.ReLU), mlp([14, 256, 256, 1], nn.ReLU)]
    return [p for net in nets for p in net.parameters()]


def mlp_25m() -> list[nn.Parameter]:
    """(d) 6 x Linear(2048, 2048): 25,178,112 parameters in 12 tensors."""
    return list(nn.Sequential(*(nn.Linear(2048, 2048) for _ in range(6))).parameters())


PROBE = "stream probe"

MODELS: dict[str, tuple[str, Callable[[], list[nn.Parameter]]]] = {
    "a": ("PPO actor+critic (HalfCheetah)", ppo_halfcheetah),
    "b": ("DQN 4-120-84-2 (CartPole)", dqn_cartpole),
    "c": ("TD3 actor+twin critics (Hopper)", td3_hopper),
    "d": ("MLP 6x2048x2048 (25M)", mlp_25m),
}


def optimizers(device: torch.device) -> dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]]:
    """Name -> factory. Tiny learning rates keep 1000s of steps on fixed gradients numerically harmless."""
    lr = 1e-7
    factories: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
        "SGD(momentum=0.9, fused)": lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, fused=True),
        "Adam(foreach)": lambda ps: torch.optim.Adam(ps, lr=lr, foreach=True),
        "Adam(fused)": lambda ps: torch.optim.Adam(ps, lr=lr, fused=True),
    }
    impls = ["auto", "reference", "foreach", "flat", "compiled"]
    for momentum in (0.0, 0.9):
        for impl in impls:
            name = f"AlphaGrad(momentum={momentum:g}, {impl})"
            factories[name] = lambda ps, m=momentum, i=impl: AlphaGrad(ps, lr=lr, alpha=10.0, momentum=m, impl=i)
    return factories


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StreamProbe:
    """``x.add_(y)`` on fp32 vectors of the model's size (read x, y; write x: 12 bytes per element).

    An in-place update like an optimizer's (no write-allocate traffic, unlike a copy into a fresh buffer). Timed in
    the same interleaved loop as the optimizers, so the bandwidth it yields holds for the same machine load.
    """

    bytes_per_element = 12

    def __init__(self, numel: int, device: torch.device) -> None:
        self.x = torch.randn(numel, device=device)
        self.y = torch.randn(numel, device=device) * 1e-30

    def step(self) -> None:
        self.x.add_(self.y)


def state_bytes_per_param(optimizer: torch.optim.Optimizer, n_params: int) -> float:
    """Bytes of all per-parameter state tensors (views of one buffer counted once) per parameter."""
    storages: dict[int, int] = {}
    for value in optimizer.state.values():
        if not isinstance(value, dict):
            continue
        for item in value.values():
            if isinstance(item, Tensor):
                storage = item.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) / n_params


@dataclass
class Row:
    model: str
    optimizer: str
    median_us: float | None
    vs_adam_fused: float | None = None
    vs_adam_foreach: float | None = None
    bound_us: float | None = None
    fraction_of_bound: float | None = None
    state_bytes_per_param: float | None = None
    bandwidth_gb_s: float | None = None  # of the interleaved stream probe, on this model's size
    kernel: str | None = None
    error: str | None = None
    samples: int = 0


@dataclass
class Result:
    device: str
    machine: dict[str, str | int | float | None]
    rows: list[Row] = field(default_factory=list)


def kernel_of(optimizer: torch.optim.Optimizer) -> str | None:
    """The kernel(s) AlphaGrad ran in its last step (what ``impl="auto"`` chose)."""
    return "+".join(sorted(set(optimizer.last_impls))) if isinstance(optimizer, AlphaGrad) else None


def bench_model(key: str, device: torch.device, repeats: int, warmup: int, only: list[str] | None) -> list[Row]:
    label, build = MODELS[key]
    torch.manual_seed(0)
    params = [p.to(device) for p in build()]
    params = [nn.Parameter(p.detach()) for p in params]
    for p in params:
        p.grad = torch.randn_like(p)
    n_params = sum(p.numel() for p in params)
    rows: dict[str, Row] = {}
    live: dict[str, torch.optim.Optimizer] = {}
    for name, factory in optimizers(device).items():
        if only and not any(pattern in name for pattern in only):
            continue
        try:
            optimizer = factory(params)
            for _ in range(warmup):  # compiles the compiled kernel, creates state
                optimizer.step()
            if isinstance(optimizer, AlphaGrad) and "auto" in name and device.type == "cpu":
                # time the kernel that "auto" runs for the rest of a long run (past its switch to a compiled graph)
                switch = max(AUTO_COMPILE_AFTER, -(-LARGE_COMPILE_ELEMENTS // n_params))
                while optimizer.last_impls != ("compiled",) and optimizer.param_groups[0][EAGER_STEPS_KEY] < switch:
                    optimizer.step()
            synchronize(device)
        except Exception as error:  # a kernel unavailable here (e.g. no compiler): report, keep going
            rows[name] = Row(label, name, None, error=f"{type(error).__name__}: {error}"[:200])
            continue
        live[name] = optimizer
        rows[name] = Row(label, name, None, kernel=kernel_of(optimizer))

    probe = StreamProbe(n_params, device)
    steps: dict[str, Callable[[], object]] = {name: optimizer.step for name, optimizer in live.items()}
    steps[PROBE] = probe.step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    bandwidth = probe.bytes_per_element * n_params / statistics.median(times[PROBE])

    for name, optimizer in live.items():
        row = rows[name]
        row.median_us = statistics.median(times[name]) * 1e6
        row.samples = len(times[name])
        row.state_bytes_per_param = state_bytes_per_param(optimizer, n_params)
        row.bandwidth_gb_s = bandwidth / 1e9
        family = name.split(",")[0] + ")" if name.startswith("AlphaGrad") else name
        if family in BYTES_PER_PARAM:
            row.bound_us = BYTES_PER_PARAM[family] * n_params / bandwidth * 1e6
            row.fraction_of_bound = row.bound_us / row.median_us
    for reference, attribute in (("Adam(fused)", "vs_adam_fused"), ("Adam(foreach)", "vs_adam_foreach")):
        base = rows.get(reference)
        if base is None or base.median_us is None:
            continue
        for row in rows.values():
            if row.median_us is not None:
                setattr(row, attribute, row.median_us / base.median_us)
    return list(rows.values())


def machine_info(device: torch.device) -> dict[str, str | int | float | None]:
    cpu = platform.processor() or None
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: Result) -> None:
    print(f"device {result.device} | {result.machine}")
    columns = ["model", "optimizer", "kernel", "step (us)", "/ Adam(fused)", "/ Adam(foreach)", "bound (us)"]
    print("| " + " | ".join([*columns, "of bound", "state B/param", "GB/s (probe)"]) + " |")
    print("|" + "---|" * 10)
    for r in result.rows:
        if r.error:
            print(f"| {r.model} | {r.optimizer} | - | error: {r.error} | | | | | | |")
            continue
        print(
            f"| {r.model} | {r.optimizer} | {r.kernel or '-'} | {fmt(r.median_us, '.1f')} | "
            f"{fmt(r.vs_adam_fused, '.2f')} | {fmt(r.vs_adam_foreach, '.2f')} | {fmt(r.bound_us, '.1f')} | "
            f"{fmt(r.fraction_of_bound, '.0%')} | {fmt(r.state_bytes_per_param, '.1f')} | "
            f"{fmt(r.bandwidth_gb_s, '.0f')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=300, help="timed steps per optimizer (small models)")
    parser.add_argument("--repeats-large", type=int, default=15, help="timed steps per optimizer on (d)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per optimizer (compilation, state)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", nargs="*", help="keep optimizers whose name contains one of these strings")
    parser.add_argument("--json", default="benchmarks/bench_optimizer.json", help="where to write the results")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = Result(str(device), machine_info(device))
    for key in args.models:
        repeats = args.repeats_large if key == "d" else args.repeats
        result.rows.extend(bench_model(key, device, repeats, args.warmup, args.only))
    result.machine["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print_table(result)
    with open(args.json, "w") as f:
        json.dump({**asdict(result), "command": " ".join(["python", *sys.argv])}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
