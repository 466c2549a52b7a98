"""The language-model benchmark's sweep (``lm_benchmark.py``), run in pieces: finished runs are kept, the rest run.

    python examples/lm_sweep.py plan                  # every run of the sweep, and which have finished
    python examples/lm_sweep.py run --jobs 2          # the unfinished ones, two at a time (one torch thread each)
    python examples/lm_sweep.py report                # the table (printed) and the figures of docs/BEYOND_RL.md

Three phases, each planned once the one before it has finished for an arm:

1. learning rate: every arm at 4 log-spaced peak learning rates, seed 0; where the best one is at an end of the grid,
   the grid grows by the next value on the 1-3-10 scale past that end (at most ``MAX_EXTENSIONS`` times);
2. seeds: seed 1 at the arm's best learning rate (lowest final validation bits per byte of phase 1);
3. alpha: the AlphaGrad arms ``alphagrad-m0.9`` (fixed alpha) and ``alphagrad-m0.9-size-aware`` at their best
   learning rate with alpha scaled by 1/4, 1/2, 2 and 4;
4. sharded: AdamW, and the AlphaGrad arm with the lowest final loss of phase 1, at their best learning rate with
   ``--devices 2`` (FSDP2 over 2 processes; such a run takes both cores and runs alone).

Every run is ``lm_benchmark.py`` at its default size (see its ``--help``). A finished run leaves
``results/lm/<name>.json`` (its result, the validation curve, and the commit it ran on) and ``results/lm/<name>.csv``
(the logged metrics, with the monitors' gradient norms, saturation and alpha).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import lm_benchmark  # noqa: E402  (a sibling script: the names and arguments of its runs)

# arm -> (arguments of lm_benchmark.py, peak learning rates of phase 1)
ARMS: dict[str, tuple[list[str], list[float]]] = {
    "adamw": (["--optimizer", "adamw"], [3e-4, 1e-3, 3e-3, 1e-2]),
    "sgd": (["--optimizer", "sgd"], [1e-2, 3e-2, 1e-1, 3e-1]),
    "lion": (["--optimizer", "lion"], [3e-5, 1e-4, 3e-4, 1e-3]),
    "muon": (["--optimizer", "muon"], [3e-4, 1e-3, 3e-3, 1e-2]),
    "alphagrad-m0.9": (["--optimizer", "alphagrad", "--alpha", "10", "--momentum", "0.9"], [1e-3, 3e-3, 1e-2, 3e-2]),
    "alphagrad-m0": (["--optimizer", "alphagrad", "--alpha", "10", "--momentum", "0"], [1e-3, 3e-3, 1e-2, 3e-2]),
    "alphagrad-m0.9-size-aware": (
        ["--optimizer", "alphagrad", "--alpha", "1", "--momentum", "0.9", "--size-aware"],
        [1e-4, 3e-4, 1e-3, 3e-3],
    ),
    "alphagrad-m0-size-aware": (
        ["--optimizer", "alphagrad", "--alpha", "1", "--momentum", "0", "--size-aware"],
        [1e-4, 3e-4, 1e-3, 3e-3],
    ),
    "alphagrad-m0.9-adaptive": (
        ["--optimizer", "alphagrad", "--alpha", "1", "--momentum", "0.9", "--size-aware", "--adaptive"],
        [1e-4, 3e-4, 1e-3, 3e-3],
    ),
    "alphagrad-m0-adaptive": (
        ["--optimizer", "alphagrad", "--alpha", "1", "--momentum", "0", "--size-aware", "--adaptive"],
        [1e-4, 3e-4, 1e-3, 3e-3],
    ),
}
ALPHA_ARMS = ("alphagrad-m0.9", "alphagrad-m0.9-size-aware")
ALPHA_FACTORS = (0.25, 0.5, 2.0, 4.0)
MAX_EXTENSIONS = 2  # learning rates added past an end of an arm's grid
SHARDED_DEVICES = 2


@dataclass(frozen=True)
class Run:
    arm: str
    phase: str  # "lr", "seed", "alpha" or "sharded"
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        """``lm_benchmark``'s own name of the run (from its arguments)."""
        return lm_benchmark.run_name(lm_benchmark.parse_args(list(self.args)))


