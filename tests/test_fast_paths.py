"""AlphaGrad's fast kernels (flat, compiled, foreach) against a reference loop written here, plus their contracts:
state layout and checkpoints, the non-finite skip, param groups, memory, the fast tanh and compile stability."""

from __future__ import annotations

import copy
import math
import threading
import warnings

import pytest
import torch
from alphagrad_reference import assert_matches, random_problem, reference_steps, run
from torch.profiler import ProfilerActivity, profile

from lightning_alphagrad import AlphaGrad
from lightning_alphagrad.optim import alphagrad as alphagrad_module
from lightning_alphagrad.optim.fast_tanh import exp_tanh, rational_tanh, sigmoid_tanh_
from lightning_alphagrad.optim.kernels import compiled as compiled_module

torch.set_num_threads(1)

SHAPES = [(7, 5), (5,), (3, 4, 2), (2,), (40, 30)]  # no 1-element tensor: keeps the compiled variants few


def problem(dtype, steps=3, seed=0, shapes=SHAPES, device="cpu"):
    return random_problem(dtype, shapes, steps, seed, device)


CONFIGS = [
    dict(lr=0.1, alpha=3.0),
    dict(lr=0.05, alpha=98.0, momentum=0.9),
    dict(lr=0.05, alpha=10.0, momentum=0.9, dampening=0.3, weight_decay=0.01, maximize=True),
    dict(lr=0.02, alpha=2.0, momentum=0.8, nesterov=True, weight_decay=0.1, eps=1e-5),
    dict(lr=0.02, alpha=0.7, momentum=0.5, size_aware=True),
]


@pytest.mark.parametrize("impl", ["flat", "foreach"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_eager_fast_paths_match_reference_with_exact_tanh(impl, config, dtype, tol, device):
    params0, grads = problem(dtype, device=device)
    expected, bufs = reference_steps(params0, grads, **config)
    params, opt = run(params0, grads, impl=impl, fast_tanh=False, **config)
    assert opt.last_impls == (impl,)
    assert_matches(params, opt, expected, bufs, tol)


# The compiled kernel compiles once per variant (momentum or not, Nesterov, exact or fast tanh, dtype): few cases.
COMPILED_CASES = [
    (torch.float64, False, 1e-12, dict(lr=0.05, alpha=10.0, momentum=0.9, dampening=0.3, weight_decay=0.01,
                                       maximize=True, size_aware=True)),
    (torch.float32, False, 1e-6, dict(lr=0.02, alpha=2.0, momentum=0.8, nesterov=True, weight_decay=0.1)),
    (torch.float32, True, 2e-6, dict(lr=0.05, alpha=98.0, momentum=0.9)),
    (torch.float32, True, 2e-6, dict(lr=0.1, alpha=3.0)),
]


# one small group: the whole step in one graph; two groups, or one large group: a graph per group on given norms
@pytest.mark.parametrize("groups,large", [(1, False), (2, False), (1, True)])
@pytest.mark.parametrize("dtype,fast_tanh,tol,config", COMPILED_CASES)
def test_compiled_path_matches_reference(monkeypatch, dtype, fast_tanh, tol, config, groups, large, device):
    if large:
        monkeypatch.setattr(alphagrad_module, "FLAT_MAX_NUMEL", 10)  # the problem's 1,266 elements count as large
    params0, grads = problem(dtype, device=device)
    expected, bufs = reference_steps(params0, grads, **config)
    params, opt = run(params0, grads, groups, impl="compiled", fast_tanh=fast_tanh, **config)
    assert opt.last_impls == ("compiled",) * groups
    assert {step.flags[-1] for step in opt._group_steps.values()} == {groups == 2 or large}  # norms given
    assert_matches(params, opt, expected, bufs, tol)


# large groups: a graph on given norms; small ones: the whole step in one graph
@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("dtype,fast_tanh,tol,config", [COMPILED_CASES[0], COMPILED_CASES[2]])
def test_compiled_path_with_scalars_apart_matches_reference(monkeypatch, dtype, fast_tanh, tol, config, large):
    """From SCALARS_APART_MIN_NUMEL elements a group's graph computes its loops' scalars into one buffer first (the
    problem's 1,266 elements stay below it: every other compiled test runs them inline)."""
    monkeypatch.setattr(compiled_module, "SCALARS_APART_MIN_NUMEL", 1)
    monkeypatch.setattr(compiled_module, "_COMPILING", {})  # not a graph of another test, made with them inline
    if large:
        monkeypatch.setattr(alphagrad_module, "FLAT_MAX_NUMEL", 10)
    params0, grads = problem(dtype)
    expected, bufs = reference_steps(params0, grads, **config)
    params, opt = run(params0, grads, impl="compiled", fast_tanh=fast_tanh, **config)
    assert opt.last_impls == ("compiled",)
    assert_matches(params, opt, expected, bufs, tol)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]])
