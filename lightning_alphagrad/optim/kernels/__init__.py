"""AlphaGrad's update kernels: a readable reference and the fast paths that are tested against it."""

from lightning_alphagrad.optim.kernels.compiled import CompiledGroupStep
from lightning_alphagrad.optim.kernels.flat import FlatLayout, flat_alphagrad, flat_eligible
from lightning_alphagrad.optim.kernels.foreach import foreach_alphagrad
from lightning_alphagrad.optim.kernels.reference import single_tensor_alphagrad

__all__ = [
    "CompiledGroupStep",
    "FlatLayout",
    "flat_alphagrad",
    "flat_eligible",
    "foreach_alphagrad",
    "single_tensor_alphagrad",
]
