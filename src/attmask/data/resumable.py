"""Deterministic, resumable data order and augmentation.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)``, split across ranks like
``DistributedSampler``; a run resumed mid-epoch starts from the saved position. The
augmentation of sample ``i`` in epoch ``e`` is seeded by ``(seed, e, i)``, so it does not
depend on the number of workers, on which worker loads the sample, or on a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

_MIX = 1_000_003
_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed."""
    seed = 0
    for part in parts:
        seed = (seed * _MIX + int(part) + 1) & _MASK
    return seed


class EpochSampler(Sampler[int]):
    """Shuffled indices per epoch, this rank's share, starting at a resume position.

    Args:
        length: data set size.
        num_replicas: number of ranks.
        rank: this rank.
        seed: base seed shared by all ranks.
        shuffle: permute (True) or keep the data set order.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        if length < num_replicas:
            raise ValueError(f"data set of {length} images is smaller than {num_replicas} ranks")
        self.length, self.num_replicas, self.rank = length, num_replicas, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` indices of this rank."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        usable = (self.length // self.num_replicas) * self.num_replicas
        return order[:usable][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return self.length // self.num_replicas - self.start


class SeededTransformDataset(Dataset):
    """Apply ``transform`` to ``dataset[i]``'s image under an RNG seeded by (seed, epoch, i).

    Args:
        dataset: returns ``(image, label)``.
        transform: random augmentation using torch's global RNG (e.g. torchvision v2).
        seed: base seed.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any], seed: int = 0) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations are drawn."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, self.epoch, index))
            return self.transform(image), label
