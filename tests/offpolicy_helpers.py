"""Helpers shared by the TD3 and DQN tests (and the DDP script): a quiet Trainer, flat parameters."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn


def make_trainer(tmp_path: object, **kwargs: object) -> L.Trainer:
    """A Trainer without logger, checkpoints, progress bar or summary, writing under ``tmp_path``; ``kwargs`` win."""
    options = dict(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=str(tmp_path))  # fmt: skip
    return L.Trainer(**{**options, **kwargs})


def params_of(module: nn.Module) -> Tensor:
    """All parameters of ``module`` as one new 1-D tensor."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])