def test_flat_path_with_fast_tanh_within_stated_tolerance(config):
    """fast tanh: |error| < 1e-6 per step on u, so params and buffers stay within a few 1e-6 after three steps."""
    params0, grads = problem(torch.float32)
    expected, bufs = reference_steps(params0, grads, **config)
    params, opt = run(params0, grads, impl="flat", fast_tanh=True, **config)
    assert_matches(params, opt, expected, bufs, 2e-6)


@pytest.mark.parametrize(
    "fn", [rational_tanh, exp_tanh, lambda x: sigmoid_tanh_(2 * x)], ids=["rational", "exp", "sigmoid"]
)
def test_fast_tanh_max_abs_error_below_1e6(fn):
    tiny = torch.logspace(-30, 1.5, 20_000)
    x = torch.cat([torch.linspace(-40, 40, 400_001), tiny, -tiny, torch.tensor([0.0, -0.0, 1e-45, 3e38, -3e38])])
    error = (fn(x.clone()) - torch.tanh(x)).abs().max().item()
    assert error <= 1e-6
    assert (fn(x.clone()).abs() <= 1).all()


def test_rational_tanh_compiled_matches_torch_tanh_and_clamps_on_the_bits():
    """Compiled as the group step compiles it: multiply-adds contracted to FMAs."""
    tiny = torch.logspace(-30, 1.5, 20_000)
    near_saturation = torch.linspace(7.5, 8.0, 100_001)  # where |u| is largest
    x = torch.cat([torch.linspace(-40, 40, 400_001), tiny, -tiny, near_saturation, -near_saturation,
                   torch.tensor([0.0, -0.0, 1e-45, 3e38, -3e38])])  # fmt: skip
    with torch._inductor.config.patch(compiled_module.COMPILE_OPTIONS):
        compiled = torch.compile(rational_tanh, fullgraph=True, dynamic=False)
        y = compiled(x)
    assert (y - torch.tanh(x)).abs().max().item() <= 1e-6
    assert (y.abs() <= 1).all()
    torch.testing.assert_close(y, rational_tanh(x), atol=5e-7, rtol=0)  # FMA against separate roundings: <= 4 ulp of 1
    edges = torch.tensor([math.inf, -math.inf, 8.0, -8.0, 8.000001, -8.000001])
    assert compiled(edges).tolist() == rational_tanh(edges).tolist()
    assert rational_tanh(edges).abs().min().item() >= 1 - 1e-6
    with pytest.raises(ValueError, match="float32"):
        rational_tanh(x.double())


def test_flat_momentum_buffers_are_views_of_one_vector_and_edits_count():
    params0, grads = problem(torch.float32, steps=3, seed=2)
    params, opt = run(params0, grads[:1], lr=0.1, alpha=5.0, momentum=0.9, impl="flat")
    bufs = [opt.state[p]["momentum_buffer"] for p in params]
    assert len({b.untyped_storage().data_ptr() for b in bufs}) == 1
    for b in bufs:  # zeroing the state from outside must act on the next step
        b.zero_()
    opt.state[params[0]]["momentum_buffer"] = torch.full_like(params[0], 0.5)  # and so must replacing a buffer
    for p, g in zip(params, grads[1], strict=True):
        p.grad = g.clone()
    before = [p.detach().clone() for p in params]
    opt.step()
    for i, (p, b, g) in enumerate(zip(params, before, grads[1], strict=True)):
        u = torch.tanh(5.0 * g / (g.norm() + 1e-8))
        old = 0.5 if i == 0 else 0.0
        torch.testing.assert_close(p.detach(), b - 0.1 * (0.9 * old + u), atol=2e-6, rtol=0)


