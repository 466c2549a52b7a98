"""Statistics, tables and figures of the paper reproduction, computed from the committed curves only.

    python examples/reproduce_paper.py report      # reads results/paper, writes docs/results/

Interval estimates come from ``rliable`` (``pip install -e ".[repro]"``): the interquartile mean (IQM) over seeds with
a 95 % stratified-bootstrap confidence interval, the probability that a run of an AlphaGrad arm beats a run of Adam
(with its CI), and performance profiles. Per run, the *final return* is the mean episodic return over the last 10 %
of its env steps (on these tasks that is about the last 100 training episodes, CleanRL's metric) and the *AUC* the
mean episodic return over the whole run (area under the curve divided by its span).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402
from rliable import library as rly  # noqa: E402
from rliable import metrics, plot_utils  # noqa: E402

from lightning_alphagrad.plotting import final_return  # noqa: E402

# rliable 1.2 hands arch's bootstrap a RandomState, which arch 7 deprecates; the results are the same.
warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)

RETURN_KEY = "charts/episodic_return"
REPS = 2_000  # bootstrap replications of the scalar estimates (rliable's examples use 2000 too)
CURVE_REPS = 2_000  # and of every point of a curve band
CURVE_POINTS = 100


@dataclass(frozen=True)
class Curve:
    """One run's committed curve: ``columns[key] = (env_steps, values)`` and its manifest entry."""

    seed: int
    columns: dict[str, tuple[np.ndarray, np.ndarray]]
    entry: dict

    def __getitem__(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.columns.get(key, (np.array([]), np.array([])))


def read_curve(path: Path, entry: dict) -> Curve:
    """A compact curve ``seed<k>.csv``: every column logged against env steps."""
    columns: dict[str, tuple[list[float], list[float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("env_steps"):
                continue
            for key, value in row.items():
                if value and key not in ("env_steps", "step"):
                    xs, ys = columns.setdefault(key, ([], []))
                    xs.append(float(row["env_steps"]))
                    ys.append(float(value))
    return Curve(entry["seed"], {k: (np.asarray(x), np.asarray(y)) for k, (x, y) in columns.items()}, entry)


def load_results(results: Path) -> dict[str, dict[str, list[Curve]]]:
    """experiment -> variant -> its finished runs, from ``results/<experiment>/<variant>/seed<k>.{csv,json}``."""
    grid: dict[str, dict[str, list[Curve]]] = {}
    for entry_file in sorted(results.glob("*/*/seed*.json")):
        entry = json.loads(entry_file.read_text())
        runs = grid.setdefault(entry["experiment"], {}).setdefault(entry["variant"], [])
        runs.append(read_curve(entry_file.with_suffix(".csv"), entry))
    return grid


# ------------------------------------------------------------------------------------------ per-run scores
def area_under_curve(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area under ``ys`` divided by the env-step span (the mean over the run)."""
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if xs[-1] > xs[0] else float(ys.mean())


def collapses(ys: np.ndarray, high: float = 0.8, low: float = 0.3) -> int:
    """How often the return falls from the top ``1 - high`` of the run's range to its bottom ``low`` (instability)."""
    lo, span, count, armed = ys.min(), ys.max() - ys.min(), 0, False
    for y in ys:
        if y >= lo + high * span:
            armed = True
        elif armed and y <= lo + low * span:
            count, armed = count + 1, False
    return count


def binned(xs: np.ndarray, ys: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``ys`` in each bin ``[edges[i], edges[i+1])`` (the last bin closed); an empty bin takes the value
    interpolated from its neighbours. Shape ``(len(edges) - 1,)``."""
    index = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(index, weights=ys, minlength=len(edges) - 1)
    counts = np.bincount(index, minlength=len(edges) - 1)
    centers = (edges[:-1] + edges[1:]) / 2
    filled = counts > 0
    return np.interp(centers, centers[filled], sums[filled] / counts[filled])


# ------------------------------------------------------------------------------------------ interval estimates
def iqm(scores: np.ndarray) -> np.ndarray:
    """IQM over runs of a ``(runs, 1)`` score matrix, as a 1-element array (rliable's aggregate)."""
    return np.array([metrics.aggregate_iqm(scores)])


def interval_estimates(
    scores: Mapping[str, Sequence[float]], reps: int = REPS, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """variant -> (IQM, CI low, CI high) of its runs' scores, a 95 % stratified-bootstrap interval."""
    matrices = {name: np.asarray(values, dtype=float).reshape(-1, 1) for name, values in scores.items()}
    np.random.seed(seed)  # rliable's bootstrap also draws from numpy's global generator
    points, intervals = rly.get_interval_estimates(matrices, iqm, reps=reps, random_state=np.random.RandomState(seed))
    return {name: (float(points[name][0]), float(intervals[name][0, 0]), float(intervals[name][1, 0]))
            for name in matrices}


def probability_of_improvement(
    x: Sequence[float], y: Sequence[float], reps: int = REPS, seed: int = 0
) -> tuple[float, float, float]:
    """P(a run of X scores higher than a run of Y; ties count half), with its 95 % bootstrap CI."""
    pair = {"x,y": [np.asarray(x, dtype=float).reshape(-1, 1), np.asarray(y, dtype=float).reshape(-1, 1)]}
    np.random.seed(seed)  # rliable's bootstrap also draws from numpy's global generator
    points, intervals = rly.get_interval_estimates(
        pair, metrics.probability_of_improvement, reps=reps, random_state=np.random.RandomState(seed)
    )
    low, high = np.ravel(intervals["x,y"])
    return float(np.ravel(points["x,y"])[0]), float(low), float(high)


def curve_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], edges: np.ndarray, reps: int = CURVE_REPS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over runs and its 95 % CI at each bin of ``edges``: three arrays of shape ``(len(edges) - 1,)``."""
    scores = np.stack([binned(xs, ys, edges) for xs, ys in curves])[:, None, :]  # (runs, 1 task, bins)

    def iqm_per_bin(s: np.ndarray) -> np.ndarray:  # metrics.aggregate_iqm of each bin, all bins at once
        return scipy.stats.trim_mean(s[:, 0, :], proportiontocut=0.25, axis=0)

    np.random.seed(seed)  # rliable's bootstrap also draws from numpy's global generator
    points, intervals = rly.get_interval_estimates(
        {"band": scores}, iqm_per_bin, reps=reps, random_state=np.random.RandomState(seed)
    )
    return points["band"], intervals["band"][0], intervals["band"][1]


# ------------------------------------------------------------------------------------------ tables and figures
def fmt(estimate: tuple[float, float, float], digits: int = 1) -> str:
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def experiment_table(name: str, variants: Mapping[str, list[Curve]], baseline: str = "adam") -> list[str]:
    """Markdown rows: per variant the seeds, IQM [CI] of final return and AUC, P(variant > Adam) on both, the mean
    +- std of the final return over seeds (the statistic of CleanRL's published numbers) and the mean number of
    collapses per run (falls from the top 20 % of a run's return range to its bottom 30 %)."""
    finals = {v: [final_return(*run[RETURN_KEY]) for run in runs] for v, runs in variants.items()}
    aucs = {v: [area_under_curve(*run[RETURN_KEY]) for run in runs] for v, runs in variants.items()}
    final_iqm, auc_iqm = interval_estimates(finals), interval_estimates(aucs)
    lines = [
        f"### {name}",
        "",
        "| variant | seeds | final return IQM [95 % CI] | AUC IQM [95 % CI] | P(> Adam), final | P(> Adam), AUC "
        "| final mean +- std | collapses per run | wall time per run (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, runs in variants.items():
        vs_adam = ["-", "-"]
        comparable = baseline in variants and runs[0].entry["env_steps"] == variants[baseline][0].entry["env_steps"]
        if not variant.startswith(baseline) and comparable:  # AlphaGrad arms at Adam's budget (not sweeps, not v4)
            vs_adam = [fmt(probability_of_improvement(s[variant], s[baseline]), 2) for s in (finals, aucs)]
        wall = np.array([run.entry["wall_s"] for run in runs]) / 60
        drops = np.mean([collapses(run[RETURN_KEY][1]) for run in runs])
        lines.append(
            f"| {variant} | {len(runs)} | {fmt(final_iqm[variant])} | {fmt(auc_iqm[variant])} | {vs_adam[0]} | "
            f"{vs_adam[1]} | {np.mean(finals[variant]):.1f} +- {np.std(finals[variant]):.1f} | {drops:.1f} | "
            f"{wall.mean():.1f} |"
        )
    return lines


def plot_panels(
    variants: Mapping[str, list[Curve]], panels: Sequence[tuple[str, str]], title: str, out_png: Path
) -> Path:
    """The paper's panels, each variant's IQM over seeds with a 95 % CI band."""
    span = max(run[RETURN_KEY][0].max() for runs in variants.values() for run in runs)
    edges = np.linspace(0.0, span, CURVE_POINTS + 1)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), squeeze=False)
    for ax, (key, panel_title) in zip(axes.flat, panels, strict=False):
        for variant, runs in variants.items():
            curves = [run[key] for run in runs if len(run[key][0]) > 1]
            if not curves:
                continue
            point, low, high = curve_band(curves, edges)
            centers = (edges[:-1] + edges[1:]) / 2
            ax.plot(centers, point, label=f"{variant} (n={len(curves)})")
            ax.fill_between(centers, low, high, alpha=0.2)
        ax.set_title(panel_title)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: IQM over seeds, 95 % stratified-bootstrap CI")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_profiles(variants: Mapping[str, list[Curve]], title: str, out_png: Path) -> Path:
    """rliable's performance profile of the final returns: the fraction of runs scoring above tau, with CIs."""
    finals = {
        v: np.array([final_return(*run[RETURN_KEY]) for run in runs]).reshape(-1, 1) for v, runs in variants.items()
    }
    everything = np.concatenate(list(finals.values()))
    taus = np.linspace(everything.min(), everything.max(), 101)
    profiles, cis = rly.create_performance_profile(finals, taus, reps=2000)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = dict(zip(finals, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, colors=colors,
                                         xlabel=r"final return $\tau$", ax=ax)
    ax.legend([plt.Line2D([], [], color=colors[v]) for v in finals], list(finals), fontsize=7)
    ax.set_title(f"{title}: performance profile of final returns")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def write_report(results: Path, out: Path, experiments: Mapping[str, Any]) -> Path:
    """``out/paper.md`` (tables) and ``out/<experiment>_panels.png`` / ``_profile.png`` from ``results``.

    ``experiments``: name -> an object with ``title``, ``variants`` (each with ``name``) and ``panels``, in the
    order of the report (``reproduce_paper.EXPERIMENTS``)."""
    grid = load_results(results)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Paper reproduction: statistics from the committed curves",
        "",
        f"Generated by `python examples/reproduce_paper.py report` from `{results.parent.name}/{results.name}/` "
        f"({REPS} bootstrap "
        "replications, seed 0). IQM: interquartile mean over seeds (with 3 seeds it equals the mean); "
        "P(> Adam): probability that a run of the variant beats a run of Adam.",
        "",
    ]
    compute_s = 0.0
    for name, exp in experiments.items():
        if name not in grid:
            continue
        variants = {v.name: grid[name][v.name] for v in exp.variants if v.name in grid[name]}
        compute_s += sum(run.entry["wall_s"] for runs in variants.values() for run in runs)
        lines += experiment_table(exp.title, variants) + [""]
        panels = plot_panels(variants, exp.panels, exp.title, out / f"{name}_panels.png")
        profile = plot_profiles(variants, exp.title, out / f"{name}_profile.png")
        lines += [f"![{exp.title}]({panels.name})", "", f"![{exp.title} profile]({profile.name})", ""]
    lines.append(f"Compute: {compute_s / 3600:.1f} core-hours of training over the runs above.")
    report = out / "paper.md"
    report.write_text("\n".join(lines) + "\n")
    return report

