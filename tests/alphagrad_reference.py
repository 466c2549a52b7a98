"""Test helpers: an independent AlphaGrad reference (the paper's update in plain tensor arithmetic, no library code)
and a driver that steps the optimizer under test on recorded gradients."""

from __future__ import annotations

import math

import torch

from lightning_alphagrad import AlphaGrad


def reference_steps(params, grads_per_step, *, lr, alpha, momentum=0.0, dampening=0.0, nesterov=False,
                    weight_decay=0.0, eps=1e-8, maximize=False, size_aware=False):
    """The paper's update for one param group, tensor by tensor, in plain arithmetic."""
    params = [p.detach().clone() for p in params]
    bufs = [None] * len(params)
    for grads in grads_per_step:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = -g if maximize else g
            steep = alpha * math.sqrt(g.numel()) if size_aware else alpha
            u = torch.tanh(steep * (g / (math.sqrt(float((g.double() ** 2).sum())) + eps)))
            if momentum > 0:
                bufs[i] = u.clone() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * u
                direction = u + momentum * bufs[i] if nesterov else bufs[i]
            else:
                direction = u
            params[i] = p * (1 - lr * weight_decay) - lr * direction
    return params, bufs


def random_problem(dtype, shapes, steps=3, seed=0, device="cpu"):
    """Parameters of ``shapes`` and ``steps`` lists of gradients, drawn on the CPU (the same numbers on every device),
    then moved; the gradients' scales cycle through 1e-2 ... 1e1 over the tensors."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=dtype).to(device) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype).to(device) * 10.0 ** (i % 4 - 2) for i, s in enumerate(shapes)]
             for _ in range(steps)]
    return params, grads


def run(params0, grads_per_step, groups=1, **kwargs):
    """Step a fresh ``AlphaGrad(copies of params0, **kwargs)`` once per entry of ``grads_per_step``; ``groups`` 2
    splits the parameters into two param groups with the same settings."""
    params = [p.detach().clone().requires_grad_(True) for p in params0]
    half = len(params) // 2
    opt = AlphaGrad(params if groups == 1 else [{"params": params[:half]}, {"params": params[half:]}], **kwargs)
    for grads in grads_per_step:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return params, opt


def assert_matches(params, opt, expected, expected_bufs, tol):
    """Params and momentum buffers of ``opt`` equal the reference within ``tol`` (absolute); no buffer where none."""
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, atol=tol, rtol=0)
    for p, e in zip(params, expected_bufs, strict=True):
        if e is None:
            assert "momentum_buffer" not in opt.state[p]
        else:
            torch.testing.assert_close(opt.state[p]["momentum_buffer"], e, atol=tol, rtol=0)
