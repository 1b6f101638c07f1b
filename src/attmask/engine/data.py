"""Builds the pretraining data set and multi-crop augmentation from the data config."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from attmask.config import Config, ConfigError, DataConfig
from attmask.data.collate import collate_multicrop
from attmask.data.resumable import EpochSampler, SeededTransformDataset
from attmask.data.augment import MULTICROP_PRESETS, CropFlipViews, MultiCropAugmentation, MultiCropConfig
from attmask.data.datasets import build_dataset
from attmask.methods.build import method_spec

_CROP_FIELDS = ("global_size", "global_scale", "local_size", "local_scale", "num_local")


def crop_config(data: DataConfig) -> MultiCropConfig:
    """The ``data.crops`` preset with every non-null crop field of ``data`` applied."""
    if data.crops not in MULTICROP_PRESETS:
        raise ConfigError(
            f"unknown data.crops preset {data.crops!r}; choose one of {', '.join(MULTICROP_PRESETS)}"
        )
    changes = {name: getattr(data, name) for name in _CROP_FIELDS if getattr(data, name) is not None}
    try:
        return dataclasses.replace(MULTICROP_PRESETS[data.crops], **changes)
    except ValueError as error:
        raise ConfigError(f"data: {error}") from None


def build_pretraining_data(data: DataConfig, method: str = "ibot") -> tuple[Dataset, Callable, MultiCropConfig]:
    """``(images without transform, the method's augmentation, crop settings)``.

    Multi-crop methods (iBOT, DINO, MST) get :class:`MultiCropAugmentation`; MAE, SimMIM and
    LUT get :class:`CropFlipViews` (crop + flip at ``global_size``; local-crop fields unused).

    Raises:
        DatasetError: missing, empty or unreadable data (one line).
        ConfigError: bad crop settings or an unknown method.
    """
    crops = crop_config(data)
    spec = method_spec(method)
    if spec.views == "multicrop":
        augmentation: Callable = MultiCropAugmentation(crops)
    else:
        augmentation = CropFlipViews(crops, spec.num_views)
    dataset = build_dataset(data.source, "train", data_dir=data.data_dir, subset=data.subset)
    return dataset, augmentation, crops


def pretraining_loader(config: Config, device: torch.device, world_size: int = 1, rank: int = 0) -> DataLoader:
    """The pretraining loader of ``config`` for one rank (the trainer's and the data bench's).

    Args:
        config: reads ``data`` and ``train.seed``.
        device: pinned memory on CUDA.
        world_size: number of ranks; each gets a disjoint share of every epoch.
        rank: this rank.

    Returns:
        A DataLoader of ``([crop_0 (B, 3, S_0, S_0), ..., crop_K], labels (B,))`` batches whose
        ``sampler`` (:class:`EpochSampler`) and ``dataset`` (:class:`SeededTransformDataset`)
        take ``set_epoch``.

    Raises:
        DatasetError: missing or unreadable data.
        ConfigError: bad crop settings.
    """
    base, transform, _ = build_pretraining_data(config.data, config.train.method)
    dataset = SeededTransformDataset(base, transform, config.train.seed)
    sampler = EpochSampler(len(dataset), world_size, rank, config.train.seed)
    return DataLoader(
        dataset, batch_size=config.data.batch_size, sampler=sampler, num_workers=config.data.num_workers,
        collate_fn=collate_multicrop, drop_last=True, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