def load(results: Path, run: Run) -> dict[str, Any] | None:
    """The run's result (``lm_benchmark``'s, with the sweep's additions), None while it has not finished."""
    path = results / f"{run.name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def final_bpb(results: Path, run: Run) -> float | None:
    """The run's final validation bits per byte (inf where it diverged), None while it has not finished."""
    result = load(results, run)
    if result is None:
        return None
    return result["val_bpb"] if math.isfinite(result["val_bpb"]) else math.inf


def next_on_grid(lr: float, up: bool) -> float:
    """The neighbour of ``lr`` on the 1-3-10 scale (1e-3 -> 3e-3 up, 3e-4 down)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    ones = math.isclose(lr, 10.0**exponent)
    if up:
        return (3.0 if ones else 10.0) * 10.0**exponent
    return 0.3 * 10.0**exponent if ones else 10.0**exponent


def learning_rate_sweep(results: Path, arm: str) -> tuple[list[Run], tuple[float, float] | None]:
    """Phase 1 of ``arm`` as far as it is known, and (final bits per byte, lr) of its best run once it has finished."""
    args, lrs = ARMS[arm]
    lrs = list(lrs)
    while True:
        sweep = [Run(arm, "lr", (*args, "--lr", f"{lr:g}", "--seed", "0")) for lr in lrs]
        finals = [final_bpb(results, run) for run in sweep]
        if any(f is None for f in finals):
            return sweep, None
        best = min(zip(finals, lrs, strict=True))  # type: ignore[arg-type]
        at_end = best[1] in (lrs[0], lrs[-1]) and math.isfinite(best[0])
        if not at_end or len(lrs) - len(ARMS[arm][1]) >= MAX_EXTENSIONS:
            return sweep, best  # type: ignore[return-value]
        up = best[1] == lrs[-1]
        lrs = [*lrs, next_on_grid(lrs[-1], up=True)] if up else [next_on_grid(lrs[0], up=False), *lrs]


def with_value(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced (or the flag appended)."""
    if flag in args:
        index = args.index(flag)
        return [*args[: index + 1], value, *args[index + 2 :]]
    return [*args, flag, value]


def plan(results: Path) -> list[Run]:
    """Every run due now: phase 1 always, phases 2-3 of an arm once its phase 1 has finished, phase 4 once those of
    AdamW and of every AlphaGrad arm have."""
    runs = []
    best_of: dict[str, tuple[float, float]] = {}  # arm -> (final bits per byte, lr) of its best phase-1 run
    for arm, (args, _) in ARMS.items():
        sweep, best_run = learning_rate_sweep(results, arm)
        runs += sweep
        if best_run is None:
            continue
        best_of[arm] = best_run
        best = best_run[1]
        runs.append(Run(arm, "seed", (*args, "--lr", f"{best:g}", "--seed", "1")))
        if arm in ALPHA_ARMS:
            alpha = float(args[args.index("--alpha") + 1])
            for factor in ALPHA_FACTORS:
                scaled = with_value(list(args), "--alpha", f"{alpha * factor:g}")
                runs.append(Run(arm, "alpha", (*scaled, "--lr", f"{best:g}", "--seed", "0")))
    alphagrad_arms = [arm for arm in ARMS if arm.startswith("alphagrad")]
    if "adamw" in best_of and all(arm in best_of for arm in alphagrad_arms):
        for arm in ("adamw", min(alphagrad_arms, key=lambda a: best_of[a][0])):
            args, lr = ARMS[arm][0], best_of[arm][1]
            sharded = (*args, "--lr", f"{lr:g}", "--seed", "0", "--devices", str(SHARDED_DEVICES))
            runs.append(Run(arm, "sharded", sharded))
    return runs


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip()


