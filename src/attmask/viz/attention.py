"""Tensor-in, array-out helpers for [CLS] attention figures (AttMask Fig. A1, DINO Fig. 3).

No matplotlib here: these return tensors / arrays that ``viz.render`` draws and tests check.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Distinct colours (RGB in [0, 1]) for per-head thresholded maps, cycled beyond 12 heads.
HEAD_COLOURS = np.array(
    [
        [0.90, 0.10, 0.10],
        [0.10, 0.55, 0.95],
        [0.15, 0.75, 0.25],
        [0.95, 0.75, 0.10],
        [0.60, 0.25, 0.80],
        [0.05, 0.80, 0.80],
        [0.95, 0.45, 0.10],
        [0.90, 0.30, 0.65],
        [0.55, 0.80, 0.10],
        [0.35, 0.35, 0.95],
        [0.65, 0.45, 0.25],
        [0.50, 0.50, 0.50],
    ]
)


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor, block: int = -1) -> torch.Tensor:
    """[CLS] attention of every head over the patches of one block.

    Args:
        model: :class:`~attmask.models.VisionTransformer` (eval mode recommended).
        images: ``(B, C, H, W)``.
        block: block index (negative counts from the end; -1 = last, the one AttMask uses).

    Returns:
        ``(B, heads, N)`` float32 softmax weights of the [CLS] query over the N patch tokens.
    """
    output = model(images, return_cls_attention=True, attention_block=block)
    return output.cls_attention.float()


def threshold_by_mass(attention: torch.Tensor, mass: float = 0.6) -> torch.Tensor:
    """The fewest patches whose attention sums to at least ``mass`` of the row's total.

    DINO's ``visualize_attention.py`` thresholding: patches are taken in decreasing order of
    attention until the kept share of the total reaches ``mass`` (ties: lower index first).

    Args:
        attention: ``(..., N)`` non-negative weights.
        mass: share of the total to keep, in ``(0, 1]``.

    Returns:
        bool ``(..., N)``, True = kept.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    weights = attention.double()
    order = torch.sort(weights, dim=-1, descending=True, stable=True).indices
    sorted_weights = weights.gather(-1, order)
    share = sorted_weights.cumsum(-1) / sorted_weights.sum(-1, keepdim=True).clamp_min(1e-300)
    # keep position i if the share BEFORE it is still below the target
    before = torch.cat([torch.zeros_like(share[..., :1]), share[..., :-1]], dim=-1)
    keep_sorted = before < mass - 1e-12
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def head_colour_map(kept: torch.Tensor, grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Overlay of per-head kept patches, each head in its own colour.

    Args:
        kept: bool ``(heads, N)`` from :func:`threshold_by_mass`.
        grid: patch grid ``(h, w)``.
        patch_size: pixels per patch side.

    Returns:
        ``(h * p, w * p, 4)`` RGBA in ``[0, 1]``: the mean colour of the heads keeping a pixel,
        alpha 0.6 where any head keeps it and 0 elsewhere.
    """
    heads = kept.shape[0]
    colours = torch.from_numpy(HEAD_COLOURS[np.arange(heads) % len(HEAD_COLOURS)]).float()  # (heads, 3)
    counts = kept.float().sum(0)  # (N,)
    mixed = (kept.float().T @ colours) / counts.clamp_min(1)[:, None]  # (N, 3)
    rgba = torch.cat([mixed, (counts > 0).float()[:, None] * 0.6], dim=1).reshape(*grid, 4)
    pixels = rgba.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)
    return pixels.numpy()
