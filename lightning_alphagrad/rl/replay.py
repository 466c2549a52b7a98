"""A preallocated tensor replay buffer for off-policy RL with gymnasium >= 1.0 vector environments."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ReplayBatch", "ReplayBuffer"]


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    """``x`` as a tensor, sharing memory with a numpy array (the copy into storage converts the dtype)."""
    return torch.from_numpy(np.asarray(x)) if not isinstance(x, Tensor) else x


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
        self._episode_ended = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

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
        terminations, truncations = _as_tensor(terminations).bool(), _as_tensor(truncations).bool()
        if terminations.shape != (self.num_envs,) or truncations.shape != (self.num_envs,):
            raise ValueError(
                f"Invalid terminations/truncations shape: {tuple(terminations.shape)}; expected ({self.num_envs},)"
            )
        rows = [_as_tensor(obs), _as_tensor(next_obs), _as_tensor(actions), _as_tensor(rewards), terminations]
        if self.autoreset_mode == "next_step":
            keep = ~self._episode_ended
            self._episode_ended = (terminations | truncations).to(self.device)
            if not bool(keep.all()):
                keep = keep.cpu()
                rows = [row[keep] for row in rows]
        n = rows[0].shape[0]
        storages = (self.obs, self.next_obs, self.actions, self.rewards, self.terminations)
        first = min(n, self.capacity - self.pos)  # rows before the end of the ring, the rest wraps to the start
        for storage, row in zip(storages, rows, strict=True):
            row = row.reshape(n, *storage.shape[1:])
            storage[self.pos : self.pos + first].copy_(row[:first])
            if first < n:
                storage[: n - first].copy_(row[first:])
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return n

    def mark_reset(self) -> None:
        """Declare that the envs were just reset by hand: their next ``add`` is a real transition in any mode."""
        self._episode_ended.zero_()

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
