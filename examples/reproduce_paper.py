"""Reproduce the paper's three experiments at its budgets: AlphaGrad variants against Adam, over several seeds.

    python examples/reproduce_paper.py run --jobs 2                       # the whole grid (days of one core)
    python examples/reproduce_paper.py run --experiments dqn --jobs 2     # one experiment
    python examples/reproduce_paper.py run --scale smoke                  # minutes: checks the whole pipeline
    python examples/reproduce_paper.py report                             # tables and figures from the curves

Every run is one ``lightning-alphagrad fit`` process (one torch thread, ``--jobs`` at a time) on the paper's settings
(``examples/configs/*.yaml``). It saves a full checkpoint every ``--checkpoint-every`` env steps under ``--work``
(networks, optimizers, schedules, normalizers, counters, RNG seeds and, for TD3/DQN, the replay buffer); run the
same command again after an interruption and each unfinished run resumes from its last checkpoint. A resumed run
differs from an uninterrupted one in two ways only: its envs restart (a fresh episode with fresh reset seeds, since
env states are not checkpointed), and its samplers are re-seeded from ``(seed, env_steps)``; the steps after the
checkpoint are redone and their logged rows replaced. A finished run leaves, under ``--results`` (committed):

- ``<experiment>/<variant>/seed<k>.csv``: its compact learning curve (env steps, episodic return, the panels'
  metrics; the saturation and alpha monitors of AlphaGrad runs against the optimizer step);
- ``<experiment>/<variant>/seed<k>.json``: its manifest entry (commit of every attempt, budget, wall time);

and ``manifest.csv`` lists them all. ``report`` (``paper_report.py``) computes the statistics from these files only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightning_alphagrad.plotting import final_return, read_curve

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
RETURN_KEY = "charts/episodic_return"
# AlphaGrad runs also log what the optimizer does (alpha and tanh saturation per layer and for the whole optimizer)
MONITORS = ("--trainer.callbacks+=lightning_alphagrad.callbacks.AlphaMonitor",
            "--trainer.callbacks+=lightning_alphagrad.callbacks.TanhSaturationMonitor")


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a config of ``examples/configs`` and overrides; ``steps``/``seeds`` override the
    experiment's (a sweep at a shorter budget). ``tuned_by`` names a sweep whose best learning rate this arm takes."""

    name: str
    config: str
    args: tuple[str, ...] = ()
    steps: int | None = None
    seeds: int | None = None
    tuned_by: str | None = None

    @property
    def alphagrad(self) -> bool:
        return "adam" not in self.config


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: its arms, the budget and seeds per scale, the figure's panels."""

    title: str
    variants: tuple[Variant, ...]
    steps: dict[str, int]
    seeds: dict[str, int]
    panels: tuple[tuple[str, str], ...]
    scale_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    run_args: tuple[str, ...] = ()


PPO_LR_SWEEP = (1e-4, 3e-5, 1e-5)
ADAPTIVE = ("--optimizer", "lightning_alphagrad.AlphaGrad", "--optimizer.lr", "3e-4", "--optimizer.alpha", "98",
            "--optimizer.momentum", "0.9", "--optimizer.eps", "1e-5",
            "--lr_scheduler", "lightning_alphagrad.schedules.SaturationTargetAlpha", "--lr_scheduler.target", "0.1")

