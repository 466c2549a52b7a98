"""A preallocated tensor replay buffer for off-policy RL with gymnasium >= 1.0 vector environments."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ReplayBatch", "ReplayBuffer"]


def _as_numpy(x: Tensor | np.ndarray, dtype: type | None = None) -> np.ndarray:
    """``x`` as a host numpy array, no copy for CPU tensors and arrays (of ``dtype`` if given; else the write into
    storage converts the dtype)."""
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, Tensor) else x, dtype=dtype)


class ReplayBatch(NamedTuple):
    """A sampled minibatch; ``B`` is the batch size.

    ``obs`` and ``next_obs``: ``(B, *obs_shape)``; ``actions``: ``(B, *action_shape)``; ``rewards`` and
    ``terminations`` (1.0 where the episode terminated, 0.0 otherwise, truncation included): ``(B,)`` float32.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminations: Tensor


class ReplayBuffer:
    """Ring buffer of transitions ``(obs, action, reward, next_obs, terminated)`` in preallocated tensors.

    ``add`` takes one vector-env step (leading dimension ``num_envs``). ``next_obs`` must be the real next observation
    of each transition, never a reset observation; how to get it depends on gymnasium's autoreset mode:

    - ``"same_step"`` (the envs of :func:`~lightning_alphagrad.rl.make_vector_env`): the step that ends an episode
      returns the reset observation, so pass ``final_observations(...)`` as ``next_obs``; every row is stored.
    - ``"next_step"`` (gymnasium's default): the step that ends an episode returns its real final observation, and
      the next step ignores the action and returns the reset observation with reward 0. The buffer remembers which
      envs ended at the previous ``add`` and drops their next row, so that step is never learned from.

    Truncation is stored as a non-terminal transition (the target bootstraps from the final observation);
    termination is stored with ``terminated = 1``.

    Args:
        capacity: number of transitions kept (oldest overwritten first), > 0.
        obs_shape: shape of one observation.
        action_shape: shape of one action (``()`` for a discrete action).
        num_envs: environments per ``add``, > 0.
        action_dtype: ``torch.int64`` for discrete actions, a float dtype for continuous ones.
        device: where the storage (and sampled batches) live.
        seed: seed of the buffer's own sampling generator.
        autoreset_mode: ``"same_step"`` or ``"next_step"``, the autoreset mode of the envs feeding the buffer.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        num_envs: int = 1,
        action_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        seed: int = 0,
        autoreset_mode: Literal["same_step", "next_step"] = "same_step",
    ) -> None:
        if autoreset_mode not in ("same_step", "next_step"):
            raise ValueError(f"Invalid autoreset_mode: {autoreset_mode!r}; it must be 'same_step' or 'next_step'")
        if capacity <= 0:
            raise ValueError(f"Invalid capacity: {capacity}; it must be > 0")
        if num_envs <= 0:
            raise ValueError(f"Invalid num_envs: {num_envs}; it must be > 0")
        self.capacity = capacity
        self.autoreset_mode = autoreset_mode
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.obs = torch.zeros((capacity, *obs_shape), dtype=torch.float32, device=self.device)
        self.next_obs = torch.zeros_like(self.obs)
        self.actions = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminations = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.pos = 0
        self.size = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._storages = (self.obs, self.next_obs, self.actions, self.rewards, self.terminations)
        self._row_shapes = tuple(tuple(t.shape[1:]) for t in self._storages)
        self._host_views = tuple(t.numpy() for t in self._storages) if self.device.type == "cpu" else None
        self._episode_ended = np.zeros(num_envs, dtype=bool)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: Tensor | np.ndarray,
        next_obs: Tensor | np.ndarray,
        actions: Tensor | np.ndarray,
        rewards: Tensor | np.ndarray,
        terminations: Tensor | np.ndarray,
        truncations: Tensor | np.ndarray,
    ) -> int:
        """Store one vector step; returns the number of rows stored (autoreset rows are dropped).

        Shapes: ``obs``/``next_obs`` ``(num_envs, *obs_shape)``, ``actions`` ``(num_envs, *action_shape)``,
        ``rewards``/``terminations``/``truncations`` ``(num_envs,)``; tensors or numpy arrays of any real dtype.
        """
        terminations, truncations = _as_numpy(terminations, bool), _as_numpy(truncations, bool)
        if terminations.shape != (self.num_envs,) or truncations.shape != (self.num_envs,):
            raise ValueError(
                f"Invalid terminations/truncations shape: {terminations.shape}; expected ({self.num_envs},)"
            )
        rows = [_as_numpy(obs), _as_numpy(next_obs), _as_numpy(actions), _as_numpy(rewards), terminations]
        if self.autoreset_mode == "next_step":
            keep = ~self._episode_ended
            self._episode_ended = terminations | truncations
            if not keep.all():
                rows = [row[keep] for row in rows]
        n = rows[0].shape[0]
        first = min(n, self.capacity - self.pos)  # rows before the end of the ring, the rest wraps to the start
        for index, (row, row_shape) in enumerate(zip(rows, self._row_shapes, strict=True)):
            if row.shape[1:] != row_shape:
                row = row.reshape(n, *row_shape)
            if first == n and self._host_views is not None:  # the common case, written inline
                self._host_views[index][self.pos : self.pos + n] = row
                continue
            self._write(index, self.pos, row[:first])
            if first < n:
                self._write(index, 0, row[first:])
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return n

    def _write(self, index: int, start: int, rows: np.ndarray) -> None:
        """Copy ``rows`` into storage ``index`` from ``start``: through its numpy view on CPU (cheap), else a copy."""
        if self._host_views is not None:
            self._host_views[index][start : start + len(rows)] = rows
        else:
            self._storages[index][start : start + len(rows)].copy_(torch.from_numpy(np.ascontiguousarray(rows)))

    def mark_reset(self) -> None:
        """Declare that the envs were just reset by hand: their next ``add`` is a real transition in any mode."""
        self._episode_ended[:] = False

    def sample(self, batch_size: int) -> ReplayBatch:
        """Draw ``batch_size`` transitions uniformly with replacement, using the buffer's own generator."""
        if batch_size <= 0:
            raise ValueError(f"Invalid batch_size: {batch_size}; it must be > 0")
        if self.size == 0:
            raise ValueError("Cannot sample from an empty replay buffer")
        index = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.device)
        return ReplayBatch(
            self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index], self.terminations[index]
        )

    def state_dict(self, include_storage: bool = False) -> dict[str, Any]:
        """Sampling-generator state and counters; the stored transitions too if ``include_storage``."""
        state: dict[str, Any] = {"generator": self.generator.get_state(), "pos": self.pos, "size": self.size}
        if include_storage:
            for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
                state[name] = getattr(self, name)[: self.size].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; without stored transitions the buffer starts empty."""
        self.generator.set_state(state["generator"])
        self.mark_reset()
        if "obs" not in state:
            self.pos, self.size = 0, 0
            return
        if state["size"] > self.capacity:
            raise ValueError(
                f"Invalid replay buffer state: it holds {state['size']} transitions, more than capacity {self.capacity}"
            )
        for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
            getattr(self, name)[: state["size"]].copy_(state[name])
        self.pos, self.size = state["pos"], state["size"]