def execute(run: Run, results: Path, work: Path) -> tuple[bool, str]:
    """Run ``run`` in a subprocess (one torch thread), keep its result and metrics in ``results``; whether it
    finished, and a line to print."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # per process, also for sharded runs
    command = [sys.executable, str(ROOT / "examples" / "lm_benchmark.py"), *run.args, "--out", str(work)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return False, f"{run.name}: failed ({last})"
    result = json.loads((work / run.name / "result.json").read_text())
    result.update(arm=run.arm, phase=run.phase, commit=commit())
    result.pop("out")
    results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / run.name / "metrics.csv", results / f"{run.name}.csv")
    (results / f"{run.name}.json").write_text(json.dumps(result, indent=1))
    return True, f"{run.name}: {result['val_bpb']:.3f} bits/byte ({result['seconds']:.0f} s)"


def report(results: Path, figures: Path) -> None:
    """Print the table of every arm at its best learning rate and write the figures (PNG) into ``figures``."""
    from lightning_alphagrad.plotting import plt, read_curve  # matplotlib only for the report

    runs = [(run, result) for run in plan(results) if (result := load(results, run)) is not None]
    by_phase: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
    for run, result in runs:
        by_phase.setdefault(run.phase, []).append((run, result))
    best = {run.arm: result for run, result in by_phase.get("seed", [])}  # seed 1 at the best lr
    # tokens/s of the sweep's runs depend on what else ran beside them: benchmarks/bench_lm.py times the optimizers
    print("| arm | best lr | final bits/byte, seeds 0 / 1 | state bytes/param | peak RSS MB |")
    print("|---|---|---|---|---|")
    finals: dict[str, list[dict[str, Any]]] = {}
    for arm in ARMS:
        lr_runs = [r for run, r in by_phase.get("lr", []) if run.arm == arm]
        if arm not in best or not lr_runs:
            continue
        seed0 = next(r for r in lr_runs if math.isclose(r["lr"], best[arm]["lr"]))
        finals[arm] = [seed0, best[arm]]
        print(f"| {arm} | {seed0['lr']:g} | {seed0['val_bpb']:.3f} / {best[arm]['val_bpb']:.3f} | "
              f"{seed0['state_bytes_per_param']:.1f} | {seed0['peak_rss_mb']:.0f} |")
    figures.mkdir(parents=True, exist_ok=True)
    colors = {arm: f"C{i}" for i, arm in enumerate(ARMS)}

    fig, ax = plt.subplots(figsize=(8, 5))  # validation curves at each arm's best lr
    for arm, (seed0, seed1) in finals.items():
        for result, style in ((seed0, "-"), (seed1, "--")):
            steps, bpb = zip(*result["curve"], strict=True)
            label = f"{arm} (lr {seed0['lr']:g})" if style == "-" else None
            ax.plot(steps, bpb, style, color=colors[arm], label=label)
    ax.set(xlabel="step", ylabel="validation bits per byte", ylim=(2.0, 5.0),
           title="each arm at its best lr (seed 0 solid, seed 1 dashed)")
    ax.legend(fontsize=7)
    fig.savefig(figures / "lm_curves.png", dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(8, 5))  # final loss against lr
    for arm in ARMS:
        points = sorted((r["lr"], r["val_bpb"]) for run, r in by_phase.get("lr", []) if run.arm == arm)
        if points:
            lrs, bpb = zip(*points, strict=True)
            ax.plot(lrs, [b if math.isfinite(b) else 8.0 for b in bpb], "o-", color=colors[arm], label=arm)
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="final validation bits per byte (8 = diverged)",
           ylim=(2.0, 8.1), title="learning-rate sensitivity (seed 0)")
    ax.legend(fontsize=7)
    fig.savefig(figures / "lm_lr_sensitivity.png", dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(6, 4))  # final loss against alpha (x the arm's default)
    for arm in ALPHA_ARMS:
        base = float(ARMS[arm][0][ARMS[arm][0].index("--alpha") + 1])
        points = [(r["alpha"] / base, r["val_bpb"]) for run, r in by_phase.get("alpha", []) if run.arm == arm]
        points += [(1.0, finals[arm][0]["val_bpb"])] if arm in finals else []
        if points:
            factors, bpb = zip(*sorted(points), strict=True)
            ax.plot(factors, bpb, "o-", color=colors[arm], label=f"{arm} (alpha x {base:g})")
    ax.set(xscale="log", xlabel="alpha / default alpha", ylabel="final validation bits per byte",
           title="alpha sensitivity at the best lr (seed 0)")
    ax.legend(fontsize=7)
    fig.savefig(figures / "lm_alpha_sensitivity.png", dpi=110, bbox_inches="tight")

    alphagrad = [arm for arm in finals if arm.startswith("alphagrad")]
    if alphagrad:  # monitors of the AlphaGrad runs at their best lr
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for arm in alphagrad:
            metrics = results / f"{finals[arm][0]['name']}.csv"
            for ax, key in zip(axes, ("saturation/AlphaGrad/all", "grad_norm_unclipped/AlphaGrad/total",
                                      "alpha/AlphaGrad/decay"), strict=True):  # fmt: skip
                steps, values = read_curve(metrics, key, x="step")
                ax.plot(steps, values, color=colors[arm], label=arm)
                ax.set(xlabel="step", title=key)
        axes[1].set_yscale("log")
        axes[0].legend(fontsize=7)
        fig.savefig(figures / "lm_alphagrad_monitors.png", dpi=110, bbox_inches="tight")

    sharded = by_phase.get("sharded", [])
    if sharded:  # sharded (FSDP2, 2 processes) against the single-process run
        fig, ax = plt.subplots(figsize=(6, 4))
        for run, result in sharded:
            steps, bpb = zip(*result["curve"], strict=True)
            ax.plot(steps, bpb, "--", color=colors[run.arm], label=f"{run.arm}, FSDP2 on 2 processes")
            steps, bpb = zip(*finals[run.arm][0]["curve"], strict=True)
            ax.plot(steps, bpb, "-", color=colors[run.arm], label=f"{run.arm}, 1 process")
        ax.set(xlabel="step", ylabel="validation bits per byte", ylim=(3.0, 5.0), title="sharded vs single process")
        ax.legend(fontsize=7)
        fig.savefig(figures / "lm_sharded.png", dpi=110, bbox_inches="tight")
    plt.close("all")
    print(f"figures in {figures}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("plan", "run", "report"))
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "lm")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures", help="where report writes PNGs")
    args = parser.parse_args(argv)
    if args.command == "report":
        report(args.results, args.figures)
        return
    if args.command == "plan":
        for run in plan(args.results):
            bpb = final_bpb(args.results, run)
            print(f"{run.phase:5s} {run.name}: {'-' if bpb is None else f'{bpb:.3f}'}")
        return
    failed: set[str] = set()  # not retried in this invocation
    with tempfile.TemporaryDirectory(prefix="lm-sweep-") as work:
        while todo := [r for r in plan(args.results) if final_bpb(args.results, r) is None and r.name not in failed]:
            sharded = [r for r in todo if r.phase == "sharded"]
            # the next plan sees this wave's results; a sharded run takes every core of its own
            wave = [r for r in todo if r.phase != "sharded"][: args.jobs] or sharded[:1]
            with ThreadPoolExecutor(args.jobs) as pool:
                outcomes = list(pool.map(lambda r: execute(r, args.results, Path(work)), wave))
            for run, (finished, line) in zip(wave, outcomes, strict=True):
                print(line, flush=True)
                if not finished:
                    failed.add(run.name)


if __name__ == "__main__":
    main()
