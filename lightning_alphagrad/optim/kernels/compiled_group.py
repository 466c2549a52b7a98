"""A whole param group's step as one compiled graph, for the small networks of RL on a CPU.

There, every eager op and every compiled call costs microseconds of dispatch, so the fastest step is one call into
generated C++ that computes every gradient norm, the non-finite flag, tanh, momentum and the update of all tensors.
The graph is traced once for the group's fixed shapes (``make_fx``) and compiled by inductor without dynamo, hence
without guard checks on each call; the caller (``AlphaGrad``) guarantees what the guards would check: the same
parameter tensors on the same storage, dense contiguous gradients of their dtype. Hyper-parameters enter as one
tensor, so schedules never recompile. A non-finite gradient masks the whole update arithmetically (nothing moves)
and is reported through the returned flag.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future

import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx

from lightning_alphagrad.optim.kernels.compiled import tanh_fast_or_exact
from lightning_alphagrad.optim.kernels.flat import FlatLayout

__all__ = ["CompiledGroupStep", "compile_group_step", "compile_group_step_async"]

GraphKey = tuple  # the arguments of compile_group_step
_COMPILING: dict[GraphKey, Future] = {}


def compile_group_step_async(*key: object) -> Future:
    """``compile_group_step(*key)`` on a background thread, started once per key (equal networks share one graph).

    Tracing and compiling take seconds, tens of seconds with a cold compiler cache; the training loop keeps running
    meanwhile. A process that ends during the compilation waits for it at exit: stopping the compiler thread halfway
    aborts the interpreter's shutdown.
    """
    future = _COMPILING.get(key)
    if future is None:
        future = _COMPILING[key] = Future()

        def run() -> None:
            try:
                future.set_result(compile_group_step(*key))
            except Exception as error:  # a missing or broken toolchain: the caller falls back to eager kernels
                future.set_exception(error)

        threading.Thread(target=run, name="alphagrad-compile").start()
    return future


def compile_group_step(
    shapes: tuple[tuple[int, ...], ...],
    dtype: torch.dtype,
    device: torch.device,
    momentum: bool,
    nesterov: bool,
    size_aware: bool,
    fast_tanh: bool,
    weight_decay: bool,
) -> Callable[..., Tensor]:
    """Trace and compile the group step for parameters of ``shapes`` (see :func:`compile_group_step_async`).

    The compiled function takes ``(*params_1d, *grads, *bufs_1d, hyper)`` with
    ``hyper = [lr, signed alpha, eps, 1 - lr * weight_decay, buf_coef, update_coef, momentum]`` and returns the 0-d
    "all gradients finite" flag; it updates params and buffers in place (not at all if the flag is false). Without
    ``weight_decay`` the graph leaves out the multiplication by ``hyper[3]`` (then 1).

    Masking costs one select per element: when a gradient is not finite, the scaled gradient is replaced by zeros
    (so ``u = 0``) and the step's coefficients by the identity (``lr = update_coef = 0``, ``buf_coef = decay = 1``),
    which leaves params and buffers bitwise unchanged.
    """
    count = len(shapes)
    numels = [math.prod(shape) for shape in shapes]
    steepness = [math.sqrt(n) if size_aware else 1.0 for n in numels]

    def step(*tensors: Tensor) -> Tensor:
        params, grads = tensors[:count], tensors[count : 2 * count]
        bufs, hyper = tensors[2 * count : 3 * count], tensors[-1]
        lr, alpha, eps, decay, buf_coef, update_coef, momentum_coef = hyper.unbind()
        norms = [torch.linalg.vector_norm(g) for g in grads]
        finite = torch.stack(norms).sum().isfinite()
        zero, one = torch.zeros_like(lr), torch.ones_like(lr)
        lr, update_coef = torch.where(finite, lr, zero), torch.where(finite, update_coef, zero)
        buf_coef, decay = torch.where(finite, buf_coef, one), torch.where(finite, decay, one)
        for i, (param, grad, norm) in enumerate(zip(params, grads, norms, strict=True)):
            scaled = torch.where(finite, grad.reshape(-1) * (alpha * steepness[i] / (norm + eps)), zero)
            u = tanh_fast_or_exact(scaled, fast_tanh)
            if momentum:
                buf = bufs[i]
                new_buf = buf * buf_coef + update_coef * u
                buf.copy_(new_buf)
                u = u + momentum_coef * new_buf if nesterov else new_buf
            param.copy_((param * decay if weight_decay else param) - lr * u)
        return finite

    # Example inputs are fresh tensors: tracing runs the ops.
    def make(shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, dtype=dtype, device=device)

    example = [
        *(make((n,)) for n in numels),
        *(make(shape) for shape in shapes),
        *(make((n,)) for n in numels if momentum),
        torch.zeros(7, dtype=dtype, device=device),
    ]
    with torch.no_grad():
        graph = make_fx(step)(*example)
        # The caller guarantees the inputs' sizes and strides: skip the wrapper's per-input checks on every call.
        return torch._inductor.compile(graph, example, options={"size_asserts": False})


class CompiledGroupStep:
    """The compiled step of one param group whose parameters are ``layout.params``.

    Args:
        layout: the group's flat layout; its momentum buffer (if ``momentum``) holds the state.
        momentum: whether the group uses momentum; ``nesterov``, ``size_aware``, ``fast_tanh`` as in ``AlphaGrad``.
    """

    def __init__(self, layout: FlatLayout, momentum: bool, nesterov: bool, size_aware: bool, fast_tanh: bool) -> None:
        self.layout = layout
        self.flags = (momentum, nesterov, size_aware, fast_tanh)
        first = layout.params[0]
        self._graph_key = (tuple(tuple(p.shape) for p in layout.params), first.dtype, first.device, *self.flags)
        self._graphs: dict[bool, Callable[..., Tensor]] = {}  # by "weight decay is on"
        self._hyper_values: list[float] = []
        self._hyper = torch.empty(0)

    def _inputs(self, grads: list[Tensor], hyper: Tensor, bufs: list[Tensor]) -> list[Tensor]:
        return [*self.layout.param_views, *grads, *bufs, hyper]

    def matches(self, momentum: bool, nesterov: bool, size_aware: bool, fast_tanh: bool) -> bool:
        return self.flags == (momentum, nesterov, size_aware, fast_tanh)

    def compile_in_background(self, weight_decay: bool) -> Future:
        """Start compiling the graph (with or without weight decay) if nobody has; the future of the graph."""
        return compile_group_step_async(*self._graph_key, weight_decay)

    def __call__(
        self,
        grads: list[Tensor],
        has_buffer: bool,
        *,
        lr: float,
        alpha: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        eps: float,
        maximize: bool,
    ) -> bool:
        """Run the step (``grads`` checked by the caller); ``False`` when a gradient was not finite (nothing moved).

        On the first momentum step (``has_buffer`` false) the layout's buffer is created as zeros and ``buf = u``.
        """
        layout = self.layout
        first = layout.params[0]
        bufs: list[Tensor] = []
        if momentum > 0:
            if not has_buffer:
                layout.adopt(torch.zeros(sum(layout.numels), dtype=first.dtype, device=first.device))
            bufs = layout.buffer_segments
        buf_coef, update_coef = (momentum, 1 - dampening) if has_buffer else (0.0, 1.0)
        values = [lr, -alpha if maximize else alpha, eps, 1 - lr * weight_decay, buf_coef, update_coef, momentum]
        if values != self._hyper_values:  # a new tensor only when a value changed (e.g. by a schedule)
            self._hyper = torch.tensor(values, dtype=first.dtype, device=first.device)
            self._hyper_values = values
        decay = weight_decay != 0
        graph = self._graphs.get(decay)
        if graph is None:  # waits for the compilation if it is still running
            graph = self._graphs[decay] = self.compile_in_background(decay).result()
        return bool(graph(*self._inputs(grads, self._hyper, bufs)))
