"""Accurate replacements for ``torch.tanh``, which is slow on some CPUs (~0.2-0.4 Gelem/s per thread).

All keep the absolute error against ``torch.tanh`` below 1e-6 in float32 (measured: rational 7.8e-7, exp 6e-8,
sigmoid 2e-7 over [-30, 30] and tiny magnitudes); the exp and sigmoid forms are exact to ~3e-16 in float64, the
rational one to 2e-7 (its fit error), so it is meant for float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["TanhForm", "exp_tanh", "rational_tanh", "rational_tanh_of_eighth", "sigmoid_tanh_", "tanh_form"]


def rational_tanh(x: Tensor) -> Tensor:
    """``tanh`` as a clamped rational function: multiplies, adds and one division, which vectorize on any CPU.

    ``tanh(x) ~ y * P(y^2) / Q(y^2)`` with ``y = clamp(x / 8, -1, 1)`` (``1 - tanh(8) = 2.3e-7``), ``P`` of degree 4
    and ``Q`` of degree 3; the coefficients were fitted here by iteratively reweighted least squares for the smallest
    maximum error on [0, 8] (1.9e-7 in exact arithmetic): the lowest degrees that stay below 1e-6 in fp32 (each term
    costs the fused update ~5% of its time). ``P`` is then scaled by ``1 - 2**-22`` so that the fp32 result never
    leaves [-1, 1] without a final clamp (a clamp costs the fused update ~10%): checked on every fp32 input in
    [1e-30, 8] and its negation, eagerly and compiled, the largest magnitude is 1 - 3e-7 and the largest error
    7.8e-7; compiled with FMAs, as the group step is, the largest magnitude is 1 - 1.8e-7. The coefficients are
    literals on purpose: ``torch.compile`` turns floats read from globals into runtime inputs, which costs the kernel
    half its speed. Written for compiled kernels (eagerly it is many ops). The clamp works on the bits (see
    :func:`_clamp_unit`), so inf gives +-1 and NaN gives +-1 too: callers mask non-finite inputs first, as AlphaGrad's
    kernels do.
    """
    if x.dtype != torch.float32:
        raise ValueError(f"rational_tanh takes float32, got x of dtype {x.dtype}")
    return rational_tanh_of_eighth(x * 0.125)


def rational_tanh_of_eighth(x8: Tensor) -> Tensor:
    """``tanh(8 * x8)`` by :func:`rational_tanh`'s formula, for callers that fold the ``1/8`` into a multiplication by
    a scalar they do anyway (exact: a power of two)."""
    y = _clamp_unit(x8)
    z = y * y
    p = (((-0.8080479092333978 * z + 14.855682724029744) * z + 87.96704391938991) * z + 65.02312433253056) * z
    q = ((51.19792723826837 * z + 93.37897272167567) * z + 29.46100830830395) * z + 1.0
    return y * (p + 7.9999906327357255) / q


def _clamp_unit(y: Tensor) -> Tensor:
    """``clamp(y, -1, 1)`` for float32 ``y`` as four integer ops on its bits: magnitude, minimum, sign, sign back.

    IEEE floats of one sign order like their bit patterns as integers, so the magnitude's bits are clamped with an
    integer minimum. Compiled, this costs the fused update ~10% less time than ``clamp``, which inductor lowers with
    NaN propagation (extra compares and blends per bound).
    """
    bits = y.view(torch.int32)
    magnitude = (bits & 0x7FFFFFFF).clamp_max(0x3F800000)  # 0x3F800000: the bits of 1.0
    return (magnitude | (bits & -0x80000000)).view(torch.float32)


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


class TanhForm(NamedTuple):
    """``tanh(x) = function(x * input_scale)``; callers fold ``input_scale`` into a scalar they multiply by anyway."""

    input_scale: float
    function: Callable[[Tensor], Tensor]


def tanh_form(dtype: torch.dtype, fast_tanh: bool) -> TanhForm:
    """tanh for compiled kernels: exact, or the fastest form accurate to ``dtype`` (rational in fp32, exp-based
    in fp64)."""
    if not fast_tanh:
        return TanhForm(1.0, torch.tanh)
    return TanhForm(0.125, rational_tanh_of_eighth) if dtype == torch.float32 else TanhForm(1.0, exp_tanh)
