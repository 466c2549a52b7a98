"""Per-rank cost of DDP on CPU: PPO env steps/s per rank with 1 process vs ``strategy="ddp"`` with N processes.

    python benchmarks/bench_ddp.py --env-id HalfCheetah-v5 --iterations 3 --devices 2

Each rank does the same work in both runs (``iterations`` PPO iterations of 2048 steps, CleanRL MuJoCo settings, one
torch thread per process), so per-rank steps/s would be equal if DDP cost nothing. The driver runs the 1-process and
N independent 1-process runs at once (the cost of sharing the CPU, without DDP), then the N-process DDP run, each in
a fresh interpreter (``strategy="ddp"`` re-launches the script), and checks that all ranks end with identical
parameters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import lightning as L
import numpy as np
import torch

from lightning_alphagrad.rl import PPO

RESULT_PREFIX = "RESULT "


class Timer(L.Callback):
    """Wall time of the training loop (all ranks start together) and a cross-rank parameter check at the end."""

    def on_train_start(self, trainer: L.Trainer, pl_module: PPO) -> None:
        trainer.strategy.barrier()
        self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: PPO) -> None:
        seconds = time.perf_counter() - self.start
        params = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
        gathered = pl_module.all_gather(params).reshape(trainer.world_size, -1)
        if trainer.is_global_zero:
            per_rank = pl_module.env_steps / trainer.world_size / seconds
            identical = bool((gathered == gathered[0]).all())
            result = {"devices": trainer.world_size, "per_rank_steps_per_s": per_rank, "identical_params": identical}
            print(RESULT_PREFIX + json.dumps(result), flush=True)


def worker(env_id: str, iterations: int, devices: int) -> None:
    torch.set_num_threads(1)
    model = PPO(env_id=env_id, total_timesteps=2048 * iterations * devices, num_eval_episodes=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
    )
    trainer.fit(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=3, help="PPO iterations of 2048 steps per rank")
    parser.add_argument("--devices", type=int, default=2, help="processes of the DDP run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.env_id, args.iterations, args.devices)
        return

    def command(devices: int) -> list[str]:
        options = ["--env-id", args.env_id, "--iterations", str(args.iterations), "--devices", str(devices)]
        return [sys.executable, __file__, "--worker", *options]

    def result(output: str) -> dict:
        line = next(line for line in output.splitlines() if line.startswith(RESULT_PREFIX))
        return json.loads(line[len(RESULT_PREFIX) :])

    single = result(subprocess.run(command(1), capture_output=True, text=True, check=True).stdout)
    print("1 process alone:", single, flush=True)
    # The same number of independent 1-process runs at once: what sharing the CPU costs without any DDP.
    processes = [subprocess.Popen(command(1), stdout=subprocess.PIPE, text=True) for _ in range(args.devices)]
    concurrent = [result(process.communicate()[0]) for process in processes]
    print(f"{args.devices} independent processes at once:", concurrent, flush=True)
    ddp = result(subprocess.run(command(args.devices), capture_output=True, text=True, check=True).stdout)
    print(f"ddp with {args.devices} processes:", ddp, flush=True)

    alone, shared = single["per_rank_steps_per_s"], np.mean([r["per_rank_steps_per_s"] for r in concurrent])
    per_rank = ddp["per_rank_steps_per_s"]
    print(f"\n{args.env_id}, {args.iterations} iterations of 2048 steps per rank, 1 torch thread per process")
    print(f"1 process alone:                        {alone:.0f} env steps/s")
    print(f"{args.devices} independent processes at once:      {shared:.0f} env steps/s each")
    total = per_rank * args.devices
    print(
        f"ddp, {args.devices} processes:                      {per_rank:.0f} env steps/s per rank, {total:.0f} in total"
    )
    print(f"per-rank throughput: ddp / alone = {per_rank / alone:.2f}x, ddp / independent = {per_rank / shared:.2f}x")
    print(f"identical parameters on all ranks: {ddp['identical_params']}")


if __name__ == "__main__":
    main()
