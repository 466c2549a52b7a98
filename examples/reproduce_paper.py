"""Reproduce the paper's three experiments: AlphaGrad variants against Adam, over several seeds.

    python examples/reproduce_paper.py --scale smoke                  # minutes: checks the whole pipeline
    python examples/reproduce_paper.py --scale reduced --jobs 2       # what docs/RESULTS.md reports
    python examples/reproduce_paper.py --scale full --experiments ppo # the paper's budgets

Every run is one ``lightning-alphagrad fit`` process (one torch thread each, ``--jobs`` at a time) writing a
``metrics.csv`` under ``OUT/<experiment>/<variant>/seed<k>/``; a finished run leaves ``result.json`` and is not run
again, so an interrupted reproduction resumes where it stopped. At the end the script writes ``OUT/summary.md``
(final return mean +- std over seeds, area under the return curve, collapses of the return, diverged runs) and one
figure per experiment mirroring the paper's (``OUT/<experiment>.png``: each AlphaGrad variant vs Adam, mean and a
+-1 std band).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_alphagrad.plotting import plot_panels, read_curve

CONFIGS = Path(__file__).resolve().parent / "configs"
RETURN_KEY = "charts/episodic_return"


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: its configs, the alphas it sweeps, the figure panels and budgets per scale."""

    title: str
    alphagrad_config: str
    adam_config: str
    alphas: tuple[float, ...]
    alpha_args: tuple[str, ...]  # CLI keys that receive the alpha value
    steps_arg: str
    panels: tuple[tuple[str, str], ...]
    steps: dict[str, int]
    seeds: dict[str, int]
    extra_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per-scale overrides
    extra_variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> args on the AlphaGrad config

    def variants(self) -> dict[str, tuple[str, ...]]:
        """Variant name -> its command-line arguments: Adam, one AlphaGrad run per alpha, then the extra variants."""
        variants = {"adam": ("--config", str(CONFIGS / self.adam_config))}
        alphagrad = ("--config", str(CONFIGS / self.alphagrad_config))
        for alpha in self.alphas:
            variants[f"alphagrad-{alpha:g}"] = (*alphagrad, *(a for key in self.alpha_args for a in (key, str(alpha))))
        for name, args in self.extra_variants.items():
            variants[name] = (*alphagrad, *args)
        monitors = ("--trainer.callbacks+=lightning_alphagrad.callbacks.AlphaMonitor",
                    "--trainer.callbacks+=lightning_alphagrad.callbacks.TanhSaturationMonitor")
        return {name: args if name == "adam" else (*args, *monitors) for name, args in variants.items()}


EXPERIMENTS: dict[str, Experiment] = {
    "dqn": Experiment(
        title="DQN on CartPole-v1",
        alphagrad_config="dqn_cartpole.yaml",
        adam_config="dqn_cartpole_adam.yaml",
        alphas=(93.0, 186.0, 279.0),
        alpha_args=("--model.alpha",),
        steps_arg="--model.total_timesteps",
        panels=((RETURN_KEY, "Episodic return"), ("charts/episodic_length", "Episode length"),
                ("losses/td_loss", "TD loss"), ("losses/q_values", "Q values")),
        steps={"smoke": 12_000, "reduced": 150_000, "full": 500_000},
        seeds={"smoke": 1, "reduced": 3, "full": 3},
        extra_args={"smoke": ("--model.learning_starts", "2000")},
    ),
    "td3": Experiment(
        title="TD3 on Hopper-v4",
        alphagrad_config="td3_hopper.yaml",
        adam_config="td3_hopper_adam.yaml",
        alphas=(25.0, 100.0),
        alpha_args=("--model.alpha",),
        steps_arg="--model.total_timesteps",
        panels=((RETURN_KEY, "Training rewards"), ("charts/episodic_length", "Episode length"),
                ("losses/qf1_values", "Q values"), ("losses/actor_loss", "Actor loss")),
        steps={"smoke": 3_000, "reduced": 30_000, "full": 500_000},
        seeds={"smoke": 1, "reduced": 2, "full": 3},
        extra_args={"smoke": ("--model.learning_starts", "1000"), "reduced": ("--model.learning_starts", "5000")},
    ),
    "ppo": Experiment(
        title="PPO on HalfCheetah-v5",
        alphagrad_config="ppo_halfcheetah.yaml",
        adam_config="ppo_halfcheetah_adam.yaml",
        alphas=(98.0, 196.0, 294.0),
        alpha_args=("--model.alpha",),
        steps_arg="--model.total_timesteps",
        panels=((RETURN_KEY, "Training rewards"), ("losses/explained_variance", "Explained variance"),
                ("losses/entropy", "Entropy loss"), ("losses/approx_kl", "Approx KL")),
        steps={"smoke": 4_096, "reduced": 122_880, "full": 1_000_000},
        seeds={"smoke": 1, "reduced": 3, "full": 3},
        extra_variants={
            # alpha * sqrt(numel) per tensor; 1.5 equals alpha 98 on the 64x64 hidden matrices
            "alphagrad-size-aware-1.5": ("--optimizer", "lightning_alphagrad.AlphaGrad", "--optimizer.lr", "3e-4",
                                         "--optimizer.alpha", "1.5", "--optimizer.size_aware", "true",
                                         "--optimizer.momentum", "0.9", "--optimizer.eps", "1e-5"),
            # alpha starts at 98 and is steered to keep 10 % of the update components saturated
            "alphagrad-adaptive": ("--optimizer", "lightning_alphagrad.AlphaGrad", "--optimizer.lr", "3e-4",
                                   "--optimizer.alpha", "98", "--optimizer.momentum", "0.9", "--optimizer.eps",
                                   "1e-5", "--lr_scheduler", "lightning_alphagrad.schedules.SaturationTargetAlpha",
                                   "--lr_scheduler.target", "0.1"),
        },
    ),
}


