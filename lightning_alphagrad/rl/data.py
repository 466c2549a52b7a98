"""Feeding an RL LightningModule: a fixed number of batches per epoch on every rank, so DDP can never hang."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset

# Lightning warns about every IterableDataset with a length, for the case of several loader workers each yielding
# all of it; these loaders have no workers, and the length is what makes every rank run the same number of batches.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined", category=UserWarning)
# and about resuming a checkpoint written mid-epoch with a loader that keeps no position: these loaders are a clock,
# the modules continue from their restored env-step count (see EnvStepCheckpoint).
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended",
                        category=UserWarning)  # fmt: skip

__all__ = ["StepIndexDataset", "step_index_loader"]


class StepIndexDataset(IterableDataset):
    """Yields the ints ``start, start + 1, ..., stop - 1``: one item per ``training_step``.

    RL modules collect their data inside ``training_step``; the Trainer only needs a clock. The length comes from
    hyper-parameters (never from episode ends), so every rank yields the same number of batches.
    """

    def __init__(self, start: int, stop: int) -> None:
        if start < 0 or stop < start:
            raise ValueError(f"Invalid range: start={start}, stop={stop}; it must satisfy 0 <= start <= stop")
        self.start = start
        self.stop = stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def step_index_loader(start: int, stop: int) -> DataLoader:
    """A ``DataLoader`` over ``StepIndexDataset(start, stop)`` yielding plain ints (no batching, no workers)."""
    return DataLoader(StepIndexDataset(start, stop), batch_size=None, num_workers=0)
