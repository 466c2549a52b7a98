"""Cold start: the longest ``step()`` of a run whose AlphaGrad compiles its graph on the way, with an empty compiler
cache (as on every fresh machine and CI run).

    python benchmarks/bench_cold_start.py                                     # the library's thresholds
    python benchmarks/bench_cold_start.py --compile-start 200 --switch 600    # a short check of the mechanism
    python benchmarks/bench_cold_start.py --model mlp25m                      # a large group (LARGE_COMPILE_ELEMENTS)

Trains the main job's PPO (CartPole-v1, AlphaGrad alpha 98, momentum 0.9, one torch thread) until 2,000 optimizer
steps past AlphaGrad's switch to the compiled graph (``AUTO_COMPILE_AFTER``; the compilation starts in the background
at ``AUTO_COMPILE_START``), with ``TORCHINDUCTOR_CACHE_DIR`` set to a new empty directory, and prints the longest
optimizer step, where it happened, how many steps took over 1 s, and at which step the kernel switched. With
``--model mlp25m``: a 6 x Linear(2048, 2048) MLP (25M parameters, one group) fitting random data (batch 32, AlphaGrad
alpha 5, momentum 0.9) until 200 steps past its switch from the foreach kernel to its compiled graph (compiled in the
background from step 200, LARGE_COMPILE_START_ELEMENTS). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")  # before torch reads it

import lightning as L  # noqa: E402
import torch  # noqa: E402

from lightning_alphagrad import AlphaGrad  # noqa: E402
from lightning_alphagrad.cli import config_model_args, quiet_third_party  # noqa: E402
from lightning_alphagrad.optim import alphagrad as alphagrad_module  # noqa: E402
from lightning_alphagrad.rl import PPO  # noqa: E402


class StepTimes(L.Callback):
    """Wall time of every optimizer step, and the kernel each ran."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.impls: list[tuple[str, ...]] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        optimizer.register_step_pre_hook(lambda *_: setattr(self, "_began", time.perf_counter()))
        optimizer.register_step_post_hook(lambda opt, *_: self._record(opt))

    def _record(self, optimizer: torch.optim.Optimizer) -> None:
        self.seconds.append(time.perf_counter() - self._began)
        self.impls.append(optimizer.last_impls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile-start", type=int, default=alphagrad_module.AUTO_COMPILE_START)
    parser.add_argument("--switch", type=int, default=alphagrad_module.AUTO_COMPILE_AFTER)
    parser.add_argument("--model", choices=["ppo", "mlp25m"], default="ppo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "mlp25m":
        large_group()
        return
    quiet_third_party()
    if not 0 < args.compile_start < args.switch:
        parser.error(f"need 0 < --compile-start < --switch, got {args.compile_start} and {args.switch}")
    alphagrad_module.AUTO_COMPILE_START, alphagrad_module.AUTO_COMPILE_AFTER = args.compile_start, args.switch
    steps_per_iteration, env_steps_per_iteration = 20, 256  # 20 epochs of one minibatch of 8 envs x 32 steps
    iterations = -(-(args.switch + 2000) // steps_per_iteration)
    main_job = config_model_args(Path(__file__).resolve().parents[1] / "examples" / "configs" / "default.yaml")
    model = PPO(**{**main_job, "total_timesteps": iterations * env_steps_per_iteration, "eval_interval": None,
                   "num_eval_episodes": 0})  # fmt: skip
    times = StepTimes()
    began = time.perf_counter()
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[times]).fit(model)  # fmt: skip
    wall = time.perf_counter() - began
    longest = max(range(len(times.seconds)), key=times.seconds.__getitem__)
    switched = next((i for i, impls in enumerate(times.impls) if impls == ("compiled",)), None)
    print(f"cache dir {os.environ['TORCHINDUCTOR_CACHE_DIR']} (empty at start), compile from step "
          f"{args.compile_start}, switch at step {args.switch}; {len(times.seconds)} optimizer steps in {wall:.1f} s")
    print(f"longest step: {times.seconds[longest]:.3f} s at step {longest}; steps over 1 s: "
          f"{sum(s > 1.0 for s in times.seconds)}; first compiled step: {switched}")


def large_group() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(2048, 2048) for _ in range(6)))
    optimizer = AlphaGrad(model.parameters(), lr=1e-3, alpha=5.0, momentum=0.9)
    switch = -(-alphagrad_module.LARGE_COMPILE_ELEMENTS // sum(p.numel() for p in model.parameters()))
    x, y = torch.randn(32, 2048), torch.randn(32, 2048)
    seconds, impls = [], []
    began = time.perf_counter()
    for _ in range(switch + 200):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        start = time.perf_counter()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        impls.append(optimizer.last_impls)
    wall = time.perf_counter() - began
    longest = max(range(len(seconds)), key=seconds.__getitem__)
    switched = impls.index(("compiled",)) if ("compiled",) in impls else None
    print(f"cache dir {os.environ['TORCHINDUCTOR_CACHE_DIR']} (empty at start), 25M-parameter MLP, switch at step "
          f"{switch}; {len(seconds)} optimizer steps in {wall:.1f} s")
    print(f"longest step: {seconds[longest]:.3f} s at step {longest}; steps over 1 s: {sum(s > 1.0 for s in seconds)}; "
          f"first compiled step: {switched}; median step before / after: {statistics.median(seconds[:switch]):.4f} / "
          f"{statistics.median(seconds[switch:]):.4f} s")


if __name__ == "__main__":
    main()
