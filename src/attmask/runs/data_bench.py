"""Throughput of the pretraining data loader alone: no model, no optimizer, no checkpoint.

Times the loader the trainer iterates (:func:`attmask.engine.data.pretraining_loader`): the
configured data set under :class:`SeededTransformDataset` with the multi-crop augmentation,
:class:`EpochSampler`, ``collate_multicrop``, ``data.batch_size``, ``data.num_workers``,
``drop_last`` and pinned memory on CUDA, then times ``N`` batches, moving the crops to the
training device as the trainer does. With ``data.augment_on=device`` the workers only decode and
the batched augmentation runs on the training device inside the timed loop, as in training, so
the two paths compare directly. One process is measured (rank 0 of 1). ``attmask
pretrain --data-bench`` prints the result; comparing it with the images/s of a training log tells
whether a run is input-bound (raise ``data.num_workers`` or use ``data.augment_on=device``) or
compute-bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from attmask.config import Config
from attmask.core.distributed import resolve_device
from attmask.data.batched import BatchAugmentation
from attmask.engine.data import augmentation_seed, batch_augmentation, pretraining_loader


@dataclass(frozen=True)
class DataBenchResult:
    """One loader measurement.

    Attributes:
        images: images delivered (``batches x batch_size``: the loader drops incomplete batches).
        batches: batches delivered.
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 = the main process augments).
        crops_per_image: views per image (2 global + local crops).
        seconds: wall time from creating the first epoch's iterator to the last batch on the
            device, worker start-up included.
        first_batch_seconds: wall time to the first batch (start-up plus one batch).
        augment_on: ``workers`` or ``device`` (``data.augment_on``).
    """

    images: int
    batches: int
    batch_size: int
    num_workers: int
    crops_per_image: int
    seconds: float
    first_batch_seconds: float
    augment_on: str = "workers"

    @property
    def images_per_second(self) -> float:
        """Overall rate, start-up included."""
        return self.images / max(self.seconds, 1e-9)

    @property
    def steady_images_per_second(self) -> float | None:
        """Rate after the first batch (None with a single batch)."""
        if self.batches < 2:
            return None
        return (self.images - self.batch_size) / max(self.seconds - self.first_batch_seconds, 1e-9)


def time_loader(
    loader: DataLoader,
    max_batches: int,
    device: torch.device,
    augmentation: BatchAugmentation | None = None,
    seed: int = 0,
) -> DataBenchResult:
    """Time ``max_batches`` batches of ``loader``, continuing into later epochs when needed.

    Args:
        loader: from :func:`attmask.engine.data.pretraining_loader` (``drop_last``, epoch-aware sampler and data set).
        max_batches: batches to draw, >= 1.
        device: where each batch's crops (or decoded images) are copied, as in training.
        augmentation: with ``data.augment_on=device``, applied to each decoded batch on ``device``.
        seed: seeds the augmentation's generator per batch, as the trainer does per step.
    """
    if max_batches < 1:
        raise ValueError(f"the data bench needs at least 1 batch, got {max_batches}")
    batches = images = crops_per_image = 0
    first_batch_seconds, epoch = 0.0, 0
    generator = torch.Generator(device=device)
    start = time.perf_counter()
    while batches < max_batches:
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        before = batches
        for batch, labels in loader:
            if augmentation is None:
                crops = [crop.to(device, non_blocking=True) for crop in batch]
            else:
                generator.manual_seed(augmentation_seed(seed, 0, batches))
                crops = augmentation(batch.to(device, non_blocking=True), generator)
            images, batches, crops_per_image = images + labels.shape[0], batches + 1, len(crops)
            if batches == 1:
                first_batch_seconds = time.perf_counter() - start
            if batches == max_batches:
                break
        if batches == before:
            raise ValueError("the loader yielded no batch in an epoch; lower data.batch_size")
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return DataBenchResult(
        images,
        batches,
        loader.batch_size or 0,
        loader.num_workers,
        crops_per_image,
        seconds,
        first_batch_seconds,
        "workers" if augmentation is None else "device",
    )


def measure_pretraining_loader(config: Config, max_batches: int = 50) -> DataBenchResult:
    """Images/s of the loader ``config`` trains with, under its ``train.num_threads``.

    Raises:
        DatasetError, ConfigError, ValueError: as :func:`pretraining_loader` and :func:`time_loader`.
    """
    device = resolve_device(config.train.device)
    threads = torch.get_num_threads()
    if config.train.num_threads > 0:  # the trainer's setting: augmentation threads with 0 workers
        torch.set_num_threads(config.train.num_threads)
    try:
        loader = pretraining_loader(config, device)
        if len(loader) < 1:
            raise ValueError(
                f"the data set has {len(loader.dataset)} images, fewer than one batch of "  # type: ignore[arg-type]
                f"{config.data.batch_size}; lower data.batch_size"
            )
        augmentation = batch_augmentation(config.data, config.train.method)
        return time_loader(loader, max_batches, device, augmentation, config.train.seed)
    finally:
        torch.set_num_threads(threads)


def describe(result: DataBenchResult) -> str:
    """One line: rates, batches, workers."""
    steady = result.steady_images_per_second
    after_first = f" ({steady:.1f} after the first batch)" if steady is not None else ""
    return (
        f"data bench: {result.images_per_second:.1f} images/s{after_first}, {result.batches} batches "
        f"x {result.batch_size} = {result.images} images, {result.num_workers} workers, "
        f"{result.crops_per_image} crops per image augmented on {result.augment_on}, {result.seconds:.2f} s"
    )
