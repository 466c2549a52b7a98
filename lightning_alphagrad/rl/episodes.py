"""Episode returns and lengths: tracked per sub-env in numpy, aggregated as torchmetrics synced across ranks."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric

__all__ = ["EpisodeStatistics", "EpisodeTracker"]


class EpisodeTracker:
    """Running undiscounted return and length of each sub-env's current episode (raw env rewards).

    Call :meth:`step` once per vector-env step; it returns the returns and lengths of the episodes that ended there.
    Envs restart on resume, so the tracker is not checkpointed.
    """

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._none_finished = (self.returns[:0], self.lengths[:0])

    def step(self, rewards: np.ndarray, dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add ``rewards`` (num_envs,) and close the episodes flagged in ``dones`` (num_envs,) bool.

        Returns ``(returns, lengths)`` of the finished episodes, each of shape ``(num_done,)``.
        """
        self.returns += rewards
        self.lengths += 1
        if not dones.any():
            return self._none_finished
        finished = self.returns[dones].copy(), self.lengths[dones].copy()
        self.returns[dones] = 0.0
        self.lengths[dones] = 0
        return finished


class EpisodeStatistics(nn.Module):
    """Mean return and length of the episodes finished since the last :meth:`compute`, over all DDP ranks.

    :meth:`update` only appends to host lists (a few microseconds per finished episode); :meth:`compute` feeds them
    to the torchmetrics once and syncs. It is a collective call under DDP (every rank must call it) and returns an
    empty dict when no rank finished an episode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.episodic_return = MeanMetric()
        self.episodic_length = MeanMetric()
        self.episodes = SumMetric()
        self._returns: list[float] = []
        self._lengths: list[float] = []

    def update(self, returns: np.ndarray, lengths: np.ndarray) -> None:
        """Record finished episodes: ``returns`` and ``lengths`` of shape ``(num_done,)``."""
        if len(returns):
            self._returns.extend(returns.tolist())
            self._lengths.extend(lengths.tolist())

    def compute(self) -> dict[str, Tensor]:
        """``{"charts/episodic_return", "charts/episodic_length"}`` over all ranks, then reset; ``{}`` if none."""
        # Also when this rank finished no episode: an update (maybe empty) marks the metrics as updated, so every
        # rank joins the sync without warnings.
        device = self.episodic_return.device  # the metrics follow the module to its accelerator
        self.episodic_return.update(torch.tensor(self._returns, dtype=torch.float64, device=device))
        self.episodic_length.update(torch.tensor(self._lengths, dtype=torch.float64, device=device))
        self.episodes.update(float(len(self._returns)))
        count = self.episodes.compute()
        stats = {}
        if count > 0:
            stats = {
                "charts/episodic_return": self.episodic_return.compute(),
                "charts/episodic_length": self.episodic_length.compute(),
            }
        self.reset()
        return stats

    def reset(self) -> None:
        """Forget the recorded episodes."""
        self._returns.clear()
        self._lengths.clear()
        self.episodic_return.reset()
        self.episodic_length.reset()
        self.episodes.reset()
