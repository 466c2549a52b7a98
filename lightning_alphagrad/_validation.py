"""Argument checks shared by the optimizer, the schedules and the RL modules: a ``ValueError`` that names the argument,
its value and what it must be."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_arg", "check_range"]


def check_arg(name: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and the ``allowed`` values unless ``ok``."""
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r}; it must be {allowed}")


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is finite and inside the interval."""
    inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not (math.isfinite(value) and inside):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"Invalid {name}: {value!r}; it must be finite and lie in {interval}")
