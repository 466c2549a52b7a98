"""Training throughput of the language-model benchmark (``examples/lm_benchmark.py``) for every optimizer.

Each optimizer trains its own copy of the model at ``lm_benchmark.py``'s default size (858,880 parameters, batch 16 x
256 bytes) on the same windows; within one round every optimizer takes one training step (forward, backward, ``step()``
and the scheduler) in turn, so load changes hit all of them alike. Reported per optimizer: the median step time,
tokens/s and the share of the step spent in ``optimizer.step()``, and the ratio of the step time to AdamW's. Run it on a
quiet machine.

    python benchmarks/bench_lm.py                   # one torch thread
    python benchmarks/bench_lm.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import lm_benchmark  # noqa: E402  (the benchmark's model and optimizer settings)

# name -> lm_benchmark.ByteLM keyword arguments (all at lr 1e-3: the step time does not depend on it)
CONFIGS: dict[str, dict[str, object]] = {
    "AdamW": dict(optimizer="adamw"),
    "SGD(nesterov)": dict(optimizer="sgd"),
    "Lion": dict(optimizer="lion"),
    "Muon + AdamW": dict(optimizer="muon"),
    "AlphaGrad(momentum=0)": dict(optimizer="alphagrad", alpha=1.0, momentum=0.0, size_aware=True),
    "AlphaGrad(momentum=0.9)": dict(optimizer="alphagrad", alpha=1.0, momentum=0.9, size_aware=True),
    "AlphaGrad(momentum=0.9, adaptive)": dict(optimizer="alphagrad", alpha=1.0, momentum=0.9, size_aware=True,
                                              adaptive=True),
}


def timed_step(model: lm_benchmark.ByteLM, optimizers: list[torch.optim.Optimizer], schedulers: list,
               batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:  # fmt: skip
    """One training step; (whole step, ``optimizer.step()`` alone) in seconds."""
    began = time.perf_counter()
    for optimizer in optimizers:
        optimizer.zero_grad()
    model.bits_per_byte(*batch).backward()
    stepping = time.perf_counter()
    for optimizer in optimizers:
        optimizer.step()
    stepped = time.perf_counter()
    for scheduler in schedulers:
        scheduler.step()
    return time.perf_counter() - began, stepped - stepping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, validation, _ = lm_benchmark.stdlib_corpus()
    default = lm_benchmark.parse_args(["--optimizer", "adamw", "--lr", "1e-3"])  # the benchmark's default size
    size = dict(width=default.width, layers=default.layers, heads=default.heads, context=default.context,
                batch=default.batch)  # fmt: skip
    runs = {}
    for name, config in CONFIGS.items():
        model = lm_benchmark.ByteLM(train, validation, lr=1e-3, steps=1000, **size, **config)  # type: ignore[arg-type]
        optimizers, schedulers = model.configure_optimizers()
        runs[name] = (model, optimizers, schedulers)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_ in range(args.warmup + args.rounds):
        batch = lm_benchmark.windows(train, default.batch, default.context, generator)
        for name, run in runs.items():
            measured = timed_step(*run, batch)
            if round_ >= args.warmup:
                times[name].append(measured)
    base = statistics.median(t for t, _ in times["AdamW"])
    tokens = default.batch * default.context
    print(f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved steps, "
          f"batch {default.batch} x {default.context} bytes")
    print(f"{'optimizer':34s} {'step ms':>8s} {'tokens/s':>9s} {'step() ms':>9s} {'vs AdamW':>8s}")
    for name, measured in times.items():
        step = statistics.median(t for t, _ in measured)
        opt = statistics.median(o for _, o in measured)
        print(f"{name:34s} {step * 1e3:8.1f} {tokens / step:9.0f} {opt * 1e3:9.2f} {step / base:8.2f}")


if __name__ == "__main__":
    main()
