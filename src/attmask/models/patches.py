"""Images as sequences of flattened patches and back (MAE's ``patchify`` / ``unpatchify``)."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p*p*C)``, patches row-major, pixels ``(p, p, C)`` inside a patch.

    Raises:
        ValueError: H or W not a multiple of ``patch_size``.
    """
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not divisible by the patch size {patch_size}")
    rows, cols = height // patch_size, width // patch_size
    x = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    x = torch.einsum("bchpwq->bhwpqc", x)
    return x.reshape(batch, rows * cols, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, p*p*C)`` on a ``(rows, cols)`` grid -> ``(B, C, H, W)``."""
    rows, cols = grid
    batch = patches.shape[0]
    if patches.shape[1] != rows * cols or patches.shape[2] != patch_size * patch_size * channels:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not fit a {rows}x{cols} grid of "
            f"{patch_size}px patches with {channels} channels"
        )
    x = patches.reshape(batch, rows, cols, patch_size, patch_size, channels)
    x = torch.einsum("bhwpqc->bchpwq", x)
    return x.reshape(batch, channels, rows * patch_size, cols * patch_size)


def mask_to_pixels(mask: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Token mask ``(B, N)`` -> pixel mask ``(B, 1, H, W)`` (each token covers a p x p square)."""
    rows, cols = grid
    pixels = mask.reshape(mask.shape[0], 1, rows, cols)
    return pixels.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
