"""The main job: PPO on CartPole-v1 with AlphaGrad and with Adam, side by side, then a summary and one figure.

    python examples/quickstart.py                                              # seed 0, about a minute
    python examples/quickstart.py --seeds 0 1 2 3 4 --threads 1 2 --check 475  # does the headline hold?

Each run is ``lightning-alphagrad fit --config examples/configs/default.yaml`` (AlphaGrad, alpha 98, momentum 0.9)
or the same with ``--model.optimizer adam``: 50,000 env steps, the same learning rate and schedule for both, an
evaluation of 10 deterministic episodes every 10,000 steps and at the end. The two runs of a seed train at the same
time, one torch thread each; their console output goes to ``alphagrad.log`` and ``adam.log`` beside their logs. With
several seeds or thread counts every combination runs, and ``--check R`` exits with status 1 unless every AlphaGrad
run's final evaluation is at least ``R``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightning_alphagrad.plotting import plot_learning_curves

CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
ARMS = {"AlphaGrad": (), "Adam": ("--model.optimizer", "adam")}


@dataclass
class Run:
    arm: str
    seed: int
    threads: int
    timesteps: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def metrics(self) -> Path:
        return self.directory / "metrics.csv"

    @property
    def console(self) -> Path:
        """The run's console output, beside its log directory."""
        return self.directory.with_name(f"{self.directory.name}.log")

    def last(self, key: str) -> tuple[float, float] | None:
        """``(env_steps, value)`` of the last row that logged ``key`` so far, if any."""
        if not self.metrics.exists():
            return None
        with open(self.metrics, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get(key) and r.get("env_steps")]
        return (float(rows[-1]["env_steps"]), float(rows[-1][key])) if rows else None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "lightning_alphagrad.cli", "fit", "--config", str(CONFIG), *ARMS[self.arm],
                   "--seed_everything", str(self.seed), "--model.seed", str(self.seed),
                   "--model.total_timesteps", str(self.timesteps), "--model.eval_interval", str(self.timesteps // 5),
                   "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(self.directory),
                   "--trainer.logger.name", "", "--trainer.logger.version", "",
                   "--trainer.default_root_dir", str(self.directory),
                   "--trainer.enable_progress_bar", "false"]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        with open(self.console, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def status(runs: Sequence[Run]) -> str:
    parts = []
    for run in runs:
        latest = run.last("charts/episodic_return")
        steps, value = latest if latest else (0.0, float("nan"))
        parts.append(f"{run.arm}: {steps:>6,.0f} / {run.timesteps:,} env steps, return {value:5.1f}")
    return "   ".join(parts)


def train_side_by_side(runs: Sequence[Run]) -> float:
    """Start the runs together, show their progress on a terminal, wait; returns the wall time in seconds."""
    began = time.perf_counter()
    for run in runs:
        run.start()
    interactive = sys.stdout.isatty()
    while any(run.process.poll() is None for run in runs):
        if interactive:
            print(f"\r{status(runs)}", end="", flush=True)
        time.sleep(1.0)
    if interactive:
        print(f"\r{status(runs)}")
    for run in runs:
        if run.process.returncode != 0:
            tail = run.console.read_text().splitlines()[-15:]
            raise SystemExit(f"{run.arm} (seed {run.seed}) failed; the end of {run.console}:\n"
                             + "\n".join(tail))  # fmt: skip
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads per run")
    parser.add_argument("--check", type=float, default=None, help="least final evaluation of every AlphaGrad run")
    parser.add_argument("--timesteps", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    args = parser.parse_args(argv)
    for name, least in (("seeds", 0), ("threads", 1), ("timesteps", 256)):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < least:
            parser.error(f"--{name} must be >= {least}, got {values}")

    finals: dict[tuple[int, int], dict[str, float]] = {}
    for threads in args.threads:
        for seed in args.seeds:
            where = args.out / f"seed{seed}" if len(args.threads) == 1 else args.out / f"seed{seed}-threads{threads}"
            runs = [Run(arm, seed, threads, args.timesteps, where / arm.lower()) for arm in ARMS]
            print(f"PPO on CartPole-v1, {args.timesteps:,} env steps, seed {seed}: AlphaGrad and Adam side by side "
                  f"({threads} torch thread{'s' if threads > 1 else ''} each)")  # fmt: skip
            wall = train_side_by_side(runs)
            title = f"PPO on CartPole-v1, {args.timesteps:,} env steps, seed {seed}: AlphaGrad vs Adam"
            figure = plot_learning_curves({run.arm: run.metrics for run in runs}, where / "cartpole.png", title)
            finals[(seed, threads)] = {}
            print(f"Done in {wall:.0f} s. Final evaluation (mean return of 10 episodes, 500 is the maximum):")
            for run in runs:
                final = run.last("eval/return_mean")
                finals[(seed, threads)][run.arm] = final[1] if final else float("nan")
                print(f"  {run.arm:<9} {finals[(seed, threads)][run.arm]:6.1f}")
            print(f"Logs:        {', '.join(str(run.metrics) for run in runs)}")
            print(f"Checkpoints: {', '.join(str(run.directory / 'checkpoints' / 'last.ckpt') for run in runs)}")
            print(f"Figure:      {figure}\n")
    if args.check is None:
        return 0
    failed = {key: value["AlphaGrad"] for key, value in finals.items() if not value["AlphaGrad"] >= args.check}
    print(f"AlphaGrad final evaluation >= {args.check:g}: {len(finals) - len(failed)} of {len(finals)} runs")
    for (seed, threads), value in failed.items():
        print(f"  below: seed {seed}, {threads} thread(s): {value:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
