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

from lightning_alphagrad._validation import check_range

__all__ = ["RewardScaler", "RunningMeanStd"]

AllGather = Callable[[Tensor], Tensor]


class Moments:
    """Mean, population variance and count of a sample of arrays of shape ``shape`` (float64, updated in place)."""

    __slots__ = ("count", "mean", "var")

    def __init__(self, shape: tuple[int, ...], mean: float = 0.0, var: float = 1.0, count: float = 0.0) -> None:
        self.mean = np.full(shape, mean, dtype=np.float64)
        self.var = np.full(shape, var, dtype=np.float64)
        self.count = count

    def merge_(self, mean: np.ndarray, var: np.ndarray | float, count: float) -> None:
        """Merge another sample's moments into these (Chan et al.'s parallel algorithm)."""
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.var *= self.count / total
        self.var += var * (count / total) + delta**2 * (self.count * count / total**2)
        self.mean += delta * (count / total)
        self.count = total

    def copy_(self, other: Moments) -> None:
        self.mean[...], self.var[...], self.count = other.mean, other.var, other.count


class RunningMeanStd(nn.Module):
    """Running mean and variance of arrays of shape ``shape``; normalizes to ``(x - mean) / sqrt(var + epsilon)``.

    As gymnasium's ``NormalizeObservation``: the statistics start at mean 0, variance 1, count ``epsilon`` and every
    :meth:`update` merges a batch in. Each rank also keeps what it saw since the last :meth:`sync`; ``sync`` merges the
    pending batches of all ranks, in rank order, into the last synced statistics, so afterwards every rank holds the
    statistics of everything all ranks saw. With one process ``sync`` changes the statistics only by rounding.

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
        self.stats = Moments(self.shape, count=epsilon)
        self.synced = Moments(self.shape, count=epsilon)
        # Sums of the batches since the last sync (updated in place: no nn.Module attribute assignment per step).
        self.pending_sum, self.pending_sum_sq, self.pending_count = (
            np.zeros(self.shape),
            np.zeros(self.shape),
            np.zeros(1),
        )

    @property
    def mean(self) -> np.ndarray:
        return self.stats.mean

    @property
    def var(self) -> np.ndarray:
        return self.stats.var

    @property
    def count(self) -> float:
        return self.stats.count

    def update(self, batch: np.ndarray) -> None:
        """Merge ``batch`` of shape ``(n, *shape)`` into the statistics."""
        count = batch.shape[0]
        if count == 1:
            sample = batch[0].astype(np.float64)
            self.stats.merge_(sample, 0.0, 1)
            self.pending_sum += sample
            self.pending_sum_sq += sample * sample
        else:
            self.stats.merge_(batch.mean(axis=0, dtype=np.float64), batch.var(axis=0, dtype=np.float64), count)
            self.pending_sum += batch.sum(axis=0, dtype=np.float64)
            self.pending_sum_sq += np.square(batch, dtype=np.float64).sum(axis=0)
        self.pending_count[0] += count

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / sqrt(var + epsilon)``, clipped, as float32; ``x`` has shape ``(..., *shape)``."""
        normalized = (x - self.stats.mean) / np.sqrt(self.stats.var + self.epsilon)
        if self.clip is not None:  # np.minimum/maximum: np.clip's Python wrapper costs more than the math here
            normalized = np.minimum(np.maximum(normalized, -self.clip, out=normalized), self.clip, out=normalized)
        return normalized.astype(np.float32)

    def sync(self, all_gather: AllGather, device: torch.device | str = "cpu") -> None:
        """Merge every rank's batches since the last sync (a collective call under DDP; every rank must call it).

        ``all_gather`` maps a tensor of shape ``(k,)`` to the stacked tensors of all ranks, ``(world_size, k)``
        (``LightningModule.all_gather``; with one process it may return the tensor unchanged).
        """
        packed = np.concatenate([self.pending_sum.ravel(), self.pending_sum_sq.ravel(), self.pending_count])
        gathered = all_gather(torch.as_tensor(packed, dtype=torch.float64, device=device))
        size = self.pending_sum.size
        for row in gathered.reshape(-1, packed.size).cpu().numpy():
            count = float(row[-1])
            if count > 0:
                mean = row[:size].reshape(self.shape) / count
                var = np.maximum(row[size : 2 * size].reshape(self.shape) / count - mean**2, 0.0)
                self.synced.merge_(mean, var, count)
        self.stats.copy_(self.synced)
        self._reset_pending()

    def _reset_pending(self) -> None:
        self.pending_sum[...], self.pending_sum_sq[...], self.pending_count[0] = 0.0, 0.0, 0

    def get_extra_state(self) -> dict[str, Any]:
        """Statistics for ``state_dict``; pending batches are merged into the saved statistics."""
        mean, var = torch.from_numpy(self.stats.mean.copy()), torch.from_numpy(self.stats.var.copy())
        return {"mean": mean, "var": var, "count": self.stats.count}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for moments in (self.stats, self.synced):
            moments.mean[...] = state["mean"].cpu().numpy()
            moments.var[...] = state["var"].cpu().numpy()
            moments.count = float(state["count"])
        self._reset_pending()


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
        check_range("gamma", gamma, 0.0, 1.0)
        self.gamma = gamma
        self.clip = clip
        self.return_rms = RunningMeanStd((), epsilon=epsilon, clip=None)
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)

    def scale(self, rewards: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """Update the return statistics with one step of ``rewards`` (num_envs,) and return the scaled rewards."""
        discounted_return = self.discounted_return  # in place: no nn.Module attribute assignment per step
        discounted_return *= self.gamma * (1.0 - terminated)
        discounted_return += rewards
        self.return_rms.update(discounted_return)
        scaled = rewards / np.sqrt(self.return_rms.var + self.return_rms.epsilon)
        if self.clip is not None:
            scaled = np.minimum(np.maximum(scaled, -self.clip), self.clip)
        return scaled.astype(np.float32)

    def sync(self, all_gather: AllGather, device: torch.device | str = "cpu") -> None:
        """Merge the return statistics of all ranks (collective; see :meth:`RunningMeanStd.sync`)."""
        self.return_rms.sync(all_gather, device)
