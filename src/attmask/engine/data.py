"""Builds the pretraining data set and multi-crop augmentation from the data config."""

from __future__ import annotations

import dataclasses

from torch.utils.data import Dataset

from attmask.config import ConfigError, DataConfig
from attmask.data.augment import MULTICROP_PRESETS, MultiCropAugmentation, MultiCropConfig
from attmask.data.datasets import build_dataset

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


def build_pretraining_data(data: DataConfig) -> tuple[Dataset, MultiCropAugmentation, MultiCropConfig]:
    """``(images without transform, multi-crop augmentation, crop settings)``.

    Raises:
        DatasetError: missing, empty or unreadable data (one line).
        ConfigError: bad crop settings.
    """
    crops = crop_config(data)
    augmentation = MultiCropAugmentation(crops)
    dataset = build_dataset(data.source, "train", data_dir=data.data_dir, subset=data.subset)
    return dataset, augmentation, crops
