"""AlphaGrad against an independent reference written here, plus the paper's properties and the fault handling."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from alphagrad_reference import assert_matches, random_problem, reference_steps, run

from lightning_alphagrad import AlphaGrad, NonFiniteGradientError
from lightning_alphagrad.optim.functional import DOT_MIN_NUMEL, grad_norm, grad_norms

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (64, 64)]


CONFIGS = [
    dict(lr=0.1, alpha=3.0),
    dict(lr=0.05, alpha=98.0, momentum=0.9),
    dict(lr=0.05, alpha=10.0, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.02, alpha=2.0, momentum=0.8, nesterov=True, weight_decay=0.1, eps=1e-5),
    dict(lr=0.02, alpha=0.7, momentum=0.5, size_aware=True),
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_matches_reference(foreach, config, dtype, tol, device):
    params0, grads = random_problem(dtype, SHAPES, steps=4, device=device)
    expected, expected_bufs = reference_steps(params0, grads, **config)
    params, opt = run(params0, grads, foreach=foreach, **config)
    assert_matches(params, opt, expected, expected_bufs, tol)


def test_state_is_conditional_on_momentum():
    params0, grads = random_problem(torch.float32, SHAPES, steps=2)
    _, opt = run(params0, grads, lr=0.1, alpha=2.0)
    assert all(len(opt.state[p]) == 0 for group in opt.param_groups for p in group["params"])
    _, opt = run(params0, grads, lr=0.1, alpha=2.0, momentum=0.9)
    for group in opt.param_groups:
        for p in group["params"]:
            assert list(opt.state[p]) == ["momentum_buffer"]
            assert opt.state[p]["momentum_buffer"].shape == p.shape


def one_update(grad: torch.Tensor, alpha: float, eps: float = 1e-8, **kwargs) -> torch.Tensor:
    """u of a single step: lr=1, no momentum, no decay, so u = p_before - p_after."""
    p = torch.zeros_like(grad, requires_grad=True)
    opt = AlphaGrad([p], lr=1.0, alpha=alpha, eps=eps, **kwargs)
    p.grad = grad.clone()
    opt.step()
    return -p.detach()


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0, 98.0, 1e4])
@pytest.mark.parametrize("numel", [1, 6, 300])
def test_paper_properties(alpha, numel):
    gen = torch.Generator().manual_seed(numel)
    g = torch.randn(numel, generator=gen, dtype=torch.float64) * 3.0
    eps = 1e-8
    u = one_update(g, alpha, eps)
    # Every component lies in (-1, 1); fp64 tanh rounds to exactly 1 beyond ~19, so strictness is checked below that.
    assert (u.abs() < 1).all() if alpha < 15 else (u.abs() <= 1).all()
    assert float(u.square().sum()) <= min(numel, alpha**2) + 1e-12
    norm = float(g.norm())
    assert float(g @ u) >= math.tanh(alpha) * norm**2 / (norm + eps) - 1e-9
    # Scale invariance: c * g gives the same update up to the eps effect, |d u| <= alpha * eps / ||g||.
    torch.testing.assert_close(one_update(1e3 * g, alpha, eps), u, atol=alpha * eps / norm + 1e-15, rtol=0)


def test_alpha_limits():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(50, generator=gen, dtype=torch.float64)
    normalized = g / (g.norm() + 1e-8)
    alpha = 1e-4
    torch.testing.assert_close(one_update(g, alpha) / alpha, normalized, atol=1e-8, rtol=0)
    torch.testing.assert_close(one_update(g, 1e6), torch.sign(g), atol=1e-6, rtol=0)


def test_size_aware_alpha_scales_with_sqrt_numel():
    g = torch.randn(400, dtype=torch.float64)
    torch.testing.assert_close(one_update(g, 0.5, size_aware=True), one_update(g, 0.5 * 20.0))


def test_zero_gradient_gives_zero_update():
    u = one_update(torch.zeros(10), alpha=100.0)
    assert torch.equal(u, torch.zeros(10))


def test_params_without_grad_are_skipped():
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = AlphaGrad([a, b], lr=0.1, alpha=1.0, momentum=0.9)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(3))


def test_closure_runs_with_grad_and_returns_loss():
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = AlphaGrad([p], lr=0.1, alpha=1.0)

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert float(loss.detach()) == 5.0
    expected = torch.tensor([1.0, -2.0]) - 0.1 * torch.tanh(torch.tensor([2.0, -4.0]) / (math.sqrt(20.0) + 1e-8))
    torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("impl", ["reference", "foreach", "flat", "compiled"])
def test_state_dict_round_trip_is_bitwise(impl, device):
    params0, grads = random_problem(torch.float32, SHAPES, steps=6, device=device)
    kwargs = dict(lr=0.05, alpha=20.0, momentum=0.9, nesterov=True, weight_decay=0.01, impl=impl)
    straight, _ = run(params0, grads, **kwargs)

    first, opt = run(params0, grads[:3], **kwargs)
    saved = copy.deepcopy(opt.state_dict())
    resumed = [p.detach().clone().requires_grad_(True) for p in first]
    opt2 = AlphaGrad(resumed, **kwargs)
    opt2.load_state_dict(saved)
    for step_grads in grads[3:]:
        for p, g in zip(resumed, step_grads, strict=True):
            p.grad = g.clone()
        opt2.step()
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    # Every kernel keeps the usual layout: one momentum buffer per parameter, of its shape.
    assert [opt2.state[p]["momentum_buffer"].shape for p in resumed] == [p.shape for p in resumed]


def test_per_group_hyperparameters():
    a, b = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    opt = AlphaGrad([{"params": [a], "alpha": 0.5}, {"params": [b], "lr": 0.2}], lr=0.1, alpha=50.0)
    g = torch.tensor([1.0, 2.0, -3.0, 0.5])
    a.grad, b.grad = g.clone(), g.clone()
    opt.step()
    normalized = g / (g.norm() + 1e-8)
    torch.testing.assert_close(a.detach(), -0.1 * torch.tanh(0.5 * normalized))
    torch.testing.assert_close(b.detach(), -0.2 * torch.tanh(50.0 * normalized))


@pytest.mark.parametrize("foreach", [False, True])
def test_low_precision_grads_normalized_in_fp32(foreach):
    gen = torch.Generator().manual_seed(3)
    p32 = [torch.randn(300, generator=gen), torch.randn(5, 5, generator=gen)]
    g32 = [torch.randn(300, generator=gen) * 1e3, torch.randn(5, 5, generator=gen)]
    params = [p.to(torch.bfloat16).requires_grad_(True) for p in p32]
    opt = AlphaGrad(params, lr=0.1, alpha=30.0, foreach=foreach)
    for p, g in zip(params, g32, strict=True):
        p.grad = g.to(torch.bfloat16)
    opt.step()
    for p, p0, g in zip(params, p32, g32, strict=True):
        gb = g.to(torch.bfloat16).float()
        u = torch.tanh(30.0 * gb / (gb.norm() + 1e-8))
        expected = (p0.to(torch.bfloat16) + (-0.1 * u).to(torch.bfloat16)).float()
        torch.testing.assert_close(p.detach().float(), expected, atol=1e-2, rtol=1e-2)


def test_complex_params_are_real_pairs():
    gen = torch.Generator().manual_seed(4)
    pr = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    gr = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    pc = torch.view_as_complex(pr.clone()).requires_grad_(True)
    opt = AlphaGrad([pc], lr=0.1, alpha=5.0, momentum=0.9)
    for _ in range(2):
        pc.grad = torch.view_as_complex(gr.clone())
        opt.step()
    expected, _ = reference_steps([pr], [[gr], [gr]], lr=0.1, alpha=5.0, momentum=0.9)
    torch.testing.assert_close(torch.view_as_real(pc.detach()), expected[0], atol=1e-12, rtol=0)
    assert opt.state[pc]["momentum_buffer"].is_complex()


def test_sparse_gradient_raises():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = AlphaGrad(emb.parameters(), lr=0.1, alpha=1.0)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(lr=-1.0), "lr"),
        (dict(lr=math.nan), "lr"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=-2.0), "alpha"),
        (dict(alpha=math.inf), "alpha"),
        (dict(alpha=math.nan), "alpha"),
        (dict(eps=0.0), "eps"),
        (dict(momentum=1.0), "momentum"),
        (dict(momentum=-0.1), "momentum"),
        (dict(dampening=1.5), "dampening"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(nesterov=True), "nesterov"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
        (dict(on_nonfinite="ignore"), "on_nonfinite"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AlphaGrad([torch.zeros(2, requires_grad=True)], **{"lr": 0.1, "alpha": 1.0, **kwargs})


def test_bad_group_argument_is_rejected():
    with pytest.raises(ValueError, match="alpha"):
        AlphaGrad([{"params": [torch.zeros(2, requires_grad=True)], "alpha": -1.0}], lr=0.1, alpha=1.0)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_gradient_skips_the_whole_step(foreach, bad):
    a, b = torch.ones(4, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = AlphaGrad([a, b], lr=0.1, alpha=2.0, momentum=0.9, foreach=foreach)
    a.grad, b.grad = torch.ones(4), torch.ones(3)
    opt.step()
    a_before, b_before = a.detach().clone(), b.detach().clone()
    buf_before = opt.state[a]["momentum_buffer"].clone()
    a.grad = torch.ones(4)
    b.grad = torch.tensor([1.0, bad, 1.0])
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    assert torch.equal(a.detach(), a_before) and torch.equal(b.detach(), b_before)
    assert torch.equal(opt.state[a]["momentum_buffer"], buf_before)
    assert opt.skipped_steps == 1
    state = opt.state_dict()
    assert [g["skipped_steps"] for g in state["param_groups"]] == [1] and set(state["state"]) == {0, 1}  # per param
    fresh = AlphaGrad([a, b], lr=0.1, alpha=2.0, momentum=0.9)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.skipped_steps == 1


def test_nonfinite_gradient_can_raise():
    p = torch.ones(3, requires_grad=True)
    opt = AlphaGrad([p], lr=0.1, alpha=2.0, on_nonfinite="raise")
    p.grad = torch.tensor([1.0, math.nan, 0.0])
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3))


def test_compiled_step_has_no_graph_break_and_matches_eager():
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    x = torch.randn(16, 6, generator=gen)
    eager_opt = AlphaGrad(model.parameters(), lr=0.05, alpha=10.0, momentum=0.9)
    compiled_opt = AlphaGrad(twin.parameters(), lr=0.05, alpha=10.0, momentum=0.9)
    compiled_step = torch.compile(compiled_opt.step, backend="aot_eager", fullgraph=True)
    for _ in range(3):
        for m, opt, step in ((model, eager_opt, eager_opt.step), (twin, compiled_opt, compiled_step)):
            opt.zero_grad()
            m(x).square().mean().backward()
            step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    # A non-finite gradient inside the compiled step leaves everything untouched and is counted.
    before = [p.detach().clone() for p in twin.parameters()]
    bufs = [compiled_opt.state[p]["momentum_buffer"].clone() for p in twin.parameters()]
    next(twin.parameters()).grad.fill_(math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled_step()
    for p, b, buf in zip(twin.parameters(), before, bufs, strict=True):
        assert torch.equal(p.detach(), b)
        assert torch.equal(compiled_opt.state[p]["momentum_buffer"], buf)
    assert compiled_opt.skipped_steps == 1


def test_norms_of_large_tensors_are_closer_to_the_exact_norm_than_torch_norms():
    """Above DOT_MIN_NUMEL elements a dense fp32 gradient's norm is sqrt(dot(g, g)) (faster with several threads);
    both forms agree with the fp64 norm, dot at least as closely; small and non-contiguous tensors keep vector_norm."""
    gen = torch.Generator().manual_seed(11)
    large = torch.randn(DOT_MIN_NUMEL + 1000, generator=gen) * 1e-3
    small = torch.randn(300, generator=gen)
    strided = torch.randn(2 * DOT_MIN_NUMEL + 2000, generator=gen)[::2]
    norms = grad_norms([large, small, strided])
    assert grad_norm(large).item() == norms[0].item() == torch.dot(large, large).sqrt().item()
    assert norms[1].item() == torch.linalg.vector_norm(small).item()
    assert norms[2].item() == torch.linalg.vector_norm(strided).item()
    exact = large.double().norm().item()
    assert abs(norms[0].item() - exact) <= max(abs(torch.linalg.vector_norm(large).item() - exact), 2e-7 * exact)
