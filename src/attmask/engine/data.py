"""Builds the pretraining data set and multi-crop augmentation from the data config.

``data.augment_on=workers`` (default): the loader's workers augment every image.
``data.augment_on=device``: the workers only decode images to ``decode_size`` squares and
:func:`batch_augmentation` gives the batched augmentation the trainer runs on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from attmask.config import Config, ConfigError, DataConfig
from attmask.core.environment import loader_workers
from attmask.core.stop import shield_from_stop_signals
from attmask.data.augment import MULTICROP_PRESETS, CropFlipViews, MultiCropAugmentation, MultiCropConfig, decode_square
from attmask.data.batched import BatchAugmentation, BatchedCropFlip, BatchedMultiCrop
from attmask.data.collate import collate_images, collate_multicrop
from attmask.data.datasets import build_dataset, subset_per_class
from attmask.data.resumable import EpochSampler, SeededTransformDataset, mix_seed
from attmask.data.splits import validation_split
from attmask.engine.resume import TrainingError
from attmask.methods.build import method_spec

_CROP_FIELDS = ("global_size", "global_scale", "local_size", "local_scale", "num_local")
AUGMENT_ON = ("workers", "device")


def crop_config(data: DataConfig) -> MultiCropConfig:
    """The ``data.crops`` preset with every non-null crop field of ``data`` applied."""
    if data.crops not in MULTICROP_PRESETS:
        raise ConfigError(f"unknown data.crops preset {data.crops!r}; choose one of {', '.join(MULTICROP_PRESETS)}")
    changes = {name: getattr(data, name) for name in _CROP_FIELDS if getattr(data, name) is not None}
    try:
        return dataclasses.replace(MULTICROP_PRESETS[data.crops], **changes)
    except ValueError as error:
        raise ConfigError(f"data: {error}") from None


def build_pretraining_data(data: DataConfig, method: str = "ibot") -> tuple[Dataset, Callable, MultiCropConfig]:
    """``(images without transform, the workers' per-image transform, crop settings)``.

    With ``augment_on=workers`` the transform is the method's augmentation: multi-crop methods
    (iBOT, DINO, MST) get :class:`MultiCropAugmentation`; MAE, SimMIM and the LUTs get
    :class:`CropFlipViews` (crop + flip at ``global_size``; local-crop fields unused). With
    ``augment_on=device`` it only decodes to a :func:`decode_size` square.

    The ``data.val_images`` validation images are held out first, then ``data.subset`` is taken.

    Raises:
        DatasetError: missing, empty or unreadable data (one line).
        ConfigError: bad crop settings or an unknown method.
    """
    crops = crop_config(data)
    size = decode_size(data, crops)  # checks data.augment_on and data.decode_size
    spec = method_spec(method)
    if data.augment_on == "device":
        transform: Callable = decode_square(size)
    elif spec.views == "multicrop":
        transform = MultiCropAugmentation(crops)
    else:
        transform = CropFlipViews(crops, spec.num_views)
    images = build_dataset(data.source, "train", data_dir=data.data_dir, max_pixels=data.max_image_pixels)
    dataset, _ = validation_split(images, data.val_images)
    if data.subset is not None:  # a fraction (1.0 = all), never a count
        dataset = subset_per_class(dataset, float(data.subset)) if data.subset < 1 else dataset
    if data.per_class is not None:
        dataset = subset_per_class(dataset, int(data.per_class))
    return dataset, transform, crops


def check_patch_fit(crops: MultiCropConfig, patch_size: int, method: str) -> None:
    """Refuse crop sizes that the patches do not tile, before anything is built or written (the
    ViT would refuse them only at its construction or at the first forward of a local crop).
    Called by the trainer before it builds anything and, before the run folder is made, by
    ``attmask pretrain`` (not by the data bench, which builds no model).

    Raises:
        ConfigError: ``data.global_size``, or ``data.local_size`` of a multi-crop method with local
            crops, not a multiple of ``model.patch_size``; names the two nearest sizes that are.
    """
    sizes = {"data.global_size": crops.global_size}
    if method_spec(method).views == "multicrop" and crops.num_local > 0:
        sizes["data.local_size"] = crops.local_size
    for key, size in sizes.items():
        if size % patch_size:
            below, above = size - size % patch_size, size - size % patch_size + patch_size
            nearest = f"{below} or {above}" if below > 0 else f"{above}"
            raise ConfigError(
                f"{key} ({size}) is not a multiple of model.patch_size ({patch_size}); "
                f"set it to {nearest}, or change model.patch_size"
            )


def decode_size(data: DataConfig, crops: MultiCropConfig) -> int:
    """Side of the squares the workers decode with ``augment_on=device``: ``data.decode_size``,
    default the larger crop size (no crop is upsampled from a smaller square than it needs).

    Raises:
        ConfigError: unknown ``data.augment_on`` or ``data.decode_size`` < 1.
    """
    if data.augment_on not in AUGMENT_ON:
        raise ConfigError(f"unknown data.augment_on {data.augment_on!r}; choose one of {', '.join(AUGMENT_ON)}")
    if data.decode_size is not None and data.decode_size < 1:
        raise ConfigError(f"data.decode_size must be positive, got {data.decode_size}")
    return data.decode_size or max(crops.global_size, crops.local_size)


def batch_augmentation(data: DataConfig, method: str = "ibot") -> BatchAugmentation | None:
    """The batched augmentation to run on the device after moving a decoded uint8 batch there
    (``data.augment_on=device``): :class:`BatchedMultiCrop` or :class:`BatchedCropFlip` as in
    :func:`build_pretraining_data`. None with ``augment_on=workers`` (the loader augments).

    Raises:
        ConfigError: bad crop or decode settings, or an unknown method.
    """
    crops = crop_config(data)
    decode_size(data, crops)
    if data.augment_on == "workers":
        return None
    spec = method_spec(method)
    if spec.views == "multicrop":
        return BatchedMultiCrop(crops)
    return BatchedCropFlip(crops, spec.num_views)


def augmentation_seed(seed: int, rank: int, step: int, micro_batch: int = 0) -> int:
    """Seed of the batched augmentation of one micro-batch (``augment_on=device``), a pure
    function of the run's seed, the rank, the optimizer step and the micro-batch: resuming
    repeats the crops of an uninterrupted run."""
    return mix_seed(seed, rank, step, 2, micro_batch)


def pretraining_loader(config: Config, device: torch.device, world_size: int = 1, rank: int = 0) -> DataLoader:
    """The pretraining loader of ``config`` for one rank (the trainer's and the data bench's).

    Args:
        config: reads ``data`` and ``train.seed``.
        device: pinned memory on CUDA.
        world_size: number of ranks; each gets a disjoint share of every epoch.
        rank: this rank.

    Returns:
        A DataLoader of ``([crop_0 (B, 3, S_0, S_0), ..., crop_K], labels (B,))`` batches, or with
        ``data.augment_on=device`` of ``(images (B, 3, S, S) uint8, labels (B,))`` (S =
        :func:`decode_size`), whose ``sampler`` (:class:`EpochSampler`) and ``dataset``
        (:class:`SeededTransformDataset`) take ``set_epoch``.

    Raises:
        DatasetError: missing or unreadable data.
        ConfigError: bad crop settings.
    """
    base, transform, _ = build_pretraining_data(config.data, config.train.method)
    collate = collate_images if config.data.augment_on == "device" else collate_multicrop
    dataset = SeededTransformDataset(base, transform, config.train.seed)
    sampler = EpochSampler(len(dataset), world_size, rank, config.train.seed)
    return DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        sampler=sampler,
        num_workers=loader_workers(config.data.num_workers),
        collate_fn=collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=shield_from_stop_signals,  # a SIGTERM to the process group stops the run politely
    )


def steps_per_epoch(config: Config, loader: DataLoader, world_size: int) -> int:
    """Optimizer steps per epoch of ``loader`` on each of ``world_size`` ranks: its batches over
    ``optim.accumulation_steps``, at most ``train.max_steps_per_epoch`` (when > 0).

    Raises:
        TrainingError: not one step's worth of images.
    """
    data, accumulation = config.data, config.optim.accumulation_steps
    steps = len(loader.sampler) // data.batch_size // accumulation  # type: ignore[arg-type]
    if config.train.max_steps_per_epoch > 0:
        steps = min(steps, config.train.max_steps_per_epoch)
    if steps < 1:
        raise TrainingError(
            f"the data set has {len(loader.dataset)} images, fewer than one step needs "  # type: ignore[arg-type]
            f"({data.batch_size} x {world_size} ranks x {accumulation} accumulation steps); lower data.batch_size"
        )
    return steps