@pytest.mark.parametrize("impl", ["flat", "compiled"])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_gradient_skips_the_whole_step(impl, bad, device):
    params0, grads = problem(torch.float32, steps=2, seed=3, device=device)
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = AlphaGrad([{"params": params[:2]}, {"params": params[2:], "alpha": 7.0}], lr=0.1, alpha=2.0,
                    momentum=0.9, impl=impl)
    for p, g in zip(params, grads[0], strict=True):
        p.grad = g.clone()
    opt.step()
    before = [p.detach().clone() for p in params]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in params]
    for p, g in zip(params, grads[1], strict=True):
        p.grad = g.clone()
    params[-1].grad[3, 2] = bad  # only the last group's gradient is bad: the first group must not move either
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    for p, b, buf in zip(params, before, bufs, strict=True):
        assert torch.equal(p.detach(), b)
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)
    assert opt.skipped_steps == 1


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(("weight_decay", "nesterov"), [(0.0, False), (0.1, True)])
def test_whole_group_graph_leaves_params_and_buffers_bitwise_unchanged_on_a_bad_gradient(
    bad, weight_decay, nesterov, device
):
    params0, grads = problem(torch.float32, steps=3, seed=5, device=device)
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = AlphaGrad(params, lr=0.1, alpha=3.0, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay,
                    impl="compiled")  # fmt: skip
    for p, g in zip(params, grads[0], strict=True):
        p.grad = g.clone()
    opt.step()
    assert opt.last_impls == ("compiled",) and 0 in opt._group_steps  # one graph for the whole group
    before = [p.detach().clone() for p in params]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in params]
    for p, g in zip(params, grads[1], strict=True):
        p.grad = g.clone()
    params[0].grad.view(-1)[1] = bad
    with pytest.warns(RuntimeWarning, match="skipped"):
        opt.step()
    for p, b, buf in zip(params, before, bufs, strict=True):
        assert torch.equal(p.detach(), b)
        assert torch.equal(opt.state[p]["momentum_buffer"], buf)
    expected, expected_bufs = reference_steps(params0, [grads[0], grads[2]], lr=0.1, alpha=3.0, momentum=0.9,
                                              nesterov=nesterov, weight_decay=weight_decay)  # fmt: skip
    for p, g in zip(params, grads[2], strict=True):  # the next good step continues as if the bad one never came
        p.grad = g.clone()
    opt.step()
    assert_matches(params, opt, expected, expected_bufs, 2e-6)


@pytest.mark.parametrize("impl", ["flat", "compiled"])
def test_param_groups_with_own_alpha_and_lr(impl, device):
    params0, grads = problem(torch.float64, steps=2, seed=4, device=device)
    groups = [dict(lr=0.1, alpha=50.0), dict(lr=0.02, alpha=0.5, momentum=0.9)]
    expected_a, bufs_a = reference_steps(params0[:3], [g[:3] for g in grads], **groups[0])
    expected_b, bufs_b = reference_steps(params0[3:], [g[3:] for g in grads], **groups[1])
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = AlphaGrad([{"params": params[:3], **groups[0]}, {"params": params[3:], **groups[1]}], impl=impl,
                    fast_tanh=False)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    assert opt.last_impls == (impl, impl)
    assert_matches(params, opt, expected_a + expected_b, bufs_a + bufs_b, 1e-12)


