"""MAE's lightweight transformer decoder (He et al., 2022, Sec. 3 "MAE decoder").

The encoder's visible tokens are projected to the decoder width, the hidden positions are
filled with a shared learned mask token, fixed 2-D sin-cos position embeddings are added, and
a few transformer blocks predict every patch's pixels.
"""

from __future__ import annotations

import torch
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from torch import nn

from attmask.models.attention import Block


class MAEDecoder(nn.Module):
    """Tokens of the visible patches -> pixels of every patch.

    Args:
        embed_dim: encoder width D.
        decoder_dim: decoder width D_d.
        depth: decoder blocks.
        num_heads: decoder attention heads.
        patch_pixels: outputs per patch, ``p * p * C``.
    """

    def __init__(self, embed_dim: int, decoder_dim: int, depth: int, num_heads: int, patch_pixels: int) -> None:
        super().__init__()
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.blocks = nn.ModuleList(Block(decoder_dim, num_heads, 4.0, True) for _ in range(depth))
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.pred = nn.Linear(decoder_dim, patch_pixels)
        self._positions: dict[tuple, torch.Tensor] = {}  # not state: recomputed from the grid
        trunc_normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def _position_embedding(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Fixed 2-D sin-cos embeddings ``(N, D_d)`` of ``grid``, built once per grid and device."""
        key = (tuple(grid), str(device))
        if key not in self._positions:
            self._positions[key] = build_sincos2d_pos_embed(list(grid), self.mask_token.shape[-1], device=device)
        return self._positions[key]

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Predict all patches.

        Args:
            tokens: ``(B, 1 + V, D)`` encoder output, [CLS] first, then the visible patches.
            visible: ``(B, V)`` their positions in the ``grid`` (row-major).
            grid: patch grid ``(rows, cols)``, N = rows * cols.

        Returns:
            ``(B, N, p*p*C)`` pixel predictions, row-major.
        """
        x = self.decoder_embed(tokens)  # (B, 1 + V, D_d)
        batch, num_tokens = x.shape[0], grid[0] * grid[1]
        full = self.mask_token.to(x.dtype).expand(batch, num_tokens, -1).clone()  # (B, N, D_d)
        index = visible.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])
        full = full.scatter(1, index, x[:, 1:])
        position = self._position_embedding(grid, x.device).to(x.dtype)
        x = torch.cat([x[:, :1], full + position.unsqueeze(0)], dim=1)  # [CLS]: no position (MAE)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]
