"""Patch embedding with a small convolutional stem, optional (``model.stem_channels > 0``).

A plain ViT patch embedding is one linear map per patch. At small scale (28 px images, a 4x4
grid) a 3x3 convolution before it gives every token a local non-linear feature and the model a
locality prior, as the convolutional stems of Xiao et al. ("Early Convolutions Help Transformers
See Better", NeurIPS 2021) do. Here: ``Conv3x3(C -> c, stride 1) -> GELU -> Conv pxp (c -> D,
stride p)``: the grid is the same as without the stem, so masking, position embeddings and the
k-NN protocol do not change. One thing does: the 3x3 window reaches one pixel into each
neighbouring patch, so a token hidden by the mask still leaks its border pixels into the tokens
around it (masked image modeling gets a one-pixel hint; not measured).

It subclasses timm's ``PatchEmbed`` (the second convolution is timm's ``proj``), so timm's
``VisionTransformer(embed_layer=partial(ConvStemPatchEmbed, stem_channels=c))`` builds the same
model and loads the exported weights with ``strict=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import PatchEmbed
from torch import nn


class ConvStemPatchEmbed(PatchEmbed):
    """``(B, C, H, W) -> (B, H/p * W/p, D)`` through a 3x3 convolution, GELU and the patch projection.

    Args:
        stem_channels: channels ``c`` of the 3x3 convolution.
        img_size, patch_size, in_chans, embed_dim, **kwargs: as timm's ``PatchEmbed``.
    """

    def __init__(
        self,
        img_size: Any = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        stem_channels: int = 32,
        **kwargs: Any,
    ) -> None:
        if stem_channels < 1:
            raise ValueError(f"stem_channels must be >= 1, got {stem_channels}")
        kwargs.setdefault("strict_img_size", False)
        super().__init__(img_size, patch_size, stem_channels, embed_dim, **kwargs)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_channels, 3, padding=1), nn.GELU())
        self.stem_channels, self.image_channels = stem_channels, in_chans

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Stem, then timm's patch projection, flatten and norm."""
        return super().forward(self.stem(images))
