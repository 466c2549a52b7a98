"""The default networks of the RL modules: PPO's actor and critic, DQN's Q-network, TD3's actor and twin critics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeterministicActor", "EnsembleCritic", "QNetwork", "mlp", "ppo_mlp"]


def mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """``Linear`` layers between consecutive ``sizes`` with ``activation`` between them (none after the last):
    ``(batch, sizes[0]) -> (batch, sizes[-1])``, PyTorch's default initialization."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


def ppo_mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: Sequence[int] = (64, 64),
    out_gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """CleanRL's PPO network: tanh MLP, orthogonal weights (gain sqrt(2), output layer ``out_gain``), zero biases.

    Maps ``(batch, in_features)`` to ``(batch, out_features)``. CleanRL uses ``out_gain=0.01`` for the actor and
    ``1.0`` for the critic.
    """
    net = mlp([in_features, *hidden_sizes, out_features], nn.Tanh)
    linears = [layer for layer in net if isinstance(layer, nn.Linear)]
    for linear in linears:
        gain = out_gain if linear is linears[-1] else math.sqrt(2.0)
        nn.init.orthogonal_(linear.weight, gain=gain, generator=generator)
        nn.init.zeros_(linear.bias)
    return net


class QNetwork(nn.Module):
    """CleanRL's DQN network: ``obs (B, obs_dim) -> Q (B, num_actions)``, ReLU MLP with hidden sizes 120-84.

    The layers live in ``self.net`` (an ``nn.Sequential`` of ``Linear`` and ``ReLU``), but ``forward`` applies their
    weights with ``F.linear`` directly: DQN calls the network once per env step on a single observation, where the
    five submodule calls of the ``Sequential`` cost more than the arithmetic. Hooks on the submodules therefore do
    not fire; hooks on the ``QNetwork`` itself do.
    """

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int] = (120, 84)) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden_sizes, num_actions], nn.ReLU)
        self._linears = tuple(layer for layer in self.net if isinstance(layer, nn.Linear))
        # For greedy_actions: the storage of (weight, bias, weight, ...) its numpy views were made for.
        self._numpy_storage: tuple[int, ...] = ()
        self._numpy_layers: list[tuple[np.ndarray, np.ndarray]] | None = None

    def forward(self, obs: Tensor) -> Tensor:
        *hidden, last = self._linears
        x = obs
        for layer in hidden:
            x = torch.relu(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)

    def greedy_actions(self, obs: np.ndarray) -> np.ndarray | None:
        """``argmax_a Q(obs, a)`` in numpy: ``obs (N, obs_dim)`` float32 -> ``(N,)`` int64; ``None`` unless the
        weights are float32 on the CPU (then use ``forward``).

        On one observation per env step torch's dispatch (~2-4 us per op) costs more than the arithmetic; numpy's
        is a fraction of that (end to end, DQN CartPole-v1 30k env steps, one thread, medians of 3 interleaved runs:
        4.03 CPU s with this path, 4.33 without, -7 %). The weights are numpy views of the current parameters (no
        copy: every optimizer step is seen), made again when a parameter's storage changes (``to``, ``double``, a
        parameter replaced by another, ...).
        """
        # From the layers' parameter dicts: ``layer.weight`` goes through ``Module.__getattr__`` (~0.6 us each).
        params = [layer._parameters[name] for layer in self._linears for name in ("weight", "bias")]
        storage = tuple(map(Tensor.data_ptr, params))
        if storage != self._numpy_storage:
            self._numpy_layers = None
            if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
                pairs = zip(params[::2], params[1::2], strict=True)
                self._numpy_layers = [(weight.detach().numpy().T, bias.detach().numpy()) for weight, bias in pairs]
            self._numpy_storage = storage
        if self._numpy_layers is None:
            return None
        *hidden, (last_weight_t, last_bias) = self._numpy_layers
        x = obs
        for weight_t, bias in hidden:
            x = np.maximum(x @ weight_t + bias, 0.0)
        return (x @ last_weight_t + last_bias).argmax(axis=1)


class DeterministicActor(nn.Module):
    """CleanRL's TD3 actor: ``obs (B, obs_dim) -> action (B, act_dim)`` inside ``[low, high]``.

    ReLU MLP 256-256, ``tanh`` output rescaled by the buffers ``action_scale = (high - low) / 2`` and
    ``action_bias = (high + low) / 2``.
    """

    def __init__(
        self, obs_dim: int, action_low: Tensor, action_high: Tensor, hidden_sizes: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        act_dim = action_low.numel()
        self.net = nn.Sequential(*mlp([obs_dim, *hidden_sizes, act_dim], nn.ReLU), nn.Tanh())
        self.register_buffer("action_scale", ((action_high - action_low) / 2).float().reshape(act_dim))
        self.register_buffer("action_bias", ((action_high + action_low) / 2).float().reshape(act_dim))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs) * self.action_scale + self.action_bias


class EnsembleCritic(nn.Module):
    """``num_critics`` independent Q-functions ``(obs, action) -> Q``, called once for all members.

    Each member is CleanRL's TD3 critic, a ReLU MLP ``obs_dim + act_dim -> 256 -> 256 -> 1`` with ``nn.Linear``
    layers, so every weight and bias is its own tensor (AlphaGrad normalizes each tensor on its own, as with two
    separate critics). The input is concatenated once and shared by the members; on one CPU core the members'
    matmuls run as fast one after the other as stacked into ``baddbmm`` (measured), so they run one after the other.

    Shapes: ``obs (B, obs_dim)``, ``action (B, act_dim)`` -> ``Q (E, B)``.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256), num_critics: int = 2
    ) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.members = nn.ModuleList(mlp(sizes, nn.ReLU) for _ in range(num_critics))

    def forward(self, obs: Tensor, action: Tensor, num_members: int | None = None) -> Tensor:
        """Q-values of the first ``num_members`` members (all by default): ``(E', B)``."""
        x = torch.cat([obs, action], dim=-1)
        members = self.members if num_members is None else self.members[:num_members]
        return torch.stack([member(x).squeeze(-1) for member in members])
