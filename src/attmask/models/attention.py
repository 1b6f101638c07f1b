"""Multi-head self-attention and the pre-norm transformer block, with timm's parameter names.

Every block runs :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels, no
``(N+1) x (N+1)`` matrix kept). A block asked for its [CLS] attention additionally computes
only the CLS query's row, ``softmax(q_cls K^T / sqrt(d))``: ``O(N)`` memory instead of
``O(N^2)`` (AttMask eq. 6, per head). (The original code's explicit ``softmax(q K^T) V``, which
keeps that matrix, lives only in the step benchmark's replica under ``benchmarks/``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        return q, k, v

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        batch, _, tokens, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, T, D)``. Returns ``(B, T, D)``."""
        q, k, v = self._split_heads(x)
        return self._merge(F.scaled_dot_product_attention(q, k, v))

    def forward_with_cls_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention output plus the [CLS] query's softmax row over all tokens.

        Args:
            x: ``(B, T, D)`` with the [CLS] token at index 0.

        Returns:
            ``(out (B, T, D), cls_row (B, heads, T))``; ``cls_row[..., 0]`` is CLS->CLS.
        """
        q, k, v = self._split_heads(x)
        out = F.scaled_dot_product_attention(q, k, v)
        with torch.autocast(device_type=x.device.type, enabled=False):  # scores in fp32
            logits = (q[:, :, :1].float() * self.scale) @ k.float().transpose(-2, -1)  # (B, h, 1, T)
            cls_row = logits.softmax(dim=-1)[:, :, 0]
        return self._merge(out), cls_row


class Block(nn.Module):
    """Pre-norm transformer block ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (ViT)."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, T, D)``. Returns ``(B, T, D)``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_with_cls_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the [CLS] attention row ``(B, heads, T)``."""
        attended, cls_row = self.attn.forward_with_cls_attention(self.norm1(x))
        x = x + self.drop_path(attended)
        return x + self.drop_path(self.mlp(self.norm2(x))), cls_row