EXPERIMENTS: dict[str, Experiment] = {
    "dqn": Experiment(
        title="DQN on CartPole-v1",
        variants=(
            Variant("adam", "dqn_cartpole_adam.yaml"),
            *(Variant(f"alphagrad-{a:g}", "dqn_cartpole.yaml", ("--model.alpha", str(a)))
              for a in (93.0, 186.0, 279.0)),
        ),
        steps={"smoke": 12_000, "full": 500_000},
        seeds={"smoke": 1, "full": 5},
        panels=((RETURN_KEY, "Episodic return"), ("charts/episodic_length", "Episode length"),
                ("losses/td_loss", "TD loss"), ("losses/q_values", "Q values")),
        scale_args={"smoke": ("--model.learning_starts", "2000")},
        run_args=("--model.save_replay_buffer", "true"),
    ),
    "ppo": Experiment(
        title="PPO on HalfCheetah-v5",
        variants=(
            Variant("adam", "ppo_halfcheetah_adam.yaml"),
            *(Variant(f"alphagrad-{a:g}", "ppo_halfcheetah.yaml", ("--model.alpha", str(a))) for a in (98.0,)),
            # beyond the paper: AlphaGrad alpha 98 at smaller learning rates (2 seeds, 30 % of the budget) ...
            *(Variant(f"sweep-alphagrad-98-lr{lr:g}", "ppo_halfcheetah.yaml", ("--model.learning_rate", str(lr)),
                      steps=300_000, seeds=2) for lr in PPO_LR_SWEEP),
            # ... and the best of them (highest mean final return) at the full budget
            Variant("alphagrad-98-tuned-lr", "ppo_halfcheetah.yaml", tuned_by="sweep-alphagrad-98-lr"),
            *(Variant(f"alphagrad-{a:g}", "ppo_halfcheetah.yaml", ("--model.alpha", str(a))) for a in (196.0, 294.0)),
            # alpha starts at 98 and is steered to keep 10 % of the update components saturated
            Variant("alphagrad-adaptive", "ppo_halfcheetah.yaml", ADAPTIVE),
            # the baseline on the env version of CleanRL's published number (HalfCheetah-v4: 1442.6 +- 46.0)
            Variant("adam-v4", "ppo_halfcheetah_adam.yaml", ("--model.env_id", "HalfCheetah-v4"), seeds=3),
        ),
        steps={"smoke": 4_096, "full": 1_000_000},
        seeds={"smoke": 1, "full": 5},
        panels=((RETURN_KEY, "Training rewards"), ("losses/explained_variance", "Explained variance"),
                ("losses/entropy", "Entropy loss"), ("losses/approx_kl", "Approx KL")),
    ),
    "td3": Experiment(
        title="TD3 on Hopper-v4",
        variants=(
            Variant("adam", "td3_hopper_adam.yaml"),
            # the best TD3 setting found at 100k env steps (docs/RESULTS_REDUCED.md): a smaller alpha for the actor
            Variant("alphagrad-critic100-actor10", "td3_hopper.yaml",
                    ("--model.critic_alpha", "100", "--model.actor_alpha", "10")),
        ),
        steps={"smoke": 3_000, "full": 500_000},
        seeds={"smoke": 1, "full": 3},
        panels=((RETURN_KEY, "Training rewards"), ("charts/episodic_length", "Episode length"),
                ("losses/qf1_values", "Q values"), ("losses/actor_loss", "Actor loss")),
        scale_args={"smoke": ("--model.learning_starts", "1000")},
        run_args=("--model.save_replay_buffer", "true"),
    ),
}


@dataclass(frozen=True)
class Run:
    experiment: str
    variant: str
    seed: int
    steps: int
    args: tuple[str, ...]
    work: Path  # checkpoints and per-attempt logs (not committed)
    result: Path  # the compact curve, ``<result>.csv``, and manifest entry, ``<result>.json`` (committed)

    @property
    def checkpoint(self) -> Path:
        return self.work / "checkpoints" / "last.ckpt"


# --------------------------------------------------------------------------------------------------- the grid
def tuned_learning_rate(results: Path, experiment: str, sweep: str) -> float | None:
    """The learning rate of the sweep arm ``<sweep><lr>`` with the highest mean final return over its seeds, once
    every run of the sweep has finished (``None`` before)."""
    exp = EXPERIMENTS[experiment]
    means = {}
    for variant in exp.variants:
        if not variant.name.startswith(sweep):
            continue
        finals = []
        for seed in range(variant.seeds or 0):
            curve = results / experiment / variant.name / f"seed{seed}.csv"
            if not curve.exists():
                return None
            finals.append(final_return(*read_curve(curve, RETURN_KEY)))
        means[float(variant.name.removeprefix(sweep))] = sum(finals) / len(finals)
    return max(means, key=means.__getitem__) if means else None


def plan_runs(
    names: Sequence[str],
    scale: str,
    work: Path,
    results: Path,
    seeds: int | None = None,
    variants: Sequence[str] | None = None,
) -> list[Run]:
    """Every (experiment, variant, seed) of the grid with its command line, arm by arm (only ``variants`` if given);
    an arm tuned by a sweep joins the plan once the sweep has finished."""
    runs = []
    for name in names:
        exp = EXPERIMENTS[name]
        for variant in exp.variants:
            if variants is not None and variant.name not in variants:
                continue
            args = ("--config", str(CONFIGS / variant.config), *variant.args)
            if variant.tuned_by:
                lr = tuned_learning_rate(results, name, variant.tuned_by)
                if lr is None:  # the sweep is not finished
                    continue
                args = (*args, "--model.learning_rate", f"{lr:g}")
            steps = exp.steps[scale] if scale != "full" or variant.steps is None else variant.steps
            n_seeds = seeds or (exp.seeds[scale] if scale != "full" or variant.seeds is None else variant.seeds)
            for seed in range(n_seeds):
                run_args = (*args, *(MONITORS if variant.alphagrad else ()), *exp.run_args,
                            *exp.scale_args.get(scale, ()), "--model.total_timesteps", str(steps),
                            "--model.seed", str(seed), "--seed_everything", str(seed),
                            "--trainer.enable_progress_bar", "false")
                where = Path(name) / variant.name
                runs.append(Run(name, variant.name, seed, steps, run_args, work / scale / where / f"seed{seed}",
                                results / where / f"seed{seed}"))
    return runs


