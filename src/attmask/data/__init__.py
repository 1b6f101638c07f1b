"""Data: built-in data sets and image folders, multi-crop augmentation, resumable order."""

from attmask.data.augment import (
    MULTICROP_PRESETS,
    CropFlipViews,
    MultiCropAugmentation,
    MultiCropConfig,
    eval_transform,
)
from attmask.data.batched import BatchedCropFlip, BatchedMultiCrop
from attmask.data.collate import collate_images, collate_multicrop
from attmask.data.datasets import BUILTIN, DatasetError, ImageDataset, build_dataset, subset_per_class
from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor, load_image

__all__ = [
    "BatchedCropFlip",
    "BatchedMultiCrop",
    "CropFlipViews",
    "BUILTIN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MULTICROP_PRESETS",
    "DatasetError",
    "ImageDataset",
    "MultiCropAugmentation",
    "MultiCropConfig",
    "build_dataset",
    "collate_images",
    "collate_multicrop",
    "eval_transform",
    "image_to_tensor",
    "load_image",
    "subset_per_class",
]
