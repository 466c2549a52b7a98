"""Monitoring callbacks: logged values against an independent computation from the same gradients."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from helpers import quiet_trainer
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_alphagrad import AlphaGrad, pause_for_gloo_at_exit, weight_decay_groups
from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor
from lightning_alphagrad.schedules import SaturationTargetAlpha

THRESHOLD = 0.99


def make_loader(batches: int, batch_size: int = 16, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * batch_size, 5, generator=generator)
    y = torch.randn(batches * batch_size, 4, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


class ActorCritic(pl.LightningModule):
    """Actor 5-8-3 and critic 5-8-1 trained by one AlphaGrad (decay / size-aware no-decay groups)."""

    def __init__(self, alpha: float = 10.0, bias_alpha: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.actor = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        self.critic = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
        self.alpha, self.bias_alpha = alpha, bias_alpha

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return ((self.actor(x) - y[:, :3]) ** 2).mean() + ((self.critic(x) - y[:, 3:]) ** 2).mean()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def configure_optimizers(self) -> Any:
        groups = weight_decay_groups(self, 0.0)
        groups[1].update(size_aware=True, alpha=self.bias_alpha)
        return AlphaGrad(groups, lr=1e-2, alpha=self.alpha, momentum=0.9, eps=1e-5)


class ManualActorCritic(ActorCritic):
    """Two AlphaGrad optimizers with manual optimization; the actor steps on even batches only (policy delay)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        actor_opt, critic_opt = self.optimizers()
        x, y = batch
        critic_opt.zero_grad()
        self.manual_backward(((self.critic(x) - y[:, 3:]) ** 2).mean())
        critic_opt.step()
        if batch_idx % 2 == 0:
            actor_opt.zero_grad()
            self.manual_backward(((self.actor(x) - y[:, :3]) ** 2).mean())
            actor_opt.step()

    def configure_optimizers(self) -> Any:
        return (
            AlphaGrad(self.actor.parameters(), lr=1e-2, alpha=10.0, eps=1e-5),
            AlphaGrad(self.critic.parameters(), lr=1e-2, alpha=3.0, eps=1e-5),
        )


class AdamActorCritic(ActorCritic):
    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class StepRecorder(pl.Callback):
    """Copies, at every optimizer step, what the step uses: gradients (by parameter name), alpha, eps, size_aware."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        names = {id(p): n for n, p in pl_module.named_parameters()}
        index = next(i for i, opt in enumerate(trainer.optimizers) if opt is optimizer)
        params = [
            (names[id(p)], p.grad.detach().double().clone(), float(g["alpha"]), float(g["eps"]), g["size_aware"])
            for g in optimizer.param_groups
            for p in g["params"]
            if p.grad is not None
        ]
        groups = [float(g["alpha"]) for g in optimizer.param_groups]
        self.records.append(
            {
                "step": trainer.fit_loop.epoch_loop._batches_that_stepped,
                "optimizer": index,
                "params": params,
                "group_alphas": groups,
            }
        )


def reference_metrics(record: dict[str, Any], name: str) -> dict[str, float]:
    """The monitors' metrics recomputed in float64 from one recorded step (the formula written out here)."""
    layers: dict[str, list[tuple[str, torch.Tensor, float, float, bool]]] = {}
    for param in record["params"]:
        layers.setdefault(param[0].rsplit(".", 1)[0], []).append(param)
    metrics: dict[str, float] = {}
    total_sq, total_sat, total_abs, total_n = 0.0, 0.0, 0.0, 0
    for layer, params in layers.items():
        sq = sat = abs_sum = 0.0
        n = 0
        for _, grad, alpha, eps, size_aware in params:
            steep = alpha * math.sqrt(grad.numel()) if size_aware else alpha
            norm = grad.pow(2).sum().sqrt()
            u = torch.tanh(steep * grad / (norm + eps)).abs()
            sq += float(norm**2)
            sat += float((u >= THRESHOLD).sum())
            abs_sum += float(u.sum())
            n += grad.numel()
        metrics[f"grad_norm_unclipped/{name}/{layer}"] = math.sqrt(sq)
        metrics[f"saturation/{name}/{layer}"] = sat / n
        metrics[f"update_abs_mean/{name}/{layer}"] = abs_sum / n
        total_sq, total_sat, total_abs, total_n = total_sq + sq, total_sat + sat, total_abs + abs_sum, total_n + n
    metrics[f"grad_norm_unclipped/{name}/total"] = math.sqrt(total_sq)
    metrics[f"saturation/{name}/all"] = total_sat / total_n
    metrics[f"update_abs_mean/{name}/all"] = total_abs / total_n
    return metrics