# --------------------------------------------------------------------------------------------------- one run
def git_commit(repo: Path) -> str:
    """HEAD of ``repo``, with ``+dirty`` if the package or the examples differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--", "lightning_alphagrad", "examples") else "")


def checkpoint_env_steps(path: Path) -> int:
    """``env_steps`` stored in a checkpoint (0 if there is none)."""
    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["env_steps"])


def merge_attempts(attempts: Sequence[tuple[Path, int]], out_csv: Path) -> int:
    """Join the ``metrics.csv`` of each attempt into one compact CSV and return its number of rows.

    ``attempts``: (metrics.csv, env steps of the checkpoint it resumed from) in order. An attempt's rows logged after
    the next attempt's checkpoint are dropped (the next attempt redid those steps). Monitor rows (no env steps) are
    kept by optimizer step the same way. Only the columns ``committed_column`` accepts are written.
    """
    rows: list[dict[str, str]] = []
    for index, (metrics, _) in enumerate(attempts):
        if not metrics.exists():
            continue
        next_start = attempts[index + 1][1] if index + 1 < len(attempts) else None
        with open(metrics, newline="") as f:
            attempt_rows = list(csv.DictReader(f))
        if next_start is not None:
            # the optimizer step at the next checkpoint: the last one logged at or before its env steps
            last_step = max((int(r["step"]) for r in attempt_rows
                             if r.get("env_steps") and float(r["env_steps"]) <= next_start), default=-1)
            attempt_rows = [r for r in attempt_rows if (float(r["env_steps"]) <= next_start if r.get("env_steps")
                                                        else int(r["step"]) <= last_step)]
        rows += attempt_rows
    columns = sorted({k for r in rows for k, v in r.items() if v != "" and committed_column(k)})
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: compact(row.get(k, "")) for k in columns})
    return len(rows)


def compact(value: str) -> str:
    """A logged number with 6 significant digits (the CSV logger writes 17)."""
    try:
        return f"{float(value):.6g}" if value != "" else ""
    except ValueError:
        return value


def committed_column(key: str) -> bool:
    """Whether a logged column goes into the committed curve: not the per-layer monitor columns (they stay in the
    work dir's logs), nor the throughput (``charts/SPS``, wall-clock noise)."""
    per_layer = key.startswith(("saturation/", "update_abs_mean/")) and not key.endswith("/all")
    return not per_layer and key != "charts/SPS"


class Grid:
    """Runs ``plan_runs``'s runs, resumes unfinished ones, and keeps ``manifest.csv`` up to date."""

    def __init__(self, results: Path, checkpoint_every: int) -> None:
        self.results = results
        self.checkpoint_every = checkpoint_every
        self.commit = git_commit(ROOT)
        self.lock = threading.Lock()

    def execute(self, run: Run) -> dict | None:
        """Run (or resume) one training process unless it already finished; its manifest entry, or None on failure."""
        entry_file = run.result.with_suffix(".json")
        if entry_file.exists():
            return json.loads(entry_file.read_text())
        run.work.mkdir(parents=True, exist_ok=True)
        attempts_file = run.work / "attempts.json"
        attempts = json.loads(attempts_file.read_text()) if attempts_file.exists() else []
        start = checkpoint_env_steps(run.checkpoint)
        attempt_dir = run.work / f"attempt{len(attempts)}"
        attempts.append({"resumed_from_env_steps": start, "commit": self.commit, "wall_s": None})
        attempts_file.write_text(json.dumps(attempts, indent=1))
        args = (*run.args, "--trainer.callbacks+=lightning_alphagrad.callbacks.EnvStepCheckpoint",
                "--trainer.callbacks.dirpath", str(run.checkpoint.parent),
                "--trainer.callbacks.every_n_env_steps", str(self.checkpoint_every),
                "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(attempt_dir),
                "--trainer.logger.name", "", "--trainer.logger.version", "",
                "--trainer.default_root_dir", str(attempt_dir),
                *(("--ckpt_path", str(run.checkpoint)) if start else ()))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        label = f"{run.experiment}/{run.variant}/seed{run.seed}"
        print(f"{label}: {'resumes at ' + str(start) if start else 'starts'}", flush=True)
        began = time.perf_counter()
        with open(run.work / f"attempt{len(attempts) - 1}.log", "w") as log:
            proc = subprocess.run([sys.executable, "-m", "lightning_alphagrad.cli", "fit", *args],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        attempts[-1]["wall_s"] = round(time.perf_counter() - began, 1)
        attempts[-1]["returncode"] = proc.returncode
        attempts_file.write_text(json.dumps(attempts, indent=1))
        if proc.returncode != 0:
            print(f"{label}: failed with exit status {proc.returncode} (see {run.work})", flush=True)
            return None
        metrics = [(run.work / f"attempt{i}" / "metrics.csv", a["resumed_from_env_steps"])
                   for i, a in enumerate(attempts) if a.get("returncode") == 0 or i < len(attempts) - 1]
        rows = merge_attempts(metrics, run.result.with_suffix(".csv"))
        entry = {"experiment": run.experiment, "variant": run.variant, "seed": run.seed, "env_steps": run.steps,
                 "commits": sorted({a["commit"] for a in attempts}), "attempts": len(attempts),
                 "resumed_at": [a["resumed_from_env_steps"] for a in attempts[1:]],
                 "wall_s": round(sum(a["wall_s"] or 0.0 for a in attempts), 1), "rows": rows,
                 "args": list(run.args), "python": platform.python_version(), "torch": torch.__version__,
                 "cpu": platform.processor() or platform.machine()}
        entry_file.write_text(json.dumps(entry, indent=1) + "\n")
        shutil.rmtree(run.checkpoint.parent, ignore_errors=True)  # finished: its checkpoints are not needed
        with self.lock:
            write_manifest(self.results)
        xs, ys = read_curve(run.result.with_suffix(".csv"), RETURN_KEY)
        print(f"{label}: final return {final_return(xs, ys):.1f} ({entry['wall_s']:.0f} s)", flush=True)
        return entry


def write_manifest(results: Path) -> Path:
    """``results/manifest.csv``: one row per finished run, from the runs' JSON entries."""
    columns = ("experiment", "variant", "seed", "env_steps", "commits", "attempts", "resumed_at", "wall_s")
    manifest = results / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for path in sorted(results.glob("*/*/seed*.json")):
            entry = json.loads(path.read_text())
            writer.writerow([" ".join(map(str, v)) if isinstance(v, list) else v for v in map(entry.get, columns)])
    return manifest


def run_in_plan_order(grid: Grid, plan: Callable[[], list[Run]], jobs: int) -> list[dict | None]:
    """Execute the runs of ``plan()`` ``jobs`` at a time, each once, always the first not yet started of a fresh
    plan: an arm that a finished sweep unlocks starts right after that sweep. Returns the manifest entries."""
    entries: list[dict | None] = []
    started: set[Path] = set()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future, Run] = {}
        while True:
            for run in plan():
                if len(running) >= jobs:
                    break
                if run.work not in started:
                    started.add(run.work)
                    running[pool.submit(grid.execute, run)] = run
            if not running:
                return entries
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                entries.append(future.result())


def main(argv: Sequence[str] | None = None) -> list[dict | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the grid")
    run.add_argument("--scale", choices=("smoke", "full"), default="full")
    run.add_argument("--experiments", nargs="+", choices=tuple(EXPERIMENTS), default=list(EXPERIMENTS))
    run.add_argument("--variants", nargs="+", default=None, help="only these arms (default: all)")
    run.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: the scale's)")
    run.add_argument("--jobs", type=int, default=2, help="runs in parallel, one core each")
    run.add_argument("--checkpoint-every", type=int, default=50_000, help="env steps between checkpoints")
    run.add_argument("--work", type=Path, default=Path("runs/reproduce"), help="checkpoints and logs")
    run.add_argument("--results", type=Path, default=None,
                     help="curves and manifest (default: results/paper for --scale full, WORK/results otherwise)")
    report = sub.add_parser("report", help="statistics, tables and figures from the committed curves")
    report.add_argument("--results", type=Path, default=ROOT / "results" / "paper")
    report.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args(argv)
    if args.command == "report":
        from paper_report import write_report  # rliable and pandas: the [repro] extra

        print(f"Report: {write_report(args.results, args.out, EXPERIMENTS)}")
        return []
    for name in ("jobs", "checkpoint_every", "seeds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    results = args.results or (ROOT / "results" / "paper" if args.scale == "full" else args.work / "results")
    grid = Grid(results, args.checkpoint_every)
    known = {v.name for name in args.experiments for v in EXPERIMENTS[name].variants}
    if args.variants is not None and not set(args.variants) <= known:
        parser.error(f"--variants: unknown {sorted(set(args.variants) - known)}; choose from {sorted(known)}")
    entries = run_in_plan_order(grid, lambda: plan_runs(args.experiments, args.scale, args.work, results,
                                                        args.seeds, args.variants), args.jobs)  # fmt: skip
    finished = sum(e is not None for e in entries)
    print(f"{finished} of {len(entries)} runs finished; manifest: {results / 'manifest.csv'}")
    return entries


if __name__ == "__main__":
    main()
