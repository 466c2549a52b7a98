"""Default networks of the off-policy modules: DQN's Q-network, TD3's actor and its twin critics in one ensemble."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeterministicActor", "EnsembleCritic", "QNetwork"]


class QNetwork(nn.Module):
    """CleanRL's DQN network: ``obs (B, obs_dim) -> Q (B, num_actions)``, ReLU MLP with hidden sizes 120-84.

    The layers live in ``self.net`` (an ``nn.Sequential`` of ``Linear`` and ``ReLU``), but ``forward`` applies their
    weights with ``F.linear`` directly: DQN calls the network once per env step on a single observation, where the
    five submodule calls of the ``Sequential`` cost more than the arithmetic. Hooks on the submodules therefore do
    not fire; hooks on the ``QNetwork`` itself do.
    """

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int] = (120, 84)) -> None:
        super().__init__()
        sizes = [obs_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], num_actions))
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
        is a fraction of that. The weights are numpy views of the current parameters (no copy: every optimizer step
        is seen), made again when a parameter's storage changes (``to``, ``double``, a parameter replaced by
        another, ...).
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
        sizes = [obs_dim, *hidden_sizes]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], act_dim), nn.Tanh())
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
        sizes = [obs_dim + act_dim, *hidden_sizes]
        self.members = nn.ModuleList()
        for _ in range(num_critics):
            layers: list[nn.Module] = []
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
                layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            self.members.append(nn.Sequential(*layers, nn.Linear(sizes[-1], 1)))

    def forward(self, obs: Tensor, action: Tensor, num_members: int | None = None) -> Tensor:
        """Q-values of the first ``num_members`` members (all by default): ``(E', B)``."""
        x = torch.cat([obs, action], dim=-1)
        members = self.members if num_members is None else self.members[:num_members]
        return torch.stack([member(x).squeeze(-1) for member in members])