def read_csv(path: Path) -> dict[int, dict[str, float]]:
    """metrics.csv as {step: {key: value}} (rows of one step merged, empty cells dropped)."""
    rows: dict[int, dict[str, float]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row.pop("step"))
            rows.setdefault(step, {}).update({k: float(v) for k, v in row.items() if v != ""})
    return rows


def assert_logged_metrics_match(logged: dict[str, float], reference: dict[str, float], sizes: dict[str, int]) -> None:
    for key, expected in reference.items():
        assert key in logged, key
        if key.startswith("saturation/"):
            # a component within float32 rounding of the threshold may count differently: allow one flip
            assert abs(logged[key] - expected) <= 1.0 / sizes[key.rsplit("/", 1)[1]] + 1e-12, key
        else:
            assert logged[key] == pytest.approx(expected, rel=1e-5, abs=1e-9), key


def layer_sizes(module: nn.Module) -> dict[str, int]:
    sizes: dict[str, int] = {"all": sum(p.numel() for p in module.parameters())}
    for name, p in module.named_parameters():
        layer = name.rsplit(".", 1)[0]
        sizes[layer] = sizes.get(layer, 0) + p.numel()
    return sizes


def trainer(tmp_path: Path, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    """A quiet Trainer logging to ``tmp_path/metrics.csv``; ``kwargs`` win."""
    return quiet_trainer(**{"logger": CSVLogger(tmp_path, name="", version=""), "callbacks": callbacks, **kwargs})


def test_logged_values_equal_independent_computation(tmp_path: Path, accelerator: str) -> None:
    recorder = StepRecorder()
    model = ActorCritic()
    callbacks = [GradNormMonitor(per_parameter=True), TanhSaturationMonitor(THRESHOLD), AlphaMonitor(), recorder]
    trainer(tmp_path, callbacks, max_steps=7, log_every_n_steps=3, accelerator=accelerator).fit(model, make_loader(7))

    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted(rows) == [2, 5]  # (step + 1) % 3 == 0 only
    sizes = layer_sizes(model)
    for record in recorder.records:
        if record["step"] not in rows:
            continue
        logged = rows[record["step"]]
        reference = reference_metrics(record, "AlphaGrad")
        assert_logged_metrics_match(logged, reference, sizes)
        for name, grad, *_ in record["params"]:
            assert logged[f"grad_norm_unclipped/AlphaGrad/{name}"] == pytest.approx(float(grad.norm()), rel=1e-6)
        assert logged["alpha/AlphaGrad/decay"] == record["group_alphas"][0] == 10.0
        assert logged["alpha/AlphaGrad/no_decay"] == 1.0
        # size-aware group of biases with 8, 3, 8 and 1 elements
        assert logged["alpha/AlphaGrad/no_decay/effective_min"] == pytest.approx(1.0)
        assert logged["alpha/AlphaGrad/no_decay/effective_max"] == pytest.approx(math.sqrt(8))
        assert any(0.0 < logged[k] < 1.0 for k in logged if k.startswith("saturation/"))
    # the three monitors write one record per step: every key of theirs sits in the same CSV row
    with open(tmp_path / "metrics.csv") as f:
        monitor_rows = [
            row for row in csv.DictReader(f)
            if any(v != "" for k, v in row.items() if k.split("/")[0] in ("grad_norm_unclipped", "saturation", "alpha"))
        ]  # fmt: skip
    assert sorted(int(row["step"]) for row in monitor_rows) == [2, 5]


def test_norms_are_logged_before_gradient_clipping(tmp_path: Path, accelerator: str) -> None:
    # clip to a tenth of the smallest norm: the logged (unclipped) norms stay the raw ones, and the saturation, which
    # AlphaGrad's per-tensor normalization makes invariant to global-norm clipping, matches the raw gradients too
    recorder = StepRecorder()
    model = ActorCritic()
    callbacks = [GradNormMonitor(), TanhSaturationMonitor(THRESHOLD), recorder]
    clipped = dict(gradient_clip_val=1e-3, accelerator=accelerator)
    trainer(tmp_path, callbacks, max_steps=4, log_every_n_steps=2, **clipped).fit(model, make_loader(4))
    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted(rows) == [1, 3]
    sizes = layer_sizes(model)
    for record in recorder.records:
        if record["step"] in rows:
            logged = rows[record["step"]]
            assert logged["grad_norm_unclipped/AlphaGrad/total"] > 100 * 1e-3
            assert_logged_metrics_match(logged, reference_metrics(record, "AlphaGrad"), sizes)


def count_grad_norms_calls(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """Wraps ``module.grad_norms``; the returned list receives the number of gradients of every call."""
    calls: list[int] = []
    original = module.grad_norms

    def counting(grads: list[torch.Tensor], foreach: bool = True) -> list[torch.Tensor]:
        calls.append(len(grads))
        return original(grads, foreach)

    monkeypatch.setattr(module, "grad_norms", counting)
    return calls


def test_monitors_and_adaptive_alpha_share_one_norm_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accelerator: str
) -> None:
    import lightning_alphagrad.optim.grad_stats as grad_stats

    calls = count_grad_norms_calls(monkeypatch, grad_stats)

    class Adaptive(ActorCritic):
        def configure_optimizers(self) -> Any:
            optimizer = super().configure_optimizers()
            scheduler = SaturationTargetAlpha(optimizer, every=2)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    model = Adaptive()
    callbacks = [GradNormMonitor(), TanhSaturationMonitor(THRESHOLD)]
    trainer(tmp_path, callbacks, max_steps=8, log_every_n_steps=4, accelerator=accelerator).fit(model, make_loader(8))
    # logging steps 3 and 7 are also adaptive-alpha steps (every 2 from step 2: 1, 3, 5, 7 after stepping): the two
    # monitors and the scheduler read one set of norms there; steps 1 and 5 compute them for the scheduler alone
    assert calls == [8] * 4


@pytest.mark.parametrize("impl", ["foreach", "flat", "compiled"])  # "reference" computes norms one by one itself
def test_optimizer_takes_the_shared_norms_and_steps_bitwise_the_same(
    impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lightning_alphagrad.optim.alphagrad as alphagrad_module
    from lightning_alphagrad.optim.grad_stats import step_grad_norms

    torch.manual_seed(0)
    shapes = [(6, 5), (6,), (3, 6), (3,)]
    twins = [[nn.Parameter(torch.randn(shape)) for shape in shapes] for _ in range(2)]
    twins[1] = [nn.Parameter(p.detach().clone()) for p in twins[0]]
    groups = [[{"params": ps[:2]}, {"params": ps[2:], "alpha": 3.0}] for ps in twins]  # two groups: per-group kernels
    optimizers = [AlphaGrad(g, lr=0.1, alpha=7.0, momentum=0.9, impl=impl) for g in groups]
    optimizer_norm_calls = count_grad_norms_calls(monkeypatch, alphagrad_module)
    for step in range(3):
        grads = [torch.randn(shape) for shape in shapes]
        for params in twins:
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
        step_grad_norms(optimizers[0])  # what the monitors do on a logging step, for the first twin only
        optimizer_norm_calls.clear()
        optimizers[0].step()
        assert optimizer_norm_calls == []  # it took the shared norms
        optimizers[1].step()
        assert optimizer_norm_calls == [2, 2]  # the unmonitored twin computes its own, per group
        for monitored, plain in zip(*twins, strict=True):
            assert torch.equal(monitored, plain), step


def test_shared_norms_follow_in_place_changes_and_new_gradients() -> None:
    from lightning_alphagrad.optim.grad_stats import step_grad_norms

    params = [nn.Parameter(torch.randn(3, 4, dtype=torch.float64)), nn.Parameter(torch.randn(5, dtype=torch.float64))]
    optimizer = AlphaGrad(params, lr=0.1)
    for p in params:
        p.grad = torch.randn_like(p)
    _, first = step_grad_norms(optimizer)
    assert step_grad_norms(optimizer)[1] is first  # the same gradients: the cached tensors
    expected = [float(p.grad.norm()) for p in params]
    assert [float(n) for n in first] == pytest.approx(expected, rel=1e-12)
    params[0].grad.mul_(3.0)  # in place, like clipping
    _, scaled = step_grad_norms(optimizer)
    assert float(scaled[0]) == pytest.approx(3.0 * expected[0], rel=1e-12)
    params[1].grad = torch.full_like(params[1], 2.0)  # a new gradient tensor
    entries, fresh = step_grad_norms(optimizer)
    assert float(fresh[1]) == pytest.approx(2.0 * math.sqrt(5.0), rel=1e-12)
    params[0].grad = None
    entries, fresh = step_grad_norms(optimizer)
    assert len(entries) == len(fresh) == 1 and entries[0].param is params[1]


def test_manual_optimization_with_two_optimizers_keys_each(tmp_path: Path) -> None:
    recorder = StepRecorder()
    model = ManualActorCritic()
    callbacks = [GradNormMonitor(optimizer_names=["actor", "critic"]), TanhSaturationMonitor(THRESHOLD), recorder]
    trainer(tmp_path, callbacks, max_epochs=1, log_every_n_steps=4).fit(model, make_loader(10))

    rows = read_csv(tmp_path / "metrics.csv")
    # the critic steps every batch: logged at batches 3 and 7; the actor (even batches only) at its next step
    critic_steps = sorted(s for s, r in rows.items() if "grad_norm_unclipped/critic/total" in r)
    actor_steps = sorted(s for s, r in rows.items() if "grad_norm_unclipped/actor/total" in r)
    assert critic_steps == [3, 7] and actor_steps == [4, 8]
    assert sorted(s for s, r in rows.items() if "saturation/AlphaGrad-1/all" in r) == [3, 7]
    assert sorted(s for s, r in rows.items() if "saturation/AlphaGrad/all" in r) == [4, 8]
    sizes = layer_sizes(model)
    checked = 0
    for record in recorder.records:
        is_actor = record["optimizer"] == 0
        if record["step"] not in (actor_steps if is_actor else critic_steps):
            continue
        logged = rows[record["step"]]
        norms = reference_metrics(record, "actor" if is_actor else "critic")
        saturation = reference_metrics(record, "AlphaGrad" if is_actor else "AlphaGrad-1")
        unclipped = {k: v for k, v in norms.items() if k.startswith("grad_norm_unclipped/")}
        assert_logged_metrics_match(logged, unclipped, sizes)
        monitored = {k: v for k, v in saturation.items() if not k.startswith("grad_norm_unclipped/")}
        assert_logged_metrics_match(logged, monitored, sizes)
        checked += 1
    assert checked == 4


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, math.nan])
def test_saturation_threshold_outside_0_1_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match=r"Invalid threshold: .*\(0\.0, 1\.0\)"):
        TanhSaturationMonitor(threshold)


