"""SimMIM's one-layer prediction head (Xie et al., 2022, Sec. 3.3 "prediction head").

A 1x1 convolution maps every patch token to the ``p * p * C`` pixels of its patch and a pixel
shuffle lays them out as an image: a linear layer per token, as in SimMIM's ViT code
(``Conv2d(D, stride**2 * 3, 1)`` + ``PixelShuffle(stride)``).
"""

from __future__ import annotations

import torch
from torch import nn


class SimMIMHead(nn.Module):
    """Patch tokens on their grid -> image.

    Args:
        embed_dim: encoder width D.
        patch_size: pixels per token side p.
        in_chans: image channels C.
    """

    def __init__(self, embed_dim: int, patch_size: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size, self.in_chans = patch_size, in_chans
        self.projection = nn.Conv2d(embed_dim, patch_size * patch_size * in_chans, kernel_size=1)
        self.shuffle = nn.PixelShuffle(patch_size)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Predict every pixel.

        Args:
            patch_tokens: ``(B, N, D)`` encoder output without [CLS], row-major.
            grid: patch grid ``(rows, cols)``, N = rows * cols.

        Returns:
            ``(B, C, rows * p, cols * p)`` reconstruction.
        """
        rows, cols = grid
        batch, num_tokens, dim = patch_tokens.shape
        if num_tokens != rows * cols:
            raise ValueError(f"{num_tokens} patch tokens do not fit a {rows}x{cols} grid")
        x = patch_tokens.transpose(1, 2).reshape(batch, dim, rows, cols)  # (B, D, rows, cols)
        return self.shuffle(self.projection(x))  # (B, C, H, W)
