"""The shipped configs parse, and the README's main job runs end to end at smoke scale."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lightning_alphagrad.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))


def test_every_experiment_has_an_adam_twin():
    names = {c.stem for c in CONFIGS}
    for experiment in ("dqn_cartpole", "td3_hopper", "ppo_halfcheetah"):
        assert {experiment, f"{experiment}_adam"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: lightning_alphagrad.rl." in printed


def test_main_job_smoke(tmp_path, capsys):
    out = tmp_path / "runs"
    main(["fit", "--config", str(CONFIGS[[c.stem for c in CONFIGS].index("default")]),
          "--model.total_timesteps", "2048", "--model.eval_interval", "1024", "--trainer.enable_progress_bar", "false",
          "--trainer.log_every_n_steps", "1",
          "--trainer.default_root_dir", str(out), "--trainer.logger", "CSVLogger",
          "--trainer.logger.save_dir", str(out)])
    printed = capsys.readouterr().out
    assert "Learning curve:" in printed and "Checkpoint:" in printed
    metrics = next(out.rglob("metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    steps = [float(r["env_steps"]) for r in rows if r.get("env_steps")]
    assert max(steps) == 2048
    assert any(r.get("eval/return_mean") for r in rows)
    assert next(out.rglob("learning_curve.png")).stat().st_size > 1000
    assert next(out.rglob("last.ckpt")).exists()