def test_flat_path_follows_which_params_have_gradients():
    """Odd parameters get their first gradient at step 1: the layout changes, momentum carries over, as in the
    reference kernel (itself tested against the paper's formula)."""
    params0, grads = problem(torch.float64, steps=4, seed=5)
    twins = {impl: [p.clone().requires_grad_(True) for p in params0] for impl in ("flat", "reference")}
    opts = {impl: AlphaGrad(ps, lr=0.1, alpha=4.0, momentum=0.9, impl=impl, fast_tanh=False)
            for impl, ps in twins.items()}
    for step, step_grads in enumerate(grads):
        for impl, ps in twins.items():
            for i, p in enumerate(ps):
                p.grad = step_grads[i].clone() if step > 0 or i % 2 == 0 else None
            opts[impl].step()
    assert opts["flat"].last_impls == ("flat",)
    for p, q in zip(twins["flat"], twins["reference"], strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-12, rtol=0)
        torch.testing.assert_close(opts["flat"].state[p]["momentum_buffer"],
                                   opts["reference"].state[q]["momentum_buffer"], atol=1e-12, rtol=0)


def peak_bytes_during(step) -> int:
    """Highest total of CPU bytes allocated and not yet freed while ``step`` runs (torch's profiler events)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    events = prof.profiler.kineto_results.events()
    events = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    total = peak = 0
    for _, nbytes in events:
        total += nbytes
        peak = max(peak, total)
    return peak


@pytest.mark.parametrize(
    "impl,momentum,nesterov",
    [(impl, m, n) for impl in ("flat", "foreach") for m, n in ((0.0, False), (0.9, False), (0.9, True))]
    + [("compiled", 0.9, True), ("compiled", 0.0, False)],
)
def test_peak_extra_memory_is_at_most_one_parameter_sized_temporary(impl, momentum, nesterov):
    params = [torch.nn.Parameter(torch.randn(300, 200)), torch.nn.Parameter(torch.randn(200))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = AlphaGrad(params, lr=1e-3, alpha=5.0, momentum=momentum, nesterov=nesterov, impl=impl)
    opt.step()  # creates the state
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    assert peak_bytes_during(opt.step) <= param_bytes + 1024  # + norms and scalars


@pytest.mark.parametrize("impl", ["flat", "compiled", "foreach", "reference"])
def test_state_bytes_per_parameter(impl):
    params0, grads = problem(torch.float32, steps=2)
    for momentum, expected in ((0.0, 0), (0.9, 4)):
        params, opt = run(params0, grads, lr=0.1, alpha=2.0, momentum=momentum, impl=impl)
        storages = {}
        for p in params:
            for value in opt.state[p].values():
                storages[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
        assert sum(storages.values()) == expected * sum(p.numel() for p in params)


@pytest.mark.parametrize("groups", [1, 2])  # one group: the whole step in one graph; two: a graph per group
def test_schedules_changing_lr_and_alpha_do_not_recompile(groups):
    params0, grads = problem(torch.float32, steps=6, seed=6)
    params = [p.clone().requires_grad_(True) for p in params0]
    split = [{"params": params[:2]}, {"params": params[2:]}] if groups == 2 else params
    opt = AlphaGrad(split, lr=0.1, alpha=98.0, momentum=0.9, impl="compiled")
    for step, step_grads in enumerate(grads):
        if step == 2:
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            builds = len(compiled_module._COMPILING)  # graphs compiled (or compiling) so far
            group_step = opt._group_steps.get(0)
        for group in opt.param_groups:
            group["lr"], group["alpha"] = 0.1 / (step + 1), 98.0 * (step + 1)
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    assert opt.last_impls == ("compiled",) * groups
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert len(compiled_module._COMPILING) == builds
    assert opt._group_steps.get(0) is group_step


def test_automatic_selection(monkeypatch):
    monkeypatch.setattr(compiled_module, "_COMPILING", {})
    requested = []  # graphs handed to the background compiler (which never finishes here)
    monkeypatch.setattr(compiled_module, "compile_in_subprocess", lambda *key: requested.append(key) or
                        threading.Event().wait())  # fmt: skip
    small = [torch.nn.Parameter(torch.randn(64, 17)), torch.nn.Parameter(torch.randn(64))]
    large = [torch.nn.Parameter(torch.randn(600, 500))]  # over 2**18 elements: one tensor, so "reference" stands in
    mixed = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]
    low = [torch.nn.Parameter(torch.randn(3, 2).bfloat16()), torch.nn.Parameter(torch.randn(3).bfloat16())]
    for params, expected, kwargs in ((small, "flat", {}), (large, "reference", {}), (mixed, "foreach", {}),
                                     (low, "foreach", {}), (small, "reference", {"foreach": False}),
                                     (small, "foreach", {"foreach": True})):
        for p in params:
            p.grad = torch.ones_like(p)
        opt = AlphaGrad(params, lr=1e-3, alpha=2.0, **kwargs)
        opt.step()
        assert opt.last_impls == (expected,)
    assert requested == []  # a large group compiles nothing before it has stepped LARGE_COMPILE_START_ELEMENTS


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("compiler", [True, False])
def test_auto_switches_to_the_compiled_graph_after_a_number_of_steps(monkeypatch, compiler, size):
    """Small single group: flat, then the whole-step graph; large group: foreach, then its graph on given norms.
    Same results as the reference across the switch; a state_dict round trip into a new optimizer, before or after
    the switch, switches at the same step and continues bitwise like the uninterrupted run."""
    params0, grads = problem(torch.float32, steps=6, seed=3)
    if size == "small":
        monkeypatch.setattr(alphagrad_module, "AUTO_COMPILE_START", 1)  # compiles in the background from step 1
        monkeypatch.setattr(alphagrad_module, "AUTO_COMPILE_AFTER", 2)
    else:
        monkeypatch.setattr(alphagrad_module, "FLAT_MAX_NUMEL", 10)  # the problem's 1,266 elements count as large
        numel = sum(p.numel() for p in params0)  # compiles in the background from step 1, switches at step 2
        monkeypatch.setattr(alphagrad_module, "LARGE_COMPILE_START_ELEMENTS", numel)
        monkeypatch.setattr(alphagrad_module, "LARGE_COMPILE_ELEMENTS", 2 * numel)
    monkeypatch.setattr(compiled_module, "_COMPILING", {})  # no graph from an earlier test
    if not compiler:

        def broken(*args: object) -> None:
            raise RuntimeError("no C++ compiler")

        monkeypatch.setattr(compiled_module, "compile_in_subprocess", broken)
    config = dict(lr=0.05, alpha=98.0, momentum=0.9)
    expected, bufs = reference_steps(params0, grads, **config)
    runs = {}
    for resume_at in (None, 1, 3):
        params = [p.clone().requires_grad_(True) for p in params0]
        opt = AlphaGrad(params, **config)
        impls, unavailable = [], []
        for step, step_grads in enumerate(grads):
            if step == resume_at:
                saved = copy.deepcopy(opt.state_dict())
                opt = AlphaGrad(params, **config)
                opt.load_state_dict(saved)
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                opt.step()
            unavailable += [str(w.message) for w in caught if "unavailable" in str(w.message)]
            impls.extend(opt.last_impls)
        warning = ("AlphaGrad: the compiled step is unavailable here (RuntimeError: no C++ compiler); staying on the "
                   "eager kernels")
        switches = 2 if resume_at == 3 else 1  # once per optimizer that reaches the switch
        assert unavailable == ([] if compiler else [warning] * switches)
        eager = "flat" if size == "small" else "foreach"
        switched = "compiled" if compiler else eager
        assert impls == [eager, eager, switched, switched, switched, switched]
        assert_matches(params, opt, expected, bufs, 3e-6)
        runs[resume_at] = [p.detach().clone() for p in params]
    for resumed in (runs[1], runs[3]):
        for a, b in zip(runs[None], resumed, strict=True):
            assert torch.equal(a, b)


def test_the_compiling_subprocess_compiles_for_the_callers_thread_count(monkeypatch):
    """Inductor generates CPU code for the thread count it compiles under (a graph made for two threads ran ~30 %
    slower on one): the subprocess is started with the key and the caller's count, and takes both."""
    key = (((3, 2), (3,)), torch.float32, torch.device("cpu"), True, False, False, True, False, False)
    commands = []

    class NoProcess:  # records the command instead of compiling; fails like a broken toolchain
        returncode = 1

        def __init__(self, command: list[str], **kwargs: object) -> None:
            commands.append(command)

        def communicate(self) -> tuple[str, str]:
            return "", "not started"

        def kill(self) -> None:
            pass

    monkeypatch.setattr(compiled_module.subprocess, "Popen", NoProcess)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(RuntimeError, match="not started"):
            compiled_module.compile_in_subprocess(*key)
        torch.set_num_threads(2)
        assert compiled_module.apply_subprocess_spec(commands[0][3]) == key  # [python, -m, module, spec, path]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_step_hooks_and_profiler_still_see_the_step():
    p = torch.nn.Parameter(torch.randn(5))
    p.grad = torch.randn(5)
    opt = AlphaGrad([p], lr=0.1, alpha=1.0)
    calls = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    opt.step()
    assert calls == ["pre", "post"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            AlphaGrad([p], lr=0.1, alpha=1.0).step()
    assert any(e.name == "Optimizer.step#AlphaGrad.step" for e in prof.events())


def test_bad_impl_and_fast_tanh_are_rejected():
    p = [torch.nn.Parameter(torch.randn(2))]
    with pytest.raises(ValueError, match="impl"):
        AlphaGrad(p, impl="fused")
    with pytest.raises(ValueError, match="fast_tanh"):
        AlphaGrad(p, fast_tanh="yes")
    q = torch.nn.Parameter(torch.randn(2, dtype=torch.complex64))
    q.grad = torch.randn_like(q)
    with pytest.raises(RuntimeError, match="impl='flat'"):
        AlphaGrad([q], impl="flat").step()


def test_flat_layout_is_rebuilt_when_parameter_storage_moves():
    params0, grads = problem(torch.float64, steps=2, seed=7)
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = AlphaGrad(params, lr=0.1, alpha=3.0, impl="flat", fast_tanh=False)
    for p, g in zip(params, grads[0], strict=True):
        p.grad = g.clone()
    opt.step()
    moved = [p.detach().clone() for p in params]
    for p, m in zip(params, moved, strict=True):
        p.data = m  # what Module.to / load_state_dict(assign=True) do
    for p, g in zip(params, grads[1], strict=True):
        p.grad = g.clone()
    opt.step()
    expected, _ = reference_steps(params0, grads, lr=0.1, alpha=3.0)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, atol=1e-12, rtol=0)


def test_resumed_run_past_the_compile_start_compiles_in_the_background_at_once(monkeypatch):
    """A run resumed after step AUTO_COMPILE_START asks for the graph at its first step, not at the switch."""
    monkeypatch.setattr(alphagrad_module, "AUTO_COMPILE_START", 3)
    monkeypatch.setattr(alphagrad_module, "AUTO_COMPILE_AFTER", 100)
    monkeypatch.setattr(compiled_module, "_COMPILING", {})
    requested = []
    monkeypatch.setattr(compiled_module, "compile_in_subprocess", lambda *key: requested.append(key) or
                        threading.Event().wait())  # fmt: skip
    params0, grads = problem(torch.float32, steps=2, seed=4)
    params = [p.clone().requires_grad_(True) for p in params0]
    saved = AlphaGrad(params, lr=0.05, alpha=2.0).state_dict()
    saved["param_groups"][0]["eager_steps"] = 50  # as written by a run at step 50
    opt = AlphaGrad(params, lr=0.05, alpha=2.0)
    opt.load_state_dict(saved)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    assert opt.last_impls == ("flat",) and opt.param_groups[0]["eager_steps"] == 52
    assert len(requested) == 1  # once, at the first step after the resume
