"""The paper-reproduction runner and its report: statistics on synthetic curves with known answers, the grid, the
merge of resumed attempts, and one run killed after its checkpoint, resumed and finished (smoke scale)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from example_scripts import EXAMPLES, load_example

from lightning_alphagrad.plotting import final_return

reproduce = load_example("reproduce_paper")
report = load_example("paper_report")


# ------------------------------------------------------------------------------------------ statistics
def test_per_run_scores() -> None:
    xs = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0])
    ys = np.array([0.0, 100.0, 500.0, 480.0, 50.0, 490.0, 500.0, 20.0, 400.0, 450.0, 470.0])
    assert final_return(xs, ys) == final_return(list(xs), list(ys)) == (450.0 + 470.0) / 2  # env steps 90..100
    assert report.area_under_curve(np.array([0.0, 10.0]), np.array([0.0, 100.0])) == 50.0  # a ramp: its mean
    # bins [0, 50), [50, 100]: means 224 (0..40) and 388.33 (50..100); an empty bin interpolates its neighbours
    np.testing.assert_allclose(report.binned(xs, ys, np.array([0.0, 50.0, 100.0])), [226.0, 388.333333], rtol=1e-6)
    np.testing.assert_allclose(report.binned(np.array([0.0, 3.0]), np.array([1.0, 3.0]), np.arange(4.0)), [1, 2, 3])
    assert report.collapses(ys) == 2  # 480 -> 50 and 500 -> 20 (range 0..500: top above 400, bottom below 150)
    assert report.collapses(np.linspace(0, 500, 20)) == 0


def test_interval_estimates_known_answers() -> None:
    estimates = report.interval_estimates({"a": [0.0, 1.0, 2.0, 100.0], "flat": [5.0] * 5}, reps=500)
    assert estimates["a"][0] == 1.5  # IQM of 4 runs: the mean of the middle two
    assert estimates["a"][1] <= 1.5 <= estimates["a"][2] and estimates["a"][2] > 1.5  # a real interval around it
    assert estimates["flat"] == (5.0, 5.0, 5.0)  # no spread: the interval collapses
    five = report.interval_estimates({"b": [1.0, 2.0, 3.0, 4.0, 1000.0]}, reps=200)["b"]
    assert five[0] == 3.0  # 5 runs: the outer run on each side is cut, mean of 2, 3, 4
    assert report.probability_of_improvement([10.0, 11, 12], [1.0, 2, 3], reps=200) == (1.0, 1.0, 1.0)
    assert report.probability_of_improvement([1.0, 2, 3], [10.0, 11, 12], reps=200) == (0.0, 0.0, 0.0)
    assert report.probability_of_improvement([1.0, 2], [1.0, 2], reps=200)[0] == 0.5  # ties count half
    point, low, high = report.probability_of_improvement([1.0, 4, 6], [2.0, 3, 5], reps=500)
    assert point == pytest.approx(5 / 9) and low < point < high  # 5 of the 9 pairs favour x
    assert report.probability_of_improvement([1.0, 4, 6], [2.0, 3, 5], reps=500) == (point, low, high)  # reproducible


def test_curve_band_of_identical_and_shifted_runs() -> None:
    xs = np.linspace(0, 100, 51)
    edges = np.linspace(0, 100, 11)
    same = [(xs, xs * 2.0)] * 4
    point, low, high = report.curve_band(same, edges, reps=100)
    np.testing.assert_allclose(point, report.binned(xs, xs * 2.0, edges))
    np.testing.assert_allclose(low, point) and np.testing.assert_allclose(high, point)
    shifted = [(xs, xs + offset) for offset in (0.0, 10.0, 20.0, 30.0)]
    point, low, high = report.curve_band(shifted, edges, reps=300)
    np.testing.assert_allclose(point, report.binned(xs, xs, edges) + 15.0)  # IQM: mean of offsets 10, 20
    assert np.all(low < point) and np.all(high > point)


# ------------------------------------------------------------------------------------------ the grid
def test_full_grid_is_the_issue_grid(tmp_path: Path) -> None:
    runs = reproduce.plan_runs(["dqn", "ppo", "td3"], "full", tmp_path / "work", tmp_path / "results")
    arms: dict[tuple[str, str], list] = {}
    for run in runs:
        arms.setdefault((run.experiment, run.variant), []).append(run)
    count = {arm: len(rs) for arm, rs in arms.items()}
    budget = {arm: {r.steps for r in rs} for arm, rs in arms.items()}
    assert {("dqn", v): 5 for v in ("adam", "alphagrad-93", "alphagrad-186", "alphagrad-279")}.items() <= count.items()
    ppo_arms = ("adam", "alphagrad-98", "alphagrad-196", "alphagrad-294", "alphagrad-adaptive")
    assert all(count[("ppo", v)] == 5 and budget[("ppo", v)] == {1_000_000} for v in ppo_arms)
    assert all(count[("ppo", f"sweep-alphagrad-98-lr{lr:g}")] == 2 for lr in reproduce.PPO_LR_SWEEP)
    assert budget[("ppo", "sweep-alphagrad-98-lr1e-05")] == {300_000}
    assert ("ppo", "alphagrad-98-tuned-lr") not in count  # waits for its sweep
    assert count[("td3", "adam")] == count[("td3", "alphagrad-critic100-actor10")] == 3
    td3 = arms[("td3", "alphagrad-critic100-actor10")][0].args
    assert "--model.save_replay_buffer" in td3 and "25000" not in td3  # the config's learning_starts 25k stays
    assert count[("ppo", "adam-v4")] == 3 and "HalfCheetah-v4" in arms[("ppo", "adam-v4")][0].args
    assert len({r.work for r in runs}) == len(runs) == 20 + 25 + 6 + 3 + 6  # DQN, PPO arms, sweep, v4 check, TD3


def test_tuned_arm_takes_the_best_learning_rate_of_the_sweep(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for lr, level in zip(reproduce.PPO_LR_SWEEP, (100.0, 300.0, 200.0), strict=True):
        for seed in range(2):
            curve = results / "ppo" / f"sweep-alphagrad-98-lr{lr:g}" / f"seed{seed}.csv"
            curve.parent.mkdir(parents=True, exist_ok=True)
            curve.write_text("env_steps,charts/episodic_return\n1000,0\n300000,%f\n" % (level + seed))
    runs = [r for r in reproduce.plan_runs(["ppo"], "full", tmp_path, results) if r.variant == "alphagrad-98-tuned-lr"]
    assert len(runs) == 5 and all(r.steps == 1_000_000 for r in runs)
    args = runs[0].args
    assert args[args.index("--model.learning_rate") + 1] == "3e-05"


def write_metrics(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["env_steps", "step", "charts/episodic_return", "saturation/A/all"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_merge_drops_the_steps_a_resumed_attempt_redid(tmp_path: Path) -> None:
    first = write_metrics(tmp_path / "a0.csv", [
        {"env_steps": 100, "step": 10, "charts/episodic_return": 1.0},
        {"step": 12, "saturation/A/all": 0.5},
        {"env_steps": 200, "step": 20, "charts/episodic_return": 2.0},
        {"step": 25, "saturation/A/all": 0.7},  # after the checkpoint at 200: redone by the second attempt
        {"env_steps": 300, "step": 30, "charts/episodic_return": 99.0},
    ])  # fmt: skip
    second = write_metrics(tmp_path / "a1.csv", [
        {"env_steps": 300, "step": 30, "charts/episodic_return": 3.0},
        {"step": 35, "saturation/A/all": 0.6},
    ])  # fmt: skip
    out = tmp_path / "merged.csv"
    assert reproduce.merge_attempts([(first, 0), (second, 200)], out) == 5
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["env_steps"] for r in rows] == ["100", "", "200", "300", ""]
    assert [r["charts/episodic_return"] for r in rows if r["env_steps"]] == ["1", "2", "3"]
    assert [r["saturation/A/all"] for r in rows if not r["env_steps"]] == ["0.5", "0.6"]


def test_kept_columns() -> None:
    keep = reproduce.committed_column
    assert keep("charts/episodic_return") and keep("losses/td_loss") and keep("saturation/AlphaGrad/all")
    assert keep("alpha/AlphaGrad/pg0") and not keep("saturation/AlphaGrad/actor.0") and not keep("charts/SPS")
    assert keep("update_abs_mean/AlphaGrad/all") and not keep("update_abs_mean/AlphaGrad/q_network.0")


# ------------------------------------------------------------------------------------------ kill and resume
def test_killed_run_resumes_from_its_checkpoint_and_is_committed(tmp_path: Path) -> None:
    """A smoke-scale DQN run (12k env steps, checkpoints every 3k) is killed with its process group after its
    first checkpoint, then the same command resumes it, finishes it and the next arm, and writes their curves and
    manifest entries."""
    command = [sys.executable, str(EXAMPLES / "reproduce_paper.py"), "run", "--scale", "smoke", "--experiments", "dqn",
               "--variants", "adam", "alphagrad-93", "--seeds", "1", "--jobs", "1", "--checkpoint-every", "3000",
               "--work", str(tmp_path)]  # fmt: skip
    checkpoint = tmp_path / "smoke" / "dqn" / "adam" / "seed0" / "checkpoints" / "last.ckpt"
    runner = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.05)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    killed_at = reproduce.checkpoint_env_steps(checkpoint)
    assert 3000 <= killed_at < 12_000

    entries = reproduce.main(command[2:])
    assert len(entries) == 2 and all(entries)
    adam = json.loads((tmp_path / "results" / "dqn" / "adam" / "seed0.json").read_text())
    assert adam["attempts"] == 2 and adam["resumed_at"] == [killed_at] and adam["env_steps"] == 12_000
    xs, ys = reproduce.read_curve(tmp_path / "results" / "dqn" / "adam" / "seed0.csv", reproduce.RETURN_KEY)
    xs = list(xs)
    assert xs == sorted(set(xs)) and xs[-1] == 12_000 and len(xs) == 12  # one row per 1000 steps, none twice
    assert not checkpoint.exists()  # a finished run drops its checkpoints
    manifest = list(csv.DictReader((tmp_path / "results" / "manifest.csv").read_text().splitlines()))
    assert len(manifest) == 2 and {r["variant"] for r in manifest} == {"adam", "alphagrad-93"}
    assert all(r["commits"] for r in manifest)

    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("seed*.csv")}
    reproduce.main(command[2:])  # all done: nothing reruns
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("seed*.csv")} == finished

    out = report.write_report(tmp_path / "results", tmp_path / "report", {"dqn": reproduce.EXPERIMENTS["dqn"]})
    text = out.read_text()
    assert "| alphagrad-93 | 1 |" in text and "| adam | 1 |" in text
    assert (out.parent / "dqn_panels.png").stat().st_size > 10_000 and (out.parent / "dqn_profile.png").exists()


def test_tuned_arm_runs_right_after_its_sweep(tmp_path: Path) -> None:
    """The runner replans after every finished run: the arm a sweep unlocks comes before the arms after it."""
    results, order = tmp_path / "results", []

    class FakeGrid:
        def execute(self, run):  # a finished sweep run leaves its curve (final return by learning rate)
            order.append(run.variant)
            if run.variant.startswith("sweep-"):
                run.result.parent.mkdir(parents=True, exist_ok=True)
                level = 1000.0 if run.variant.endswith("lr3e-05") else 100.0
                run.result.with_suffix(".csv").write_text(f"env_steps,charts/episodic_return\n0,0\n300000,{level}\n")
            return {"variant": run.variant}

    plan = lambda: reproduce.plan_runs(["ppo"], "full", tmp_path / "work", results)  # noqa: E731
    entries = reproduce.run_in_plan_order(FakeGrid(), plan, jobs=1)
    assert len(entries) == len(order) == 25 + 6 + 5 + 3  # every arm once, the tuned one included
    first_tuned, first_196 = order.index("alphagrad-98-tuned-lr"), order.index("alphagrad-196")
    assert order[first_tuned - 1].startswith("sweep-") and first_tuned < first_196
