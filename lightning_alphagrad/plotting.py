"""Learning-curve figures from Lightning ``CSVLogger`` files (``metrics.csv``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["final_return", "plot_learning_curves", "read_curve", "trailing_mean"]


def read_curve(metrics_csv: str | Path, y: str, x: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``metrics_csv`` where both ``x`` and ``y`` are logged, as two float arrays sorted by ``x``."""
    xs, ys = [], []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get(x) not in (None, "") and row.get(y) not in (None, ""):
                xs.append(float(row[x]))
                ys.append(float(row[y]))
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs)[order], np.asarray(ys)[order]


def final_return(xs: np.ndarray, ys: np.ndarray) -> float:
    """Mean of ``ys`` over the last 10 % of the env-step span of ``xs`` (CleanRL reports the last 100 episodes)."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    return float(ys[xs >= xs[-1] - 0.1 * (xs[-1] - xs[0])].mean())


def trailing_mean(ys: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start); same shape as ``ys``."""
    sums = np.cumsum(np.concatenate([[0.0], ys]))
    ends = np.arange(1, len(ys) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_learning_curves(
    runs: Mapping[str, str | Path], out_png: str | Path, title: str, y: str = "charts/episodic_return",
    evaluation: str = "eval/return_mean", x: str = "env_steps",
) -> Path:
    """Training return and evaluations of one or more runs in one figure.

    Per run (``runs``: label -> its ``metrics.csv``): the logged training return ``y`` faintly, its trailing mean over
    a twentieth of the run in bold, and the evaluations (``evaluation``) as large markers of the same colour.
    Raises ``ValueError`` if no run logged ``y``.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotted = False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, metrics_csv) in enumerate(runs.items()):
        color, marker = colors[index % len(colors)], "osD^v"[index % 5]  # shapes tell coinciding points apart
        xs, ys = read_curve(metrics_csv, y, x)
        if len(xs):
            plotted = True
            window = max(1, len(ys) // 20)
            ax.plot(xs, ys, lw=0.8, alpha=0.25, color=color)
            ax.plot(xs, trailing_mean(ys, window), lw=2.0, color=color, label=f"{label}: training (mean of {window})")
        eval_xs, eval_ys = read_curve(metrics_csv, evaluation, x)
        if len(eval_xs):
            ax.plot(eval_xs, eval_ys, marker, ms=9 - 2 * (index % 3), color=color, markeredgecolor="black",
                    linestyle="none",
                    label=f"{label}: evaluation (final {eval_ys[-1]:.1f})")  # fmt: skip
    if not plotted:
        raise ValueError(f"no run in {list(runs.values())} logged {y!r}")
    ax.set_xlabel("environment steps" if x == "env_steps" else x)
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
