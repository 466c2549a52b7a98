"""Shared test options. ``pytest --device cuda`` runs the tests that take the ``device`` fixture (the optimizer's
kernels against the reference, and the monitors against their independent computation) on a GPU."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for the tests that take `device` (cpu, cuda)")


def pytest_configure(config: pytest.Config) -> None:
    device = torch.device(config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: no CUDA device is available")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def accelerator(device: torch.device) -> str:
    """Lightning's name for ``device``."""
    return "gpu" if device.type == "cuda" else device.type