@dataclass(frozen=True)
class Run:
    experiment: str
    variant: str
    seed: int
    args: tuple[str, ...]
    out: Path


def plan_runs(names: Sequence[str], scale: str, out: Path, seeds: int | None) -> list[Run]:
    """Every (experiment, variant, seed) of the grid with its command-line arguments."""
    runs = []
    for name in names:
        exp = EXPERIMENTS[name]
        for variant, variant_args in exp.variants().items():
            for seed in range(seeds or exp.seeds[scale]):
                run_dir = out / name / variant / f"seed{seed}"
                args = (*variant_args, exp.steps_arg, str(exp.steps[scale]),
                        *exp.extra_args.get(scale, ()), "--model.seed", str(seed), "--seed_everything", str(seed),
                        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(run_dir),
                        "--trainer.logger.name", "", "--trainer.logger.version", "",
                        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false")
                runs.append(Run(name, variant, seed, args, run_dir))
    return runs


def final_return(xs: np.ndarray, ys: np.ndarray) -> float:
    """Mean episodic return over the last 10 % of the run's env steps."""
    return float(ys[xs >= xs[-1] - 0.1 * (xs[-1] - xs[0])].mean())


def area_under_curve(xs: np.ndarray, ys: np.ndarray) -> float:
    """Mean episodic return over the whole run (area under the curve divided by its env-step span)."""
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if xs[-1] > xs[0] else float(ys.mean())


def collapses(ys: np.ndarray, high: float = 0.8, low: float = 0.3) -> int:
    """How often the return falls from the top ``1 - high`` to the bottom ``low`` of the run's range (instability)."""
    lo, span, count, armed = ys.min(), ys.max() - ys.min(), 0, False
    for y in ys:
        if y >= lo + high * span:
            armed = True
        elif armed and y <= lo + low * span:
            count, armed = count + 1, False
    return count


def execute(run: Run) -> dict:
    """Run one training process unless it already finished; returns its ``result.json`` contents."""
    result_file = run.out / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    run.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(run.out / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "lightning_alphagrad.cli", "fit", *run.args],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    metrics = run.out / "metrics.csv"
    xs, ys = read_curve(metrics, RETURN_KEY) if metrics.exists() else (np.array([]), np.array([]))
    diverged = proc.returncode != 0 or not np.isfinite(ys).all()
    result = {"experiment": run.experiment, "variant": run.variant, "seed": run.seed, "returncode": proc.returncode,
              "diverged": bool(diverged), "episodes": int(len(ys)),
              "final_return": final_return(xs, ys) if len(ys) else math.nan,
              "auc": area_under_curve(xs, ys) if len(ys) else math.nan}
    if proc.returncode == 0 or metrics.exists():  # a crash before any metric is worth a rerun, not a result
        result_file.write_text(json.dumps(result, indent=1))
    print(f"{run.experiment}/{run.variant}/seed{run.seed}: final return {result['final_return']:.1f}"
          f"{' (diverged)' if diverged else ''}", flush=True)
    return result


def summarize(results: list[dict], runs: list[Run], out: Path, scale: str) -> Path:
    """Write ``summary.md`` and one figure per experiment."""
    lines = [f"# Reproduction summary (scale: {scale})", "",
             "| experiment | variant | seeds | final return (mean +- std) | AUC (mean +- std) | collapses per run "
             "| diverged |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r.experiment for r in runs):
        exp = EXPERIMENTS[name]
        by_variant: dict[str, list[dict]] = {}
        for res in results:
            if res["experiment"] == name:
                by_variant.setdefault(res["variant"], []).append(res)
        for variant, group in by_variant.items():
            finals = np.array([r["final_return"] for r in group if not math.isnan(r["final_return"])])
            aucs = np.array([r["auc"] for r in group if not math.isnan(r["auc"])])
            fmt = (lambda a: f"{a.mean():.1f} +- {a.std():.1f}" if len(a) else "n/a")  # noqa: E731
            curves = [read_curve(r.out / "metrics.csv", RETURN_KEY) for r in runs
                      if r.experiment == name and r.variant == variant and (r.out / "metrics.csv").exists()]
            drops = [collapses(ys) for _, ys in curves if len(ys)]
            lines.append(f"| {exp.title} | {variant} | {len(group)} | {fmt(finals)} | {fmt(aucs)} | "
                         f"{np.mean(drops) if drops else math.nan:.1f} | {sum(r['diverged'] for r in group)} |")
        files = {}
        for run in runs:
            if run.experiment == name and (run.out / "metrics.csv").exists():
                files.setdefault(run.variant, []).append(run.out / "metrics.csv")
        if files:
            png = plot_panels(files, exp.panels, out / f"{name}.png", title=f"{exp.title} ({scale})")
            lines += ["", f"![{exp.title}]({png.name})", ""]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("smoke", "reduced", "full"), default="smoke")
    parser.add_argument("--experiments", nargs="+", choices=tuple(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: the scale's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (default: cores)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    args = parser.parse_args(argv)
    if args.jobs <= 0:
        parser.error(f"--jobs must be a positive integer, got {args.jobs}")
    if args.seeds is not None and args.seeds <= 0:
        parser.error(f"--seeds must be a positive integer, got {args.seeds}")
    out = args.out / args.scale
    runs = plan_runs(args.experiments, args.scale, out, args.seeds)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(execute, runs))
    summary = summarize(results, runs, out, args.scale)
    print(f"Summary: {summary}")
    return summary


if __name__ == "__main__":
    main()
