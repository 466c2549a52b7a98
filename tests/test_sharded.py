"""AlphaGrad on sharded parameters (FSDP2 DTensors), on 2 CPU processes (gloo) started with torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_alphagrad import AlphaGrad

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, out: Path, *args: str) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(TESTS / script), str(out), *args]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def fsdp_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return torchrun("fsdp_script.py", tmp_path_factory.mktemp("fsdp"))


@pytest.mark.parametrize("config", ["plain", "momentum_decay", "size_aware_nesterov", "maximize_foreach_off",
                                    "two_groups"])  # fmt: skip
def test_fsdp2_matches_the_unsharded_optimizer(fsdp_reports: list[dict], config: str) -> None:
    for report in fsdp_reports:
        result = report[config]
        assert result["deviation"] < 1e-6  # uneven and empty shards included (see fsdp_script.make_model)
        # the norms of each group: one all-reduce per step, and no other collective (DTensor's norms would add one
        # per tensor)
        assert result["collectives"] == [{"c10d.allreduce_": result["groups"]}] * 3
        assert result["buffers_sharded"]


def test_fsdp2_nonfinite_gradient_on_one_rank_skips_everywhere(fsdp_reports: list[dict]) -> None:
    assert [r["nonfinite"] for r in fsdp_reports] == [{"unchanged": True, "skipped_steps": 1}] * 2


def test_fsdp2_distributed_checkpoint_round_trip(fsdp_reports: list[dict]) -> None:
    for report in fsdp_reports:
        assert report["dcp"] == {"same_after_resume": True, "state_keys": ["momentum_buffer"], "skipped_steps": 1}


def test_fsdp1_parameters_are_refused_with_the_fix(fsdp_reports: list[dict]) -> None:
    for report in fsdp_reports:
        assert "FSDP1" in report["fsdp1"] and "fully_shard" in report["fsdp1"]


def test_optimizer_state_is_per_parameter() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = AlphaGrad([p], momentum=0.9)
    p.grad = torch.ones(3)
    opt.step()
    p.grad = torch.tensor([1.0, float("nan"), 1.0])
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    assert list(opt.state) == [p] and set(opt.state[p]) == {"momentum_buffer"}
    assert opt.skipped_steps == 1 and opt.param_groups[0]["skipped_steps"] == 1


# ------------------------------------------------------------------------------------------ Lightning
@pytest.fixture(scope="module")
def lightning_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """``model_parallel_script.py`` fitted straight through 2 epochs and in two fits joined by a checkpoint."""
    out = tmp_path_factory.mktemp("model_parallel")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    reports = {}
    for mode in ("straight", "resume"):
        result = subprocess.run([sys.executable, str(TESTS / "model_parallel_script.py"), str(out), mode], env=env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        reports[mode] = [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in range(2)]
    return reports


def test_model_parallel_strategy_resumes_exactly(lightning_reports: dict[str, list[dict]]) -> None:
    straight, resumed = lightning_reports["straight"], lightning_reports["resume"]
    assert straight[0]["global_step"] == resumed[0]["global_step"] == 8
    assert straight[0]["params"] == straight[1]["params"]  # every rank holds the same full model
    assert resumed[0]["params"] == straight[0]["params"]  # optimizer, momentum, lr schedule and counters restored


def test_alphagrad_config_groups_by_the_original_names(lightning_reports: dict[str, list[dict]]) -> None:
    groups = lightning_reports["straight"][0]["groups"]
    assert groups["decay"] == ["blocks.0.0.weight", "blocks.0.3.weight", "blocks.1.0.weight", "blocks.1.3.weight",
                               "head.weight"]  # fmt: skip
    assert "blocks.0.2.weight" in groups["no_decay"] and "head.bias" in groups["no_decay"]  # LayerNorm, biases


def test_monitors_report_full_tensors_identically_on_every_rank(lightning_reports: dict[str, list[dict]]) -> None:
    for mode, reports in lightning_reports.items():
        records = [[r for r in report["records"] if "grad_norm_unclipped/AlphaGrad/total" in r] for report in reports]
        assert records[0] == records[1] and len(records[0]) == 8, mode  # the same numbers on both ranks
        totals = [r["grad_norm_unclipped/AlphaGrad/total"] for r in records[0]]
        saturation = [r["saturation/AlphaGrad/all"] for r in records[0]]
        assert totals == pytest.approx(reports[0]["full_norms"], rel=1e-5)  # not one shard's (~1/sqrt(2) of it)
        assert saturation == pytest.approx(reports[0]["full_saturation"], abs=1e-9)
        alphas = [r["alpha/AlphaGrad/decay"] for r in records[0]]
        assert max(saturation) > 0 and alphas[0] == 2.0 and len(set(alphas)) > 1  # SaturationTargetAlpha moved it
        assert {k.split("/")[-1] for k in records[0][0] if k.startswith("grad_norm")} == {
            "blocks.0.0", "blocks.0.2", "blocks.0.3", "blocks.1.0", "blocks.1.2", "blocks.1.3", "head", "total"}
