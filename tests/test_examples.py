"""Each example runs at smoke scale and reaches a sanity level of quality."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_supervised_classifier_smoke(tmp_path):
    example = load_example("supervised_classifier")
    results = example.main(["--epochs", "6", "--out", str(tmp_path)])
    assert set(results) == set(example.OPTIMIZERS)
    for metrics in results.values():
        assert metrics["val/accuracy"] > 0.55  # chance is 1/3
    assert len(list(tmp_path.rglob("metrics.csv"))) == len(example.OPTIMIZERS)
    with pytest.raises(SystemExit):
        example.main(["--epochs", "0"])


def test_quickstart_runs_both_arms_and_checks_the_headline(tmp_path, capsys):
    quickstart = load_example("quickstart")
    assert quickstart.main(["--timesteps", "2048", "--check", "501", "--out", str(tmp_path)]) == 1  # 500 is the max
    printed = capsys.readouterr().out.splitlines()
    finals = {line.split()[0]: float(line.split()[1]) for line in printed if line.startswith("  Alpha") or
              line.startswith("  Adam")}  # fmt: skip
    assert set(finals) == {"AlphaGrad", "Adam"} and all(0 < v <= 500 for v in finals.values())
    assert "AlphaGrad final evaluation >= 501: 0 of 1 runs" in printed
    for arm in ("alphagrad", "adam"):
        assert (tmp_path / "seed0" / arm / "checkpoints" / "last.ckpt").exists()
        assert "Traceback" not in (tmp_path / "seed0" / f"{arm}.log").read_text()
    assert (tmp_path / "seed0" / "cartpole.png").stat().st_size > 10_000
    with pytest.raises(SystemExit):
        quickstart.main(["--threads", "0"])
