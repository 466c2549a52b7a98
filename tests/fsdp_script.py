"""Run by test_sharded.py under ``torchrun --nproc_per_node 2``: AlphaGrad on FSDP2 (gloo, CPU) against an unsharded
reference, its collectives, the non-finite skip, distributed checkpoints and FSDP1's refusal.

``python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_script.py OUT`` writes ``OUT/rank{r}.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor.debug import CommDebugMode

from lightning_alphagrad import AlphaGrad, pause_for_gloo_at_exit

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": dict(lr=0.05, alpha=3.0),
    "momentum_decay": dict(lr=0.05, alpha=3.0, momentum=0.9, weight_decay=0.1),
    "size_aware_nesterov": dict(lr=0.05, alpha=1.5, size_aware=True, momentum=0.9, nesterov=True),
    "maximize_foreach_off": dict(lr=0.02, alpha=5.0, momentum=0.5, dampening=0.1, maximize=True, foreach=False),
}
STEPS = 3


def make_model() -> nn.Module:
    """Uneven shards on 2 ranks: 33 rows split 17/16, 7 as 4/3, the last layer's single row as 1/0 (an empty shard)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(15, 33), nn.Tanh(), nn.Linear(33, 7), nn.Tanh(), nn.Linear(7, 1))


def param_groups(model: nn.Module, grouped: bool) -> list[dict[str, Any]] | Any:
    """Weights and biases in two groups with their own alpha, or all parameters in one."""
    if not grouped:
        return model.parameters()
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n.endswith("weight")], "alpha": 4.0},
            {"params": [p for n, p in named if n.endswith("bias")], "alpha": 2.0}]  # fmt: skip


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 15, generator=generator), torch.randn(16, 1, generator=generator)


def sharded_setup(mesh: Any, kwargs: dict[str, Any], grouped: bool) -> tuple[nn.Module, AlphaGrad]:
    model = make_model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, AlphaGrad(param_groups(model, grouped), **kwargs)


def backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    nn.functional.mse_loss(model(x), y).backward()


def collectives(step: Any) -> dict[str, int]:
    """The collectives ``step()`` makes, by operation, as ``CommDebugMode`` counts them (c10d calls such as
    AlphaGrad's all-reduce and DTensor's own)."""
    with CommDebugMode() as comm:
        step()
    return {str(op): count for op, count in comm.get_comm_counts().items()}


def compare(config: str, kwargs: dict[str, Any], grouped: bool, mesh: Any, rank: int) -> dict[str, Any]:
    """Max deviation of the sharded parameters from an unsharded AlphaGrad on the full batch, and the collectives
    of one sharded step."""
    x, y = data()
    reference = make_model()
    ref_opt = AlphaGrad(param_groups(reference, grouped), **kwargs)
    model, opt = sharded_setup(mesh, kwargs, grouped)
    half = slice(8 * rank, 8 * rank + 8)  # FSDP2 averages the two halves' gradients: the full batch's mean
    counted = []
    for _ in range(STEPS):
        backward(reference, x, y)
        ref_opt.step()
        ref_opt.zero_grad()
        backward(model, x[half], y[half])
        counted.append(collectives(opt.step))
        opt.zero_grad()
    deviation = max(
        (p.full_tensor() - r).abs().max().item()
        for p, r in zip(model.parameters(), reference.parameters(), strict=True)
    )
    buffers_are_sharded = all(
        type(s["momentum_buffer"]).__name__ == "DTensor" for s in opt.state.values() if "momentum_buffer" in s
    )
    return {"deviation": deviation, "collectives": counted,
            "impls": list(opt.last_impls), "buffers_sharded": buffers_are_sharded,
            "groups": len(opt.param_groups)}  # fmt: skip


def nonfinite_skip(mesh: Any, rank: int) -> dict[str, Any]:
    """A NaN in rank 1's shard only: every rank skips the step and counts it."""
    x, y = data()
    model, opt = sharded_setup(mesh, dict(lr=0.05, alpha=3.0, momentum=0.9), grouped=False)
    backward(model, x[8 * rank : 8 * rank + 8], y[8 * rank : 8 * rank + 8])
    opt.step()
    before = [p.to_local().clone() for p in model.parameters()]
    backward(model, x, y)
    if rank == 1:
        next(model.parameters()).grad.to_local()[0, 0] = float("nan")
    with warnings.catch_warnings(record=True):
        opt.step()
    unchanged = all(torch.equal(p.to_local(), b) for p, b in zip(model.parameters(), before, strict=True))
    return {"unchanged": unchanged, "skipped_steps": opt.skipped_steps}


def checkpoint_round_trip(mesh: Any, rank: int, directory: str) -> dict[str, Any]:
    """DCP: save the optimizer's state dict (after a skipped step), load it into a fresh model and optimizer, take
    the same next step; the skip counter comes back too."""
    x, y = data()
    half = slice(8 * rank, 8 * rank + 8)
    kwargs = dict(lr=0.05, alpha=3.0, momentum=0.9)
    model, opt = sharded_setup(mesh, kwargs, grouped=True)
    for step in range(3):
        backward(model, x[half], y[half])
        if step == 1:
            next(model.parameters()).grad.to_local().fill_(float("inf"))
        with warnings.catch_warnings(record=True):
            opt.step()
        opt.zero_grad()
    state = {"model": model.state_dict(), "optim": get_optimizer_state_dict(model, opt)}
    dcp.save(state, checkpoint_id=directory)

    fresh, fresh_opt = sharded_setup(mesh, kwargs, grouped=True)
    target = {"model": fresh.state_dict(), "optim": get_optimizer_state_dict(fresh, fresh_opt)}
    dcp.load(target, checkpoint_id=directory)
    fresh.load_state_dict(target["model"])
    set_optimizer_state_dict(fresh, fresh_opt, target["optim"])
    for m, o in ((model, opt), (fresh, fresh_opt)):
        backward(m, x[half], y[half])
        o.step()
    same = all(torch.equal(a.to_local(), b.to_local())
               for a, b in zip(model.parameters(), fresh.parameters(), strict=True))  # fmt: skip
    keys = sorted({k for s in get_optimizer_state_dict(model, opt)["state"].values() for k in s})
    return {"same_after_resume": same, "state_keys": keys, "skipped_steps": fresh_opt.skipped_steps}


def fsdp1_refused() -> str:
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = FullyShardedDataParallel(make_model(), device_id=torch.device("cpu"), use_orig_params=True)
    try:
        AlphaGrad(model.parameters())
    except ValueError as err:
        return str(err)
    return ""


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    pause_for_gloo_at_exit()
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    report: dict[str, Any] = {}
    for name, kwargs in CONFIGS.items():
        report[name] = compare(name, kwargs, grouped=False, mesh=mesh, rank=rank)
    report["two_groups"] = compare("two_groups", dict(lr=0.05, momentum=0.9), grouped=True, mesh=mesh, rank=rank)
    report["nonfinite"] = nonfinite_skip(mesh, rank)
    directory = [tempfile.mkdtemp() if rank == 0 else None]
    dist.broadcast_object_list(directory)
    report["dcp"] = checkpoint_round_trip(mesh, rank, directory[0])
    report["fsdp1"] = fsdp1_refused()
    (out / f"rank{rank}.json").write_text(json.dumps(report, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
