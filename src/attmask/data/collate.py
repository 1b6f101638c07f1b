"""Batching multi-crop samples: one tensor per crop position (DINO's ``MultiCropWrapper`` then
runs one forward per crop resolution)."""

from __future__ import annotations

import torch


def collate_multicrop(batch: list[tuple[list[torch.Tensor], int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stack the crops of B samples position by position.

    Args:
        batch: B items ``(crops, label)``; every item has the same number of crops, and crop
            ``k`` has the same shape ``(3, S_k, S_k)`` in every item.

    Returns:
        ``([crop_0 (B, 3, S_0, S_0), crop_1, ..., crop_K], labels (B,) int64)``.

    Raises:
        ValueError: empty batch, or items with different numbers of crops.
    """
    if not batch:
        raise ValueError("collate_multicrop got an empty batch")
    counts = {len(crops) for crops, _ in batch}
    if len(counts) != 1:
        raise ValueError(f"every sample needs the same number of crops, got {sorted(counts)}")
    crops = [torch.stack(views) for views in zip(*(item[0] for item in batch))]
    labels = torch.tensor([int(item[1]) for item in batch], dtype=torch.int64)
    return crops, labels


def collate_images(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack B decoded images of one shape (``data.augment_on=device``).

    Returns:
        ``(images (B, 3, S, S) as decoded, e.g. uint8, labels (B,) int64)``.

    Raises:
        ValueError: empty batch.
    """
    if not batch:
        raise ValueError("collate_images got an empty batch")
    images = torch.stack([image for image, _ in batch])
    labels = torch.tensor([int(label) for _, label in batch], dtype=torch.int64)
    return images, labels
