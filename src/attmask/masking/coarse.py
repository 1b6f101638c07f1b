"""Masks on a coarser grid than the ViT's patches (SimMIM, Xie et al., 2022, Sec. 3.1).

SimMIM hides square cells of ``mask_patch_size`` pixels (32 px on a 16 px patch grid: each cell
covers ``factor x factor = 2 x 2`` tokens). A strategy draws the mask on the coarse grid of
cells and :func:`expand_mask` spreads it over the tokens. Attention strategies rank cells by
:func:`pool_scores`, the [CLS] attention summed over the tokens of each cell.
"""

from __future__ import annotations

import torch

from attmask.masking.ratio import Grid, grid_shape


def coarse_grid(grid: Grid, factor: int) -> tuple[int, int]:
    """The grid of cells of ``factor x factor`` tokens: ``(rows / factor, cols / factor)``.

    Args:
        grid: patch grid ``(rows, cols)`` (or ``n`` for a square one).
        factor: tokens per cell side, ``mask_patch_size / patch_size``.

    Raises:
        ValueError: ``factor`` < 1, or a grid side not divisible by ``factor``.
    """
    rows, cols = grid_shape(grid)
    if factor < 1:
        raise ValueError(
            f"the mask cell must cover at least one token, got factor {factor}; "
            "recon.mask_patch_size must be a multiple of model.patch_size"
        )
    if rows % factor or cols % factor:
        raise ValueError(
            f"patch grid {rows}x{cols} is not divisible into cells of {factor}x{factor} "
            f"tokens: the image side must be a multiple of recon.mask_patch_size "
            f"({factor} patches)"
        )
    return rows // factor, cols // factor


def expand_mask(mask: torch.Tensor, grid: Grid, factor: int) -> torch.Tensor:
    """Spread a cell mask over the tokens: each cell hides its ``factor x factor`` tokens.

    Args:
        mask: bool ``(B, n)`` on the coarse ``grid`` (row-major), True = hidden.
        grid: coarse grid ``(rows, cols)``, n = rows * cols.
        factor: tokens per cell side.

    Returns:
        Bool ``(B, N)`` on the token grid ``(rows * factor, cols * factor)``, row-major.
    """
    rows, cols = grid_shape(grid)
    if mask.dim() != 2 or mask.shape[1] != rows * cols:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit a {rows}x{cols} coarse grid")
    cells = mask.reshape(mask.shape[0], rows, cols)
    tokens = cells.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)  # (B, R, C)
    return tokens.reshape(mask.shape[0], rows * cols * factor * factor)


def pool_scores(scores: torch.Tensor, grid: Grid, factor: int) -> torch.Tensor:
    """Attention of each cell: the sum of its tokens' scores (AttMask on the coarse grid).

    Args:
        scores: ``(B, N)`` per-token scores on the token ``grid`` (row-major).
        grid: token grid ``(rows, cols)``, N = rows * cols, both divisible by ``factor``.
        factor: tokens per cell side.

    Returns:
        ``(B, n)`` per-cell scores on :func:`coarse_grid` ``(grid, factor)``, row-major.
    """
    rows, cols = grid_shape(grid)
    cell_rows, cell_cols = coarse_grid((rows, cols), factor)
    if scores.dim() != 2 or scores.shape[1] != rows * cols:
        raise ValueError(f"scores of shape {tuple(scores.shape)} do not fit a {rows}x{cols} grid")
    x = scores.reshape(scores.shape[0], cell_rows, factor, cell_cols, factor)
    return x.sum(dim=(2, 4)).reshape(scores.shape[0], cell_rows * cell_cols)
