"""The ``lightning-alphagrad`` CLI and AlphaGrad inside a user's own plain ``LightningCLI``."""

from __future__ import annotations

import pytest
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.cli import AlphaGradCLI, main
from lightning_alphagrad.plotting import read_curve

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


class CurveModel(BoringModel):
    """Boring model that also logs a fake learning curve, as the RL modules do."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("env_steps", float(100 * (self.global_step + 1)))
        self.log("charts/episodic_return", float(self.global_step))
        return out


def test_plain_lightning_cli_selects_alphagrad_by_import_path(tmp_path):
    cli = LightningCLI(
        BoringModel, BoringDataModule, save_config_kwargs={"overwrite": True},
        args=["fit", "--optimizer", "lightning_alphagrad.AlphaGrad", "--optimizer.alpha", "7.5",
              "--optimizer.momentum", "0.9", "--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path),
              "--seed_everything", "0", *QUIET],
    )
    opt = cli.trainer.optimizers[0]
    assert isinstance(opt, AlphaGrad)
    assert opt.param_groups[0]["alpha"] == 7.5 and opt.param_groups[0]["momentum"] == 0.9
    assert all("momentum_buffer" in opt.state[p] for p in cli.model.parameters())


def test_cli_short_names_and_per_step_scheduler(tmp_path, capsys):
    cli = AlphaGradCLI(
        model_class=BoringModel, subclass_mode_model=True, datamodule_class=BoringDataModule,
        args=["fit", "--model", f"{__name__}.CurveModel", "--optimizer", "AlphaGrad", "--optimizer.alpha", "3",
              "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "2", "--lr_scheduler.gamma", "0.5",
              "--trainer.max_steps", "5", "--trainer.log_every_n_steps", "1", "--trainer.logger", "CSVLogger",
              "--trainer.logger.save_dir",
              str(tmp_path), "--trainer.default_root_dir", str(tmp_path), *QUIET],
    )
    config = cli.trainer.lr_scheduler_configs[0]
    assert config.interval == "step"
    # stepped after each of the 5 optimizer steps: lr = lr0 * 0.5 ** (5 // 2)
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(cli.trainer.optimizers[0].defaults["lr"]
                                                                             * 0.25)
    out = capsys.readouterr().out
    assert "Learning curve:" in out and "Logs:" in out
    assert "Training return, mean of the last 5 logged windows: 2.0" in out  # returns 0, 1, 2, 3, 4 (below)
    png = next(tmp_path.rglob("learning_curve.png"))
    assert png.stat().st_size > 1000
    xs, ys = read_curve(png.with_name("metrics.csv"), "charts/episodic_return")
    assert list(xs) == [100.0, 200.0, 300.0, 400.0, 500.0] and list(ys) == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    "bad, line",
    [
        (["--optimizer.alpha", "-1"], "error: Invalid alpha: -1.0; it must be finite and lie in (0.0, inf)"),
        (["--optimizer.alhpa", "3"], "error: --optimizer: Option 'alhpa' is not accepted"),
        (["--optimizer.alpha", "steep"], "error: --optimizer.alpha: Expected a <class 'float'>. Got value: steep"),
        (["--trainer.max_epochs", "x"], "error: --trainer.max_epochs: Expected a <class 'int'>; got x"),
    ],
)
def test_config_errors_print_one_line_and_exit_2(tmp_path, bad, line, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", "lightning.pytorch.demos.boring_classes.BoringModel", "--optimizer", "AlphaGrad",
              *bad, "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [line, "(lightning-alphagrad fit --help lists the options)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", ["PPO", "DQN", "TD3"])
def test_unknown_env_exits_2_naming_it_without_run_directory(tmp_path, model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", model, "--model.env_id", "NoSuchEnv-v0", "--trainer.default_root_dir",
              str(tmp_path / "run")])
    assert exc.value.code == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("error: Invalid env_id 'NoSuchEnv-v0': ") and "'CartPole-v1'" in first
    assert "Namespace(" not in first and not (tmp_path / "run").exists()


def test_nested_option_error_names_the_option_and_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", "PPO", "--model.vectorization", "fork", "--trainer.default_root_dir", str(tmp_path)])
    assert exc.value.code == 2
    expected = "error: --model.vectorization: Expected a typing.Literal['sync', 'async']. Got value: fork"
    assert capsys.readouterr().err.splitlines()[0] == expected
