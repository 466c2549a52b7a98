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
