"""Each example runs at smoke scale and reaches a sanity level of quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from example_scripts import EXAMPLES, load_example


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


@pytest.mark.parametrize("optimizer, extra, state_bytes", [
    ("adamw", [], 8.0), ("sgd", [], 4.0), ("lion", [], 4.0), ("muon", [], None),
    ("alphagrad", ["--momentum", "0.9"], 4.0), ("alphagrad", ["--momentum", "0", "--size-aware", "--adaptive"], 0.0),
])  # fmt: skip
def test_lm_benchmark_smoke(tmp_path, optimizer, extra, state_bytes):
    """A tiny byte-level model for 30 steps: the validation loss falls from ~8 bits/byte (uniform) for every
    optimizer, and the state each keeps is what it should (Adam 2, SGD/Lion/AlphaGrad-with-momentum 1, AlphaGrad
    without momentum 0 fp32 values per parameter; Muon 1 for the blocks' matrices, AdamW's 2 for the rest)."""
    lm = load_example("lm_benchmark")
    result = lm.main(["--optimizer", optimizer, "--lr", "3e-3", "--steps", "30", "--width", "32", "--layers", "1",
                      "--heads", "2", "--context", "32", "--eval-every", "10", "--out", str(tmp_path), *extra])
    first, last = result["curve"][0][1], result["curve"][-1][1]
    assert 7.5 < first < 8.5 and last < first - 1.0 and [s for s, _ in result["curve"]] == [0, 10, 20, 30]
    if state_bytes is None:  # Muon: the 2-D matrices of the blocks, AdamW for embeddings, norms and biases
        model = lm.ByteLM(torch.zeros(100, dtype=torch.uint8), torch.zeros(100, dtype=torch.uint8), "muon", 1e-3, 1,
                          width=32, layers=1, heads=2, context=32)  # fmt: skip
        hidden = sum(p.numel() for p in model.blocks.parameters() if p.ndim == 2)
        state_bytes = (4 * hidden + 8 * (result["parameters"] - hidden)) / result["parameters"]
    assert result["state_bytes_per_param"] == pytest.approx(state_bytes)
    assert result["corpus"]["train_files"] > 100 and (tmp_path / result["name"] / "metrics.csv").exists()


def test_lm_benchmark_sharded_on_two_processes_learns_and_keeps_alphagrads_state(tmp_path):
    """--devices 2: FSDP2 over 2 CPU processes (the strategy starts the second by re-running the script); the
    validation loss falls like the single-process run's and AlphaGrad keeps one fp32 buffer per parameter."""
    command = [sys.executable, str(EXAMPLES / "lm_benchmark.py"), "--optimizer", "alphagrad", "--lr", "3e-3",
               "--steps", "30", "--width", "32", "--layers", "1", "--heads", "2", "--context", "32", "--eval-every",
               "10", "--devices", "2", "--out", str(tmp_path)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads((tmp_path / "alphagrad-lr0.003-alpha2-m0.9-devices2-seed0" / "result.json").read_text())
    first, last = result["curve"][0][1], result["curve"][-1][1]
    assert 7.5 < first < 8.5 and last < first - 1.0 and result["devices"] == 2
    assert [s for s, _ in result["curve"]] == [0, 10, 20, 30]  # every rank takes every step
    assert result["state_bytes_per_param"] == pytest.approx(4.0)


def test_lm_sweep_plans_seeds_and_alphas_once_an_arms_learning_rates_finished(tmp_path):
    sweep = load_example("lm_sweep")
    first = sweep.plan(tmp_path)
    assert len(first) == 4 * len(sweep.ARMS) and {run.phase for run in first} == {"lr"}
    arm = "alphagrad-m0.9-size-aware"
    for run, bpb in zip([r for r in first if r.arm == arm], [2.9, 2.5, 2.7, 3.1], strict=True):  # lr 3e-4 best
        (tmp_path / f"{run.name}.json").write_text(json.dumps({"val_bpb": bpb}))
    later = [run for run in sweep.plan(tmp_path) if run.arm == arm and run.phase != "lr"]
    assert [run.name for run in later] == [
        "alphagrad-lr0.0003-alpha1-m0.9-size-aware-seed1",
        *(f"alphagrad-lr0.0003-alpha{a:g}-m0.9-size-aware-seed0" for a in (0.25, 0.5, 2.0, 4.0)),
    ]


def test_lm_sweep_plans_the_sharded_runs_of_adamw_and_the_best_alphagrad_arm_last(tmp_path):
    sweep = load_example("lm_sweep")
    losses = {"adamw": 2.0, "alphagrad-m0-size-aware": 2.2}  # the best AlphaGrad arm; the others end at 2.6
    for run in sweep.plan(tmp_path):  # every phase-1 run, its lr's index added: each arm's second lr is its best
        index = [f"{lr:g}" for lr in sweep.ARMS[run.arm][1]].index(run.args[run.args.index("--lr") + 1])
        bpb = losses.get(run.arm, 2.6) + (0.0 if index == 1 else 0.1 * (index + 1))
        (tmp_path / f"{run.name}.json").write_text(json.dumps({"val_bpb": bpb}))
    sharded = [run.name for run in sweep.plan(tmp_path) if run.phase == "sharded"]
    assert sharded == ["adamw-lr0.001-devices2-seed0", "alphagrad-lr0.0003-alpha1-m0-size-aware-devices2-seed0"]


def test_lm_sweep_grows_the_learning_rate_grid_past_an_end_where_the_best_run_lies(tmp_path):
    sweep = load_example("lm_sweep")

    def finish(name: str, bpb: float) -> None:
        (tmp_path / f"{name}.json").write_text(json.dumps({"val_bpb": bpb}))

    for name, bpb in [("sgd-lr0.01-seed0", 4.0), ("sgd-lr0.03-seed0", 4.1), ("sgd-lr0.1-seed0", 4.3),
                      ("sgd-lr0.3-seed0", float("nan"))]:  # fmt: skip
        finish(name, bpb)
    sgd = [run for run in sweep.plan(tmp_path) if run.arm == "sgd"]
    assert [run.name for run in sgd] == [
        "sgd-lr0.003-seed0",
        *(f"sgd-lr{lr}-seed0" for lr in ("0.01", "0.03", "0.1", "0.3")),
    ]
    finish("sgd-lr0.003-seed0", 3.9)  # the new end is best again: one more, then the grid stops growing
    finish("sgd-lr0.001-seed0", 3.8)
    names = [run.name for run in sweep.plan(tmp_path) if run.arm == "sgd"]
    assert names[:2] == ["sgd-lr0.001-seed0", "sgd-lr0.003-seed0"] and names[-1] == "sgd-lr0.001-seed1"
