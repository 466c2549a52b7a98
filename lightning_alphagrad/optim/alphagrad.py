"""The AlphaGrad optimizer (Sane, arXiv 2504.16020): tanh of the per-tensor L2-normalized gradient."""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from lightning_alphagrad._validation import check_range
from lightning_alphagrad.optim.functional import StepHyper, TensorLists, grad_norms, indices_by_device_and_dtype
from lightning_alphagrad.optim.grad_stats import cached_grad_norms
from lightning_alphagrad.optim.kernels import (
    CompiledGroupStep,
    FlatLayout,
    flat_alphagrad,
    flat_eligible,
    foreach_alphagrad,
    single_tensor_alphagrad,
)
from lightning_alphagrad.optim.sharded import check_not_fsdp1, local

__all__ = ["AlphaGrad", "Impl", "NonFiniteGradientError"]

# Counters of the whole optimizer, kept in every param group (torch keeps optimizer.state per parameter, and
# distributed checkpoints map each of its keys to a parameter; param groups travel through state_dict() and DCP).
SKIPPED_STEPS_KEY = "skipped_steps"
Impl = Literal["auto", "reference", "foreach", "flat", "compiled"]
IMPLS: tuple[str, ...] = ("auto", "reference", "foreach", "flat", "compiled")
# On a CPU, groups up to this many elements take the flat kernel (dispatch-bound: nothing to compile); larger ones the
# compiled graph (memory-bound), from a fixed step on (see below).
FLAT_MAX_NUMEL = 1 << 18
# With impl="auto", a group switches to its compiled graph at a fixed step, so results never depend on how fast the
# compiler is; the graph compiles in a subprocess meanwhile (seconds, 30-45 s with a cold compiler cache) and
# an eager kernel stands in until the switch, which waits only if the compilation is not done by then.
# - An optimizer whose single group takes the flat kernel starts compiling the whole-step graph at its
#   AUTO_COMPILE_START-th flat step in a row and switches at its AUTO_COMPILE_AFTER-th: the 40,000 steps between take
#   longer than compiling in RL training (milliseconds each); runs shorter than AUTO_COMPILE_START never compile.
# - A group of more than FLAT_MAX_NUMEL elements runs the foreach kernel, starts compiling its graph once it has
#   stepped LARGE_COMPILE_START_ELEMENTS elements (steps x its elements) and switches at LARGE_COMPILE_ELEMENTS:
#   steps 200 and 1,000 of a 25M-element group, 5,800 and 29,000 of a 860k one. The foreach steps between take ~100 s
#   on one core for 25M elements (0.125 s per step with momentum, benchmarks/bench_cold_start.py --model mlp25m),
#   more than a cold compile; runs shorter than the start never compile.
AUTO_COMPILE_START = 10_000
AUTO_COMPILE_AFTER = 50_000
LARGE_COMPILE_START_ELEMENTS = 5_000_000_000
LARGE_COMPILE_ELEMENTS = 25_000_000_000
EAGER_STEPS_KEY = "eager_steps"  # per group: consecutive steps on the eager kernel standing in for the graph
_log = logging.getLogger(__name__)


class NonFiniteGradientError(RuntimeError):
    """Raised by :class:`AlphaGrad` with ``on_nonfinite="raise"`` when a gradient holds inf or NaN."""