def test_other_optimizers_warn_once_and_log_nothing(tmp_path: Path) -> None:
    callbacks = [TanhSaturationMonitor(), AlphaMonitor()]
    with pytest.warns(UserWarning, match="is not AlphaGrad") as warned:
        trainer(tmp_path, callbacks, max_steps=6, log_every_n_steps=2).fit(AdamActorCritic(), make_loader(6))
    assert sum("is not AlphaGrad" in str(w.message) for w in warned) == 2  # one per callback, not per logging step
    assert not (tmp_path / "metrics.csv").exists() or not any(read_csv(tmp_path / "metrics.csv").values())


class FullPrecisionGradients(pl.Callback):
    """Recomputes the gradient of the same batch in fp32 without autocast, right before the step."""

    def __init__(self) -> None:
        self.batch: list[torch.Tensor] | None = None
        self.total_norms: dict[int, float] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self.batch = batch

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        assert self.batch is not None
        with torch.enable_grad(), torch.autocast("cpu", enabled=False):
            grads = torch.autograd.grad(pl_module.loss(self.batch), list(pl_module.parameters()))
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        self.total_norms[step] = float(torch.sqrt(sum(g.double().pow(2).sum() for g in grads)))


def test_fp16_mixed_precision_logs_unscaled_norms(tmp_path: Path) -> None:
    # precision="16-mixed" on CPU falls back to bf16 (no scaler); fp16 autocast with a GradScaler is set explicitly
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    reference = FullPrecisionGradients()
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer(tmp_path, [GradNormMonitor(), reference], max_steps=4, log_every_n_steps=2, plugins=[plugin]).fit(
        ActorCritic(), make_loader(4)
    )
    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted(rows) == [1, 3]
    for step, row in rows.items():
        # fp16 forward vs fp32 forward: equal to a few 1e-3; a scaled norm would be 4096 times larger
        assert row["grad_norm_unclipped/AlphaGrad/total"] == pytest.approx(reference.total_norms[step], rel=2e-2)


