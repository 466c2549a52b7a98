"""Helpers shared by the tests (and the DDP script): a quiet Trainer, flat parameters."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn


def quiet_trainer(root: object | None = None, **kwargs: object) -> L.Trainer:
    """A one-device CPU Trainer without logger, checkpoints, progress bar or model summary, writing under ``root``
    if given; ``kwargs`` win."""
    options: dict[str, object] = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    if root is not None:
        options["default_root_dir"] = str(root)
    return L.Trainer(**{**options, **kwargs})


def params_of(module: nn.Module) -> Tensor:
    """All parameters of ``module`` as one new 1-D tensor."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])
