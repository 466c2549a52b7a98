"""Learning-curve figures from Lightning ``CSVLogger`` files (``metrics.csv``)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_learning_curve", "read_curve"]


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


def plot_learning_curve(
    metrics_csv: str | Path, out_png: str | Path, y: str = "charts/episodic_return", x: str = "env_steps",
    title: str | None = None,
) -> Path:
    """Plot one run's ``y`` against ``x`` into ``out_png``; raises ``ValueError`` if the CSV has no such points."""
    xs, ys = read_curve(metrics_csv, y, x)
    if len(xs) == 0:
        raise ValueError(f"{metrics_csv} has no rows with both {x!r} and {y!r}")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, lw=1.0, alpha=0.4, label=y)
    window = max(1, len(ys) // 20)
    sums = np.cumsum(np.concatenate([[0.0], ys]))
    starts = np.maximum(0, np.arange(1, len(ys) + 1) - window)
    trailing_mean = (sums[1:] - sums[starts]) / (np.arange(1, len(ys) + 1) - starts)
    ax.plot(xs, trailing_mean, lw=2.0, label=f"{y} (mean of last {window})")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    run = Path(metrics_csv).parent
    ax.set_title(title or f"{run.parent.name}/{run.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
