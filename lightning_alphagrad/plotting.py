"""Learning-curve figures from Lightning ``CSVLogger`` files (``metrics.csv``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_learning_curve", "plot_panels", "read_curve"]


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


def _interpolate(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Resample several (x, y) curves on a common grid over their shared x range: returns grid (P,), ys (runs, P)."""
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    return grid, np.stack([np.interp(grid, xs, ys) for xs, ys in curves])


def plot_panels(
    runs: Mapping[str, Sequence[str | Path]], panels: Sequence[tuple[str, str]], out_png: str | Path,
    x: str = "env_steps", title: str = "",
) -> Path:
    """One figure with a panel per metric: for each variant the mean over its seeds and a +-1 std band.

    Args:
        runs: variant name -> the ``metrics.csv`` of each of its seeds.
        panels: (metric key, panel title) pairs, e.g. ``("charts/episodic_return", "Episodic return")``.
        out_png: where the figure goes.
    """
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax, (key, panel_title) in zip(axes.flat, panels, strict=False):
        for variant, files in runs.items():
            curves = [c for c in (read_curve(f, key, x) for f in files) if len(c[0]) > 1]
            if not curves:
                continue
            grid, ys = _interpolate(curves)
            mean, std = ys.mean(axis=0), ys.std(axis=0)
            ax.plot(grid, mean, label=f"{variant} (n={len(curves)})")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set_title(panel_title)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
