"""Running observation normalization and reward scaling whose statistics are merged explicitly across DDP ranks.

The statistics live in numpy float64 arrays exposed to ``state_dict`` as extra state, not as registered buffers:
DDP's buffer broadcast (which would overwrite every rank's statistics with rank 0's) never touches them, they are
saved in checkpoints, and :meth:`RunningMeanStd.sync` merges what each rank saw since the last sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["RewardScaler", "RunningMeanStd"]

AllGather = Callable[[Tensor], Tensor]


def _merge(
    mean: np.ndarray, var: np.ndarray, count: float, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, population variance and count of two merged samples (Chan et al.'s parallel algorithm)."""
    total = count + batch_count
    if batch_count == 0:
        return mean, var, count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    m2 = var * count + batch_var * batch_count + delta**2 * (count * batch_count / total)
    return new_mean, m2 / total, total


class RunningMeanStd(nn.Module):
    """Running mean and variance of arrays of shape ``shape``; normalizes to ``(x - mean) / sqrt(var + epsilon)``.

    As gymnasium's ``NormalizeObservation``: the statistics start at mean 0, variance 1, count ``epsilon`` and every
    :meth:`update` merges a batch in. Each rank also keeps what it saw since the last :meth:`sync`; ``sync`` merges the
    pending batches of all ranks, in rank order, into the last synced statistics, so afterwards every rank holds the
    statistics of everything all ranks saw. With one process ``sync`` changes nothing.

    Args:
        shape: shape of one sample.
        epsilon: initial count and the variance floor in :meth:`normalize`.
        clip: normalized values are clipped to ``[-clip, clip]``; ``None`` disables clipping.
    """

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-8, clip: float | None = 10.0) -> None:
        super().__init__()
        if epsilon <= 0:
            raise ValueError(f"Invalid epsilon: {epsilon}; it must be > 0")
        if clip is not None and clip <= 0:
            raise ValueError(f"Invalid clip: {clip}; it must be > 0 or None")
        self.shape = tuple(shape)
        self.epsilon = epsilon
        self.clip = clip
        self.mean, self.var, self.count = np.zeros(self.shape), np.ones(self.shape), epsilon
        self._synced = (self.mean, self.var, self.count)
        self._pending = (np.zeros(self.shape), np.zeros(self.shape), 0.0)

    def update(self, batch: np.ndarray) -> None:
        """Merge ``batch`` of shape ``(n, *shape)`` into the statistics."""
        batch = np.asarray(batch, dtype=np.float64)
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        self.mean, self.var, self.count = _merge(self.mean, self.var, self.count, batch_mean, batch_var, batch_count)
        self._pending = _merge(*self._pending, batch_mean, batch_var, batch_count)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / sqrt(var + epsilon)``, clipped, as float32; ``x`` has shape ``(..., *shape)``."""
        normalized = (x - self.mean) / np.sqrt(self.var + self.epsilon)
        if self.clip is not None:
            normalized = np.clip(normalized, -self.clip, self.clip)
        return normalized.astype(np.float32)

    def sync(self, all_gather: AllGather, device: torch.device | str = "cpu") -> None:
        """Merge every rank's batches since the last sync (a collective call under DDP; every rank must call it).

        ``all_gather`` maps a tensor of shape ``(k,)`` to the stacked tensors of all ranks, ``(world_size, k)``
        (``LightningModule.all_gather``; with one process it may return the tensor unchanged).
        """
        pending_mean, pending_var, pending_count = self._pending
        packed = np.concatenate([pending_mean.ravel(), pending_var.ravel(), [pending_count]])
        gathered = all_gather(torch.as_tensor(packed, dtype=torch.float64, device=device))
        gathered = gathered.reshape(-1, packed.size).cpu().numpy()
        size = pending_mean.size
        mean, var, count = self._synced
        for row in gathered:
            row_mean, row_var = row[:size].reshape(self.shape), row[size : 2 * size].reshape(self.shape)
            mean, var, count = _merge(mean, var, count, row_mean, row_var, float(row[-1]))
        self.mean, self.var, self.count = mean, var, count
        self._synced = (mean, var, count)
        self._pending = (np.zeros(self.shape), np.zeros(self.shape), 0.0)

    def get_extra_state(self) -> dict[str, Any]:
        """Statistics for ``state_dict``; pending batches are merged into the saved statistics."""
        mean, var = torch.from_numpy(np.array(self.mean)), torch.from_numpy(np.array(self.var))
        return {"mean": mean, "var": var, "count": self.count}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].cpu().numpy().astype(np.float64)
        self.var = state["var"].cpu().numpy().astype(np.float64)
        self.count = float(state["count"])
        self._synced = (self.mean, self.var, self.count)
        self._pending = (np.zeros(self.shape), np.zeros(self.shape), 0.0)


class RewardScaler(nn.Module):
    """Rewards divided by the running standard deviation of the discounted return, as gymnasium's ``NormalizeReward``.

    Per sub-env the discounted return ``G = gamma * G * (1 - terminated) + r`` is tracked; ``G`` feeds a scalar
    :class:`RunningMeanStd` and rewards are scaled to ``r / sqrt(var(G) + epsilon)``, then clipped to ``[-clip, clip]``.
    The return statistics sync across ranks like :class:`RunningMeanStd`; the per-env ``G`` restarts with the envs.

    Args:
        num_envs: number of sub-envs on this rank.
        gamma: discount of the tracked return, in [0, 1].
        epsilon: variance floor.
        clip: bound of the scaled reward; ``None`` disables clipping.
    """

    def __init__(self, num_envs: int, gamma: float = 0.99, epsilon: float = 1e-8, clip: float | None = 10.0) -> None:
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"Invalid gamma: {gamma}; it must lie in [0, 1]")
        self.gamma = gamma
        self.clip = clip
        self.return_rms = RunningMeanStd((), epsilon=epsilon, clip=None)
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)

    def scale(self, rewards: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """Update the return statistics with one step of ``rewards`` (num_envs,) and return the scaled rewards."""
        self.discounted_return = self.discounted_return * self.gamma * (1.0 - terminated) + rewards
        self.return_rms.update(self.discounted_return)
        scaled = rewards / np.sqrt(self.return_rms.var + self.return_rms.epsilon)
        if self.clip is not None:
            scaled = np.clip(scaled, -self.clip, self.clip)
        return scaled.astype(np.float32)

    def sync(self, all_gather: AllGather, device: torch.device | str = "cpu") -> None:
        """Merge the return statistics of all ranks (collective; see :meth:`RunningMeanStd.sync`)."""
        self.return_rms.sync(all_gather, device)
