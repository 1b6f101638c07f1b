"""Tensor-in, array-out helpers for attention and mask figures (AttMask Fig. 1 / A2)."""

from __future__ import annotations

import numpy as np
import torch

from attmask.masking import attmask_high, attmask_hint, attmask_low, blockwise_mask, random_mask

#: Column order of the mask figure, as in the paper.
FIGURE_STRATEGIES = ("block", "random", "attmask_high", "attmask_hint", "attmask_low")

HIDDEN_GREY = 0.5


def upsample_patches(values: np.ndarray | torch.Tensor, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Repeat per-patch values ``(N,)`` into a pixel map ``(H * p, W * p)`` (nearest)."""
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    array = array.reshape(grid)
    return np.kron(array, np.ones((patch_size, patch_size), dtype=array.dtype))


def denormalize(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """A normalised ``(C, H, W)`` image back to a displayable ``(H, W, C)`` float32 array in ``[0, 1]``.

    Inverse of ``(pixels - mean) / std`` per channel, then clipped to ``[0, 1]``.
    """
    scale = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    shift = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    pixels = image.detach().float().cpu() * scale + shift
    return pixels.clamp(0.0, 1.0).permute(1, 2, 0).numpy()


def attention_heatmap(scores: torch.Tensor, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Per-patch attention ``(N,)`` or ``(heads, N)`` (head-mean) as a ``[0, 1]`` pixel map."""
    values = scores.float().mean(0) if scores.dim() == 2 else scores.float()
    values = values - values.min()
    values = values / values.max().clamp_min(1e-12)
    return upsample_patches(values, grid, patch_size).astype(np.float32)


def overlay_mask(image: np.ndarray, mask: torch.Tensor, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Grey out hidden patches of an ``(H, W, 3)`` image in ``[0, 1]``.

    Pixels of hidden patches become exactly ``HIDDEN_GREY``; the others are unchanged.
    Returns a new array; ``image`` is not modified.
    """
    hidden = upsample_patches(mask.bool(), grid, patch_size).astype(bool)
    if hidden.shape != image.shape[:2]:
        raise ValueError(f"mask covers {hidden.shape} pixels but the image is {image.shape[:2]}")
    out = image.copy()
    out[hidden] = HIDDEN_GREY
    return out


def strategy_masks(
    scores: torch.Tensor,
    grid: tuple[int, int],
    ratios: list[float],
    generator: torch.Generator,
    show_ratio: float = 0.03,
    show_max: float = 0.1,
) -> dict[str, list[torch.Tensor]]:
    """One ``(N,)`` mask per strategy and ratio for a single image.

    Args:
        scores: ``(N,)`` head-mean [CLS] attention of the image.
        grid: patch grid.
        ratios: masking ratios (rows of the figure).
        generator: draws for block, random and hint.
        show_ratio: hint ratio (capped below each ratio), show_max: ``s_max``.

    Returns:
        ``{strategy: [mask for each ratio]}`` in :data:`FIGURE_STRATEGIES` order.
    """
    row = scores[None]
    masks: dict[str, list[torch.Tensor]] = {name: [] for name in FIGURE_STRATEGIES}
    for ratio in ratios:
        hint = min(show_ratio, show_max, ratio / 2)
        masks["block"].append(blockwise_mask(1, grid, ratio, generator)[0])
        masks["random"].append(random_mask(1, grid, ratio, generator)[0])
        masks["attmask_high"].append(attmask_high(row, ratio)[0])
        masks["attmask_hint"].append(attmask_hint(row, ratio, hint, show_max, generator)[0])
        masks["attmask_low"].append(attmask_low(row, ratio)[0])
    return masks