class RankFileLogger(Logger):
    """Writes what it receives on every rank (not only rank 0) to ``rank{r}.json``."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory
        self.metrics: dict[str, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "rank_file"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.setdefault(str(step), {}).update(metrics)
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        with open(os.path.join(self.directory, f"rank{rank}.json"), "w") as f:
            json.dump(self.metrics, f)


class AdaptiveActorCritic(ActorCritic):
    def setup(self, stage: str) -> None:
        pause_for_gloo_at_exit()  # each spawned rank

    def configure_optimizers(self) -> Any:
        optimizer = AlphaGrad(self.parameters(), lr=1e-2, alpha=2.0, momentum=0.9, eps=1e-5)
        scheduler = SaturationTargetAlpha(optimizer, target=0.2, every=2)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_ddp_spawn_two_ranks_log_identical_values(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    callbacks = [GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor()]
    pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=8,
        log_every_n_steps=2,
        logger=RankFileLogger(str(tmp_path)),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    ).fit(AdaptiveActorCritic(), make_loader(16))  # DistributedSampler: each rank sees other batches
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(map(int, ranks[0])) == [1, 3, 5, 7]
    assert ranks[0] == ranks[1]
    alphas = [ranks[0][str(s)]["alpha/AlphaGrad/pg0"] for s in (1, 3, 5, 7)]
    assert alphas[0] == 2.0 and len(set(alphas)) > 1  # the adaptive schedule moved alpha, the same on both ranks


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the resumed run logs into a directory of its own
def test_resume_from_checkpoint_logs_the_same_steps_and_values(tmp_path: Path, accelerator: str) -> None:
    def run(root: Path, epochs: int, ckpt_path: str | None = None) -> pl.Trainer:
        callbacks = [GradNormMonitor(), TanhSaturationMonitor(), AlphaMonitor()]
        fit = trainer(root, callbacks, max_epochs=epochs, log_every_n_steps=4, enable_checkpointing=True,
                      accelerator=accelerator)  # fmt: skip
        fit.fit(AdaptiveActorCritic(), make_loader(6), ckpt_path=ckpt_path)
        return fit

    torch.set_num_threads(1)
    run(tmp_path / "straight", epochs=2)
    first = run(tmp_path / "first", epochs=1)
    run(tmp_path / "resumed", epochs=2, ckpt_path=first.checkpoint_callback.best_model_path)
    straight = read_csv(tmp_path / "straight" / "metrics.csv")
    assert sorted(straight) == [3, 7, 11]
    assert read_csv(tmp_path / "first" / "metrics.csv") == {3: straight[3]}
    assert read_csv(tmp_path / "resumed" / "metrics.csv") == {7: straight[7], 11: straight[11]}


def test_gradient_accumulation_gives_one_record_per_optimizer_step(tmp_path: Path) -> None:
    recorder = StepRecorder()
    model = ActorCritic()
    callbacks = [GradNormMonitor(), TanhSaturationMonitor(THRESHOLD), recorder]
    trainer(tmp_path, callbacks, max_epochs=1, log_every_n_steps=2, accumulate_grad_batches=3).fit(
        model, make_loader(12)
    )
    assert [record["step"] for record in recorder.records] == [0, 1, 2, 3]  # 12 batches, 4 optimizer steps
    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted(rows) == [1, 3]
    for record in recorder.records[1::2]:
        assert_logged_metrics_match(rows[record["step"]], reference_metrics(record, "AlphaGrad"), layer_sizes(model))


def test_unused_per_batch_hooks_are_not_dispatched_but_overrides_are(tmp_path: Path) -> None:
    from lightning.pytorch.profilers import PassThroughProfiler

    class RecordingProfiler(PassThroughProfiler):
        """Records the actions Lightning profiles: one ``[Callback]<state_key>.<hook>`` per dispatched hook."""

        def __init__(self) -> None:
            super().__init__()
            self.actions: list[str] = []

        def start(self, action_name: str) -> None:
            self.actions.append(action_name)

    class AfterBackwardMonitor(GradNormMonitor):
        def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.calls = getattr(self, "calls", 0) + 1

    profiler = RecordingProfiler()
    subclassed = AfterBackwardMonitor()
    callbacks = [GradNormMonitor(), subclassed]
    trainer(tmp_path, callbacks, max_steps=4, log_every_n_steps=2, profiler=profiler).fit(
        ActorCritic(), make_loader(4)
    )
    dispatched = [a.removeprefix("[Callback]") for a in profiler.actions if a.startswith("[Callback]")]
    per_batch = (
        "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_zero_grad", "on_train_batch_end",
    )  # fmt: skip
    for hook in per_batch:
        expected = 4 if hook == "on_after_backward" else 0  # the subclass's own hook, once per batch
        assert dispatched.count(f"GradNormMonitor.{hook}") == 0
        assert sum(a.endswith(f"AfterBackwardMonitor.{hook}") for a in dispatched) == expected, hook
    assert subclassed.calls == 4
    assert dispatched.count("GradNormMonitor.on_before_optimizer_step") == 4
    rows = read_csv(tmp_path / "metrics.csv")
    assert sorted(rows) == [1, 3] and "grad_norm_unclipped/AlphaGrad/total" in rows[1]