def _lean_step_hooks(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``step`` like ``Optimizer`` does (pre/post hooks, a profiler range), at no cost when neither is in use.

    torch's wrapper opens a ``record_function`` range on every call, which costs as much as a third of the whole
    step of an RL-sized network; here that wrapper is only taken while profiling, compiling or when hooks exist.
    """
    standard = Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        if (
            torch.autograd.profiler._is_profiler_enabled
            or torch.compiler.is_compiling()
            or self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _global_optimizer_pre_hooks
            or _global_optimizer_post_hooks
        ):
            return standard(self, *args, **kwargs)
        return step(self, *args, **kwargs)

    wrapper.hooked = True  # type: ignore[attr-defined]  # tells Optimizer not to wrap it again
    return wrapper


class AlphaGrad(Optimizer):
    r"""AlphaGrad: per-tensor L2 normalization, a tanh of steepness ``alpha``, optional SGD-style momentum.

    For every parameter tensor ``p`` with gradient ``g`` (weights and biases each on their own):

    .. code-block:: text

        g~  = g / (||g||_2 + eps)                    # norm in fp32 for fp16/bf16 gradients
        u   = tanh(alpha_t * g~)                     # alpha_t = alpha, or alpha * sqrt(numel) if size_aware
        buf = u                       (first step)   # only with momentum > 0
        buf = momentum * buf + (1 - dampening) * u   (later steps)
        d   = u + momentum * buf if nesterov else buf     (d = u without momentum)
        p   = p * (1 - lr * weight_decay)            # decoupled weight decay, never enters tanh or buf
        p   = p - lr * d

    Small ``alpha`` behaves like normalized SGD (``u ~ alpha * g~``), large ``alpha`` like sign descent. Without
    momentum AlphaGrad keeps no per-parameter state; with momentum it keeps one buffer per parameter.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate, >= 0.
        alpha: tanh steepness, finite and > 0. With ``size_aware=True`` it is the steepness applied to the
            RMS-normalized gradient ``sqrt(numel) * g~`` (typical values 0.5-5), so one value treats small biases
            and large matrices alike; use it when tensors of very different sizes share a group.
        momentum: momentum factor in [0, 1).
        dampening: dampening for momentum in [0, 1].
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        weight_decay: decoupled (AdamW-style) weight decay >= 0, applied as ``p *= 1 - lr * weight_decay``.
        eps: added to each tensor's gradient norm, > 0.
        maximize: ascend the objective instead of descending.
        foreach: ``True`` selects ``impl="foreach"``, ``False`` ``impl="reference"`` (torch's convention); ``None``
            leaves the choice to ``impl``.
        size_aware: scale alpha per tensor by ``sqrt(numel)``.
        impl: the kernel. ``"reference"``: one tensor at a time. ``"foreach"``: multi-tensor ops (any dtype, device,
            complex). ``"flat"``: all gradients of a group in one vector, a handful of whole-vector ops (CPU, RL-sized
            networks, nothing to compile). ``"compiled"`` (fp32/fp64, needs a working ``torch.compile``): an optimizer
            with one group of at most 2**18 elements runs its whole step as one compiled graph (the fastest choice for
            RL networks on a CPU, after a one-time compilation of seconds); larger or several groups run one compiled
            graph per group on norms computed beforehand. ``"auto"`` (default): on a CPU, ``"flat"`` for groups up
            to 2**18 elements and ``"compiled"`` above, each from a fixed step on and compiled in a subprocess
            before (results never depend on the compiler's speed and agree within the fast-tanh tolerance): an
            optimizer with one small group switches from ``"flat"`` to the whole-step graph at its 50,000th flat step
            in a row, compiled from step 10,000 on (``AUTO_COMPILE_AFTER``; long runs get the fastest kernel, short
            runs never compile); a large group runs ``"foreach"`` until it has stepped 2.5e10 elements, e.g. 1,000
            steps of 25M elements, compiled from 5e9 on (``LARGE_COMPILE_ELEMENTS``);
            a compiler that fails leaves them on the eager kernels with one warning. ``"foreach"`` on other devices
            and where the flat or compiled kernel does not apply (mixed or low-precision dtypes, complex, sharded).
        fast_tanh: replace ``torch.tanh`` (slow on some CPUs) by an accurate formula in the flat and compiled kernels:
            sigmoid-based (flat), rational (compiled, fp32) or exp-based (compiled, fp64); absolute error < 1e-6 in
            fp32. ``None`` (default) turns it on for those kernels; the others always use ``torch.tanh``.
        on_nonfinite: ``"skip"`` (default) skips the whole step when any gradient holds inf/NaN, leaves parameters
            and momentum untouched, warns and counts it in ``skipped_steps`` (kept in the param groups, so in
            checkpoints); ``"raise"`` raises :class:`NonFiniteGradientError` instead.

    Complex parameters are treated as pairs of real numbers (their real view).
    Sparse gradients are rejected with a ``RuntimeError``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        alpha: float = 1.0,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        maximize: bool = False,
        foreach: bool | None = None,
        size_aware: bool = False,
        on_nonfinite: Literal["skip", "raise"] = "skip",
        impl: Impl = "auto",
        fast_tanh: bool | None = None,
    ) -> None:
        if on_nonfinite not in ("skip", "raise"):
            raise ValueError(f"Invalid on_nonfinite: {on_nonfinite!r}; it must be 'skip' or 'raise'")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            foreach=foreach,
            size_aware=size_aware,
            impl=impl,
            fast_tanh=fast_tanh,
        )
        self._validate_group(defaults)
        self.on_nonfinite = on_nonfinite
        self._flat_layouts: dict[int, FlatLayout] = {}  # by group index
        self._layout_kernels: dict[int, str] = {}  # the kernel each layout was made for: "flat" or "compiled"
        self._group_steps: dict[int, CompiledGroupStep] = {}
        self._compiler_failed = False
        self._compiling = False  # the single group's whole-step graph was handed to the background compiler
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._validate_group(group)

    @staticmethod
    def _validate_group(group: dict[str, Any]) -> None:
        check_range("lr", float(group["lr"]), 0.0, math.inf, high_open=True)
        check_range("alpha", float(group["alpha"]), 0.0, math.inf, low_open=True, high_open=True)
        check_range("eps", float(group["eps"]), 0.0, math.inf, low_open=True, high_open=True)
        check_range("momentum", float(group["momentum"]), 0.0, 1.0, high_open=True)
        check_range("dampening", float(group["dampening"]), 0.0, 1.0)
        check_range("weight_decay", float(group["weight_decay"]), 0.0, math.inf, high_open=True)
        if group["impl"] not in IMPLS:
            raise ValueError(f"Invalid impl: {group['impl']!r}; it must be one of {', '.join(map(repr, IMPLS))}")
        if group["fast_tanh"] not in (None, True, False):
            raise ValueError(f"Invalid fast_tanh: {group['fast_tanh']!r}; it must be None, True or False")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Invalid nesterov=True: it requires momentum in (0, 1) and dampening 0, "
                f"got momentum={group['momentum']} and dampening={group['dampening']}"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._validate_group(group)
        check_not_fsdp1(group["params"])
        group.setdefault(SKIPPED_STEPS_KEY, 0)
        group.setdefault(EAGER_STEPS_KEY, 0)

    @property
    def last_impls(self) -> tuple[str, ...]:
        """The kernel each param group with gradients ran in the last step (shows what ``impl="auto"`` chose)."""
        return self.__dict__.get("_last_impls", ())

    @property
    def skipped_steps(self) -> int:
        """Number of steps skipped because a gradient was not finite (kept in the param groups, so in checkpoints)."""
        return int(max(group[SKIPPED_STEPS_KEY] for group in self.param_groups))

    @_lean_step_hooks
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` (re-evaluating the loss) runs with gradients enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if torch.compiler.is_compiling():
            self._masked_step()
            return loss
        kernels = self._select_kernels()
        if isinstance(kernels, _WholeGroupGraph):
            finite = self._run_whole_group(kernels)
            self._last_impls = ("compiled",)
            if not finite:
                self._handle_nonfinite()
            return loss
        if not kernels:
            return loss
        for step in kernels:
            step.prepare(self)
        # One host sync per step: any inf/NaN gradient makes its norm, and the sum of all norms, non-finite.
        on_host = sum(step.norm_sum for step in kernels if isinstance(step.norm_sum, float))
        on_device = [step.norm_sum for step in kernels if isinstance(step.norm_sum, Tensor)]
        if on_device:
            on_host += torch.stack([s.to(on_device[0].device) for s in on_device]).sum().item()
        if not math.isfinite(on_host):
            self._handle_nonfinite()
            return loss
        for step in kernels:
            step.run(self)
        self._last_impls = tuple(step.impl for step in kernels)
        # Kept in the groups, so that a resumed run switches kernels at the same step as an uninterrupted one.
        for step in kernels:
            if step.stands_in:
                step.group[EAGER_STEPS_KEY] += 1
            elif step.impl != "compiled":  # an eager kernel for another reason: the count starts over
                step.group[EAGER_STEPS_KEY] = 0
        group = self.param_groups[0]
        flat_steps = group[EAGER_STEPS_KEY] if self._last_impls == ("flat",) else 0
        if AUTO_COMPILE_START <= flat_steps < AUTO_COMPILE_AFTER and group["impl"] == "auto" and not self._compiling:
            # (a resumed run past AUTO_COMPILE_START starts compiling at its first step, not at the switch)
            self._group_step(0, group, self._flat_layouts[0], False).compile_in_background(group["weight_decay"] != 0)
            self._compiling = True
        return loss

    def _select_kernels(self) -> _WholeGroupGraph | list[_FlatStep | _PerTensorStep]:
        """The kernel of this step, chosen here and only here (see ``impl``): the whole-group compiled graph for a
        single group that asks for it and whose inputs fit it; else, per group with gradients, the flat kernel on the
        last step's layout while the gradients still fit it, or the kernel ``_choose_impl`` names, replaced by a
        per-tensor kernel for this step when its inputs do not fit (gradients of another dtype, momentum buffers for
        only some parameters)."""
        if len(self.param_groups) == 1 and self._runs_whole_group(self.param_groups[0]):
            graph = self._whole_group_inputs(self.param_groups[0])
            if graph is not None:
                return graph
        steps = [self._group_kernel(index, group) for index, group in enumerate(self.param_groups)]
        return [step for step in steps if step is not None]

    def _group_kernel(self, index: int, group: dict[str, Any]) -> _FlatStep | _PerTensorStep | None:
        """The kernel of one group and its inputs (``None``: no gradients); see :meth:`_select_kernels`."""
        layout, impl = self._flat_layouts.get(index), self._layout_kernels.get(index)
        grads = None
        if layout is not None and group["impl"] in ("auto", impl) and group["foreach"] is None:
            grads = layout.gradients(group["params"])  # the common case, checked in one pass
        if layout is not None and grads is not None:
            params = layout.params
        else:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                return None
            impl = _choose_impl(group, params)
            if impl not in ("flat", "compiled"):
                return _PerTensorStep(group, params, impl)
            if layout is None or layout.gradients(params) is None:
                layout = self._flat_layouts[index] = FlatLayout(params)
            self._layout_kernels[index] = impl
            grads = layout.gradients(params)
        has_buffer: bool | None = False
        if grads is not None and group["momentum"] > 0:
            has_buffer = layout.bind_momentum(self.state)
        stands_in = impl == "flat" and len(self.param_groups) == 1  # for the whole-step graph (AUTO_COMPILE_AFTER)
        if impl == "compiled" and group["impl"] == "auto" and not self._large_group_compiled(index, group, layout):
            grads, stands_in = None, not self._compiler_failed
        if grads is None or has_buffer is None:
            return _PerTensorStep(group, params, "foreach" if len(params) > 1 else "reference", stands_in)
        return _FlatStep(group, index, impl, layout, grads, has_buffer, stands_in)

    def _large_group_compiled(self, index: int, group: dict[str, Any], layout: FlatLayout) -> bool:
        """Whether ``impl="auto"``'s large group ``index`` runs its compiled graph this step: once its steps in a row
        on the eager stand-in times its elements reach ``LARGE_COMPILE_ELEMENTS``, the graph compiled (waits for it
        then); it starts compiling at ``LARGE_COMPILE_START_ELEMENTS``."""
        stepped = group[EAGER_STEPS_KEY] * sum(layout.numels)
        if self._compiler_failed or stepped < LARGE_COMPILE_START_ELEMENTS:
            return False
        compiling = self._group_step(index, group, layout, True).compile_in_background(group["weight_decay"] != 0)
        return stepped >= LARGE_COMPILE_ELEMENTS and self._compiled(compiling)

    def _runs_whole_group(self, group: dict[str, Any]) -> bool:
        """Whether the only group's step is tried as one compiled graph: ``impl="compiled"``, or ``"auto"`` once the
        group has taken ``AUTO_COMPILE_AFTER`` flat steps in a row and its graph compiled (waits for it then)."""
        if group["impl"] == "compiled":
            return True
        if group["impl"] != "auto" or group[EAGER_STEPS_KEY] < AUTO_COMPILE_AFTER or self._compiler_failed:
            return False
        layout = self._flat_layouts.get(0)
        if layout is None:  # a run resumed past the switch: no flat step made the layout in this process
            layout = self._new_whole_group_layout(group)
            if layout is None:
                return False
        compiling = self._group_step(0, group, layout, False).compile_in_background(group["weight_decay"] != 0)
        return self._compiled(compiling)

    def _compiled(self, compiling: Future) -> bool:
        """Wait for a graph's compilation; ``False`` (with one warning, and no compiling from then on) if it failed."""
        if not compiling.done():
            _log.info("AlphaGrad: waiting for the compiled step to finish compiling")
        error = compiling.exception()
        if error is not None:
            self._compiler_failed = True
            warnings.warn(f"AlphaGrad: the compiled step is unavailable here ({type(error).__name__}: {error}); "
                          "staying on the eager kernels", RuntimeWarning, stacklevel=4)  # fmt: skip
        return error is None

    def _group_step(
        self, index: int, group: dict[str, Any], layout: FlatLayout, norms_given: bool
    ) -> CompiledGroupStep:
        """The compiled step of group ``index`` for ``layout`` and the group's current flags (made anew on change)."""
        flags = (group["momentum"] > 0, group["nesterov"], group["size_aware"], group["fast_tanh"] is not False,
                 norms_given)  # fmt: skip
        compiled = self._group_steps.get(index)
        if compiled is None or compiled.layout is not layout or not compiled.matches(*flags):
            compiled = self._group_steps[index] = CompiledGroupStep(layout, *flags)
        return compiled

    def _whole_group_inputs(self, group: dict[str, Any]) -> _WholeGroupGraph | None:
        """The inputs of the single group's compiled graph (see ``CompiledGroupStep``), or ``None`` when the graph
        does not apply this step: too many elements, no gradients, mixed dtypes, non-contiguous gradients, momentum
        buffers for only some parameters."""
        layout = self._flat_layouts.get(0)
        grads = None
        if layout is not None and sum(layout.numels) <= FLAT_MAX_NUMEL:  # (a large group's layout: not this graph)
            grads = layout.gradients(group["params"])
        if grads is None:
            layout = self._new_whole_group_layout(group)
            grads = layout.gradients(layout.params) if layout is not None else None
        if grads is None:
            return None
        has_buffer = layout.bind_momentum(self.state) if group["momentum"] > 0 else False  # type: ignore[union-attr]
        if has_buffer is None:
            return None
        return _WholeGroupGraph(group, layout, grads, has_buffer)  # type: ignore[arg-type]

    def _run_whole_group(self, graph: _WholeGroupGraph) -> bool:
        """Run the compiled graph; whether the gradients were finite (if not, nothing moved)."""
        group, layout = graph.group, graph.layout
        compiled = self._group_step(0, group, layout, False)
        finite = compiled(graph.grads, None, graph.has_buffer, **_compiled_hyper(group))
        if group["momentum"] > 0 and not graph.has_buffer:
            if finite:
                layout.publish_momentum(self.state)
            else:
                layout.buffer = None  # a skipped first step leaves no state
        return finite

    def _new_whole_group_layout(self, group: dict[str, Any]) -> FlatLayout | None:
        """A flat layout of the only group's parameters with gradients, or ``None`` where the whole-group graph does not
        apply (no gradients, too many elements, mixed dtypes)."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params or sum(p.numel() for p in params) > FLAT_MAX_NUMEL or not flat_eligible(params):
            return None
        layout = self._flat_layouts[0] = FlatLayout(params)
        self._layout_kernels[0] = "flat"
        return layout

    def _masked_step(self) -> None:
        """The step as ``torch.compile`` traces it: no host sync, a non-finite gradient masks the update."""
        gathered = [_gather(self.state, group, group["params"]) for group in self.param_groups]
        norms = [
            grad_norms(grads, _use_foreach(group, grads))
            for group, (_, grads, _) in zip(self.param_groups, gathered, strict=True)
        ]
        all_norms = [n.to(torch.float64) for group_norms in norms for n in group_norms]
        if not all_norms:
            return
        finite = torch.stack(all_norms).sum().isfinite()
        for group in self.param_groups:
            skipped = group[SKIPPED_STEPS_KEY]
            if not isinstance(skipped, Tensor):
                skipped = torch.tensor(float(skipped), device=finite.device)
            group[SKIPPED_STEPS_KEY] = skipped + (~finite).to(skipped.dtype)
        for group, (params, grads, bufs), group_norms in zip(self.param_groups, gathered, norms, strict=True):
            if not params:
                continue
            kernel = foreach_alphagrad if _use_foreach(group, grads) else single_tensor_alphagrad
            kernel(TensorLists(params, grads, bufs, group_norms), StepHyper.of(group), finite)
            _store_buffers(self.state, group, group["params"], bufs)

    def _handle_nonfinite(self) -> None:
        message = "AlphaGrad: a gradient holds inf or NaN"
        if self.on_nonfinite == "raise":
            raise NonFiniteGradientError(message + " (on_nonfinite='raise')")
        for group in self.param_groups:
            group[SKIPPED_STEPS_KEY] += 1
        warnings.warn(
            f"{message}; the step was skipped, parameters and momentum are unchanged "
            f"({self.skipped_steps} skipped so far)",
            RuntimeWarning,
            stacklevel=3,
        )


class _WholeGroupGraph(NamedTuple):
    """The single group's step as one compiled graph: the group, its flat layout, the gradients (views of the
    layout) and whether the layout's momentum buffer holds the previous steps' momentum."""

    group: dict[str, Any]
    layout: FlatLayout
    grads: list[Tensor]
    has_buffer: bool


class _FlatStep:
    """One param group's share of a step on its flat layout: ``"flat"`` (a handful of whole-vector ops) or
    ``"compiled"`` (the group's compiled graph, on norms computed beforehand).

    Every group's norms are computed (``prepare``) before any group is updated (``run``), so that one check can skip
    the whole step when a gradient is not finite; ``norm_sum`` is what that check reads.
    """

    def __init__(
        self,
        group: dict[str, Any],
        index: int,
        impl: str,
        layout: FlatLayout,
        grads: list[Tensor],
        has_buffer: bool,
        stands_in: bool,
    ) -> None:
        """``index``: of the group; ``grads``: its gradients (views, see ``FlatLayout.gradients``); ``has_buffer``:
        whether the layout holds the previous steps' momentum; ``stands_in``: an eager kernel in place of a compiled
        graph not yet switched to (it counts the group's eager steps, see ``AUTO_COMPILE_AFTER``)."""
        self.group, self.index, self.impl, self.layout, self.grads = group, index, impl, layout, grads
        self.has_buffer, self.stands_in = has_buffer, stands_in
        self.norms: Tensor  # 1-D, set by prepare
        self.norm_sum: float | Tensor = 0.0  # a float where the norms were copied to the host anyway

    def prepare(self, optimizer: AlphaGrad) -> None:
        """Compute the gradient norms (or take those already computed for these gradients in this step, see
        :func:`~lightning_alphagrad.optim.grad_stats.cached_grad_norms`)."""
        self.norms = torch.stack(cached_grad_norms(optimizer, self.grads) or grad_norms(self.grads))
        self.norm_sum = sum(self.norms.tolist()) if self.norms.device.type == "cpu" else self.norms.sum()

    def run(self, optimizer: AlphaGrad) -> None:
        group, layout = self.group, self.layout
        if self.impl == "flat":
            flat_alphagrad(layout, self.grads, self.norms, self.has_buffer, StepHyper.of(group),
                           maximize=group["maximize"], fast_tanh=group["fast_tanh"] is not False)  # fmt: skip
        else:
            compiled = optimizer._group_step(self.index, group, layout, True)
            compiled(self.grads, self.norms, self.has_buffer, **_compiled_hyper(group))
        if group["momentum"] > 0 and not self.has_buffer:
            layout.publish_momentum(optimizer.state)


class _PerTensorStep:
    """One param group's share of a step on a per-tensor kernel, ``"reference"`` or ``"foreach"``: any dtype,
    device, complex or sharded parameters. Same ``prepare``/``run`` contract as :class:`_FlatStep`."""

    def __init__(self, group: dict[str, Any], params: list[Tensor], impl: str, stands_in: bool = False) -> None:
        """``params``: the group's parameters with a gradient; ``stands_in``: as for :class:`_FlatStep`."""
        self.group, self.params, self.impl, self.stands_in = group, params, impl, stands_in
        self.tensors: TensorLists  # set by prepare
        self.norm_sum: float | Tensor = 0.0

    def prepare(self, optimizer: AlphaGrad) -> None:
        """Gather the kernel's inputs and compute the gradient norms (or take those already computed, as above)."""
        # norms of the gradients themselves: those of the full tensors for sharded ones (one all-reduce, see
        # grad_norms), equal for their real views and sign flips
        full_grads = [p.grad for p in self.params if p.grad is not None]
        numels = None
        if isinstance(self.params[0], DTensor):
            numels = [torch.view_as_real(g).numel() if g.is_complex() else g.numel() for g in full_grads]
        params, grads, bufs = _gather(optimizer.state, self.group, self.params)  # (rejects sparse gradients)
        # the shared norms come from grad_norms' foreach form: only the foreach kernel computes its norms that way
        shared = cached_grad_norms(optimizer, full_grads) if self.impl == "foreach" else None
        norms = shared or grad_norms(full_grads, self.impl == "foreach")
        self.tensors = TensorLists(params, grads, bufs, norms, numels)
        self.norm_sum = _sum_norms(norms)

    def run(self, optimizer: AlphaGrad) -> None:
        kernel = foreach_alphagrad if self.impl == "foreach" else single_tensor_alphagrad
        kernel(self.tensors, StepHyper.of(self.group))
        _store_buffers(optimizer.state, self.group, self.params, self.tensors.bufs)


def _compiled_hyper(group: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments :class:`CompiledGroupStep` takes from a param group."""
    return {key: group[key] for key in ("lr", "alpha", "momentum", "dampening", "weight_decay", "eps", "maximize")}


def _choose_impl(group: dict[str, Any], params: list[Tensor]) -> str:
    """The kernel for a group whose parameters with a gradient are ``params`` (see ``AlphaGrad``'s ``impl``)."""
    impl = group["impl"]
    if impl == "auto" and group["foreach"] is not None:
        return "foreach" if group["foreach"] else "reference"
    if impl in ("flat", "compiled"):
        if not flat_eligible(params):
            raise RuntimeError(
                f"AlphaGrad impl={impl!r} needs dense, contiguous, real fp32 or fp64 parameters of one dtype on one "
                "device; use impl='auto' or 'foreach'"
            )
        return impl
    if impl != "auto":
        return impl
    first = params[0]
    if isinstance(first, DTensor):  # sharded: the kernels run on the local shards
        return "foreach" if len(params) > 1 else "reference"
    if first.device.type == "cpu" and flat_eligible(params):
        return "flat" if sum(p.numel() for p in params) <= FLAT_MAX_NUMEL else "compiled"
    return "foreach" if len(params) > 1 else "reference"


def _gather(
    state: dict[Any, Any], group: dict[str, Any], params: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
    """Params with a gradient, their gradients (sign-flipped if maximizing) and momentum buffers, as real views and,
    for sharded (``DTensor``) parameters, as this rank's shards."""
    real_params, grads, bufs = [], [], []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("AlphaGrad does not support sparse gradients; use dense gradients")
        param, grad = local(p), local(p.grad)
        grad = -grad if group["maximize"] else grad
        if torch.is_complex(param):
            param, grad = torch.view_as_real(param), torch.view_as_real(grad)
        real_params.append(param)
        grads.append(grad)
        buf = local(state[p]["momentum_buffer"]) if group["momentum"] > 0 and "momentum_buffer" in state[p] else None
        bufs.append(torch.view_as_real(buf) if buf is not None and torch.is_complex(buf) else buf)
    return real_params, grads, bufs


def _store_buffers(
    state: dict[Any, Any], group: dict[str, Any], params: list[Tensor], bufs: list[Tensor | None]
) -> None:
    """Put momentum buffers created by a kernel (aligned with ``params``) into the state."""
    if group["momentum"] <= 0:
        return
    for p, buf in zip(params, bufs, strict=True):
        if buf is not None and "momentum_buffer" not in state[p]:
            buf = torch.view_as_complex(buf) if torch.is_complex(p) else buf
            if isinstance(p, DTensor):  # sharded like its parameter, so distributed checkpoints save it the same way
                buf = DTensor.from_local(buf, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                         stride=p.stride())  # fmt: skip
            state[p]["momentum_buffer"] = buf


def _use_foreach(group: dict[str, Any], grads: list[Tensor]) -> bool:
    if group["foreach"] is not None:
        return bool(group["foreach"])
    return len(grads) > 1 and not torch.jit.is_scripting()


def _sum_norms(norms: list[Tensor]) -> Tensor:
    """Sum of the norms in fp64 (finite exactly when every norm is), one stack per device and dtype."""
    groups = indices_by_device_and_dtype(norms)
    sums = [torch.stack([norms[i] for i in idx]).sum(dtype=torch.float64) for idx in groups]
    return sums[0] if len(sums) == 1 else torch.stack([s.to(sums[0].device) for s in sums]).sum()
