"""Accurate replacements for ``torch.tanh``, which is slow on some CPUs (~0.2-0.4 Gelem/s per thread).

All keep the absolute error against ``torch.tanh`` below 1e-6 in float32 (measured: rational 3e-7, exp 6e-8,
sigmoid 2e-7 over [-30, 30] and tiny magnitudes); the exp and sigmoid forms are exact to ~3e-16 in float64, the
rational one to 4e-8 (its fit error), so it is meant for float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["exp_tanh", "rational_tanh", "sigmoid_tanh_"]


def rational_tanh(x: Tensor) -> Tensor:
    """``tanh`` as a clamped rational function: multiplies, adds and one division, which vectorize on any CPU.

    ``tanh(x) ~ y * P(y^2) / Q(y^2)`` with ``y = clamp(x, -9, 9) / 9`` (``1 - tanh(9) = 3e-8``); the coefficients
    were fitted here by iteratively reweighted least squares (Lawson) for the smallest maximum error on [0, 9]
    (1.4e-9 in exact arithmetic). They are literals on purpose: ``torch.compile`` turns floats read from globals into
    runtime inputs, which costs the kernel half its speed. Written for compiled kernels (eagerly it is many ops).
    """
    y = x.clamp(-9.0, 9.0) * (1.0 / 9.0)
    z = y * y
    p = (
        (
            (((-0.2107471249424057 * z + 1.6294980481123489) * z - 7.759813199247266) * z + 53.09952440912023) * z
            + 182.97223397086296
        )
        * z
        + 95.34707887579489
    ) * z + 8.999999720489454
    q = ((134.91142310512907 * z + 160.57225447956532) * z + 37.59410927534302) * z + 1.0
    return (y * p / q).clamp(-1.0, 1.0)  # rounding near the clamp could give 1 + 1 ulp


def exp_tanh(x: Tensor) -> Tensor:
    """``tanh(x) = sign(x) * (1 - e) / (1 + e)`` with ``e = exp(-2|x|)`` in (0, 1]: no overflow, one ``exp``.

    Written for compiled kernels, where the expression fuses into one vectorized loop.
    """
    e = torch.exp(-2.0 * x.abs())
    return torch.copysign((1.0 - e) / (1.0 + e), x)


def sigmoid_tanh_(doubled: Tensor) -> Tensor:
    """In place: ``doubled <- tanh(doubled / 2) = 2 * sigmoid(doubled) - 1``, three fast eager ops.

    Takes ``2 * x`` so callers fold the factor 2 into a multiplication they do anyway.
    """
    return doubled.sigmoid_().mul_(2.0).sub_(1.0)
