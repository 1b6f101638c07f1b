"""MST's global image decoder (Li et al., "MST: Masked Self-Supervised Transformer", NeurIPS 2021).

MST restores the *whole* image of each global view (masked and visible patches alike) from the
student's patch tokens with a small convolutional decoder, so the tokens keep the spatial
layout of the image. The exact layers are this project's choice (MST published no code):

* the patch tokens ``(B, N, D)`` are laid out on their grid as a feature map ``(B, D, rows, cols)``;
* while the remaining upsampling factor ``f`` (initially the patch size) is even, one stage of
  ``ConvTranspose2d(kernel=2, stride=2)`` + ``GroupNorm`` + ``GELU`` doubles the resolution and
  halves the channels (never below ``min_channels``);
* a last ``ConvTranspose2d(kernel=f, stride=f)`` maps to ``in_chans`` channels at full resolution
  (``f = 1`` for a power-of-two patch, the odd part otherwise: 7 for 7 px patches).

Patch 16: 384 -> 192 -> 96 -> 48 -> 24 channels at 2x, 4x, 8x, 16x, then a 1x1 projection to
RGB. Patch 4: two stages, then 1x1. Patch 7: no stage, one 7x7 stride-7 transposed conv (a
linear per-patch decoder, as SimMIM's). The norm is GroupNorm, not BatchNorm: a per-sample
norm gives the same result whatever the batch is split into (DDP ranks, gradient
accumulation, figures in eval mode).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups``."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class MSTDecoder(nn.Module):
    """Patch tokens on their grid -> image, by transposed-convolution upsampling.

    Args:
        embed_dim: D, width of the encoder's patch tokens.
        patch_size: p, pixels per token side (the total upsampling factor).
        in_chans: C, channels of the restored image.
        min_channels: the channel halving stops here.

    Example:
        >>> decoder = MSTDecoder(384, 16)
        >>> decoder(torch.randn(2, 196, 384), (14, 14)).shape
        torch.Size([2, 3, 224, 224])
    """

    def __init__(self, embed_dim: int, patch_size: int, in_chans: int = 3, min_channels: int = 16) -> None:
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        self.embed_dim, self.patch_size = embed_dim, patch_size
        stages, channels, factor = [], embed_dim, patch_size
        while factor % 2 == 0:
            out = max(channels // 2, min(min_channels, channels))
            stages += [
                nn.ConvTranspose2d(channels, out, kernel_size=2, stride=2),
                nn.GroupNorm(_groups(out), out),
                nn.GELU(),
            ]
            channels, factor = out, factor // 2
        self.stages = nn.Sequential(*stages)
        self.project = nn.ConvTranspose2d(channels, in_chans, kernel_size=factor, stride=factor)
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                nn.init.zeros_(module.bias)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Restore the image.

        Args:
            patch_tokens: ``(B, N, D)`` in row-major grid order, N = rows * cols.
            grid: ``(rows, cols)``.

        Returns:
            ``(B, C, rows * p, cols * p)``.
        """
        batch, num_tokens, dim = patch_tokens.shape
        rows, cols = grid
        if num_tokens != rows * cols or dim != self.embed_dim:
            raise ValueError(
                f"patch_tokens must be (B, {rows * cols}, {self.embed_dim}) for grid {grid}, "
                f"got {tuple(patch_tokens.shape)}"
            )
        x = patch_tokens.transpose(1, 2).reshape(batch, dim, rows, cols)  # (B, D, rows, cols)
        return self.project(self.stages(x))  # (B, C, rows * p, cols * p)
