"""``RLModule``: what every RL LightningModule here shares (ranks, env-step clock, seeding, logging, checkpoints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from lightning_alphagrad.distributed import pause_for_gloo_at_exit
from lightning_alphagrad.rl.envs import env_seeds
from lightning_alphagrad.rl.evaluation import evaluate_policy

__all__ = ["RLModule"]


class RLModule(L.LightningModule):
    """Base class of the RL modules: collects its own data inside ``training_step``.

    It keeps ``env_steps``, the number of environment steps taken so far summed over all ranks (saved in
    checkpoints), logs against it, and derives every random seed from ``seed``, the rank and ``env_steps``:

    - training envs of rank ``r`` reset with ``seed + env_steps + r * num_envs + i`` (``env_steps`` is 0 on a fresh
      run; after a resume the envs restart with fresh seeds, since env states are not checkpointed);
    - eval envs of rank ``r`` reset with ``seed + 10**6 + r * num_eval_envs + i`` at every evaluation (the same start
      states each time);
    - ``self.generator`` (action sampling, minibatch shuffling) is seeded from ``(seed, rank, env_steps)``.
    """

    # Step counters kept in checkpoints and in the state_dict (see get_extra_state); subclasses add theirs.
    COUNTERS: tuple[str, ...] = ("env_steps",)

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        if seed < 0:
            raise ValueError(f"Invalid seed: {seed}; it must be >= 0")
        self.seed = seed
        self.env_steps = 0
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """CPU generator for action sampling and minibatch shuffling; see :meth:`reseed_generator`."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        # torch.Generator cannot cross torch.multiprocessing's shared-memory pickling (ddp_spawn): workers make anew.
        state = super().__getstate__()
        return {**state, "_generator": None}

    @property
    def rank(self) -> int:
        """Global rank of this process (0 without a Trainer)."""
        return self.trainer.global_rank if self._trainer is not None else 0

    @property
    def world_size(self) -> int:
        """Number of processes (1 without a Trainer)."""
        return self.trainer.world_size if self._trainer is not None else 1

    def train_env_seeds(self, num_envs: int) -> list[int]:
        """Reset seeds of this rank's training sub-envs (see the class docstring)."""
        return env_seeds(self.seed + self.env_steps, self.rank, num_envs)

    def eval_env_seeds(self, num_envs: int) -> list[int]:
        """Reset seeds of this rank's eval sub-envs, disjoint from early training seeds (offset 10**6)."""
        return env_seeds(self.seed + 10**6, self.rank, num_envs)

    def reseed_generator(self) -> None:
        """Seed ``self.generator`` from ``(seed, rank, env_steps)``: distinct per rank, reproducible on resume."""
        state = np.random.SeedSequence([self.seed, self.rank, self.env_steps]).generate_state(2, dtype=np.uint32)
        self.generator.manual_seed(int(state[0]) << 32 | int(state[1]))

    def evaluation_return(self, act: Callable[[np.ndarray], np.ndarray], num_episodes: int) -> Tensor:
        """Mean return of ``num_episodes`` episodes of ``act`` (raw observations ``(n, obs_dim)`` to env actions) in
        ``self.eval_envs`` per rank, averaged over ranks (a collective call under DDP); 0-d float64."""
        returns = evaluate_policy(act, self.eval_envs, num_episodes, self.eval_env_seeds(self.eval_envs.num_envs))
        mean = torch.tensor(returns.mean(), dtype=torch.float64, device=self.device)
        return self.trainer.strategy.reduce(mean, reduce_op="mean")

    def setup(self, stage: str) -> None:
        """Subclasses create their envs here (after ``super().setup(stage)``), in every rank's own process."""
        pause_for_gloo_at_exit()

    def teardown(self, stage: str) -> None:
        for name in ("envs", "eval_envs"):
            envs = getattr(self, name, None)
            if envs is not None:
                envs.close()
                setattr(self, name, None)

    def all_gather_fn(self, tensor: Tensor) -> Tensor:
        """All ranks' ``tensor`` stacked on a leading ``(world_size,)`` axis (a collective call under DDP)."""
        gathered = self.all_gather(tensor)
        return gathered if self.world_size > 1 else gathered.unsqueeze(0)

    def log_env_metrics(self, metrics: dict[str, float | Tensor]) -> None:
        """Write ``metrics`` and ``env_steps`` to every logger at step ``env_steps`` (loggers write on rank 0 only).

        The values also land in ``trainer.callback_metrics``, so callbacks (e.g. ``ModelCheckpoint``) can use them.
        """
        values = {name: float(value) for name, value in metrics.items()}
        values["env_steps"] = float(self.env_steps)
        for logger in self.trainer.loggers:
            logger.log_metrics(values, step=self.env_steps)
            logger.save()  # once per call (an RL iteration), so file-based logs can be followed while training
        self.trainer.callback_metrics.update({name: torch.tensor(value) for name, value in values.items()})

    def get_extra_state(self) -> dict[str, int]:
        """The counters (``COUNTERS``) in ``state_dict``: they travel with the weights, e.g. back from
        ``strategy="ddp_spawn"`` workers to the main process, which only receives the ``state_dict``."""
        return {name: int(getattr(self, name)) for name in self.COUNTERS}

    def set_extra_state(self, state: dict[str, int]) -> None:
        for name in self.COUNTERS:
            setattr(self, name, int(state[name]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(self.get_extra_state())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # before the state_dict is loaded: subclasses' on_load_checkpoint reads the restored clock
        self.set_extra_state({name: checkpoint[name] for name in self.COUNTERS})
