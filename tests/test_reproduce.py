"""The paper-reproduction runner: its statistics, and one experiment end to end at smoke scale (then resumed)."""

from __future__ import annotations

import json

import numpy as np
from test_examples import load_example


def test_statistics():
    reproduce = load_example("reproduce_paper")
    xs = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0])
    ys = np.array([0.0, 100.0, 500.0, 480.0, 50.0, 490.0, 500.0, 20.0, 400.0, 450.0, 470.0])
    assert reproduce.final_return(xs, ys) == (450.0 + 470.0) / 2  # env steps 90..100
    assert reproduce.area_under_curve(xs, ys) == np.trapezoid(ys, xs) / 100.0
    assert reproduce.collapses(ys) == 2  # 480 -> 50 and 500 -> 20
    assert reproduce.collapses(np.linspace(0, 500, 20)) == 0


def test_plan_covers_the_paper_grid(tmp_path):
    reproduce = load_example("reproduce_paper")
    runs = reproduce.plan_runs(["dqn", "ppo", "td3"], "reduced", tmp_path, None)
    variants = {(r.experiment, r.variant) for r in runs}
    assert {("dqn", f"alphagrad-{a}") for a in (93, 186, 279)} <= variants
    assert {("ppo", f"alphagrad-{a}") for a in (98, 196, 294)} <= variants
    assert {(e, "adam") for e in ("dqn", "ppo", "td3")} <= variants
    assert len({r.out for r in runs}) == len(runs)  # every run has its own directory


def test_smoke_run_and_resume(tmp_path):
    reproduce = load_example("reproduce_paper")
    summary = reproduce.main(["--scale", "smoke", "--experiments", "dqn", "--jobs", "2", "--out", str(tmp_path)])
    results = [json.loads(p.read_text()) for p in tmp_path.rglob("result.json")]
    assert len(results) == 4 and not any(r["diverged"] for r in results)
    assert all(r["episodes"] > 10 and np.isfinite(r["final_return"]) for r in results)
    text = summary.read_text()
    assert text.count("| DQN on CartPole-v1 |") == 4 and (summary.parent / "dqn.png").stat().st_size > 10_000
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")}
    reproduce.main(["--scale", "smoke", "--experiments", "dqn", "--out", str(tmp_path)])  # all done: nothing reruns
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("metrics.csv")} == finished
