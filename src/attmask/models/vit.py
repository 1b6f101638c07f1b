"""Vision Transformer backbone with a learned mask token and cheap [CLS] attention.

Follows ViT (Dosovitskiy et al., 2021) with timm's parameter names, so ``state_dict()`` minus
``mask_token`` loads into ``timm``'s ``VisionTransformer`` with ``strict=True``. As in iBOT and
AttMask, hidden patches are replaced by the learned ``mask_token`` right after the patch
embedding, before [CLS] is prepended and position embeddings are added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, build_sincos2d_pos_embed, resample_abs_pos_embed, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from attmask.models.attention import Block
from attmask.models.conv_stem import ConvStemPatchEmbed


@dataclass
class ViTOutput:
    """Result of :meth:`VisionTransformer.forward`.

    Attributes:
        cls_token: ``(B, D)`` final-norm [CLS] token.
        patch_tokens: ``(B, N, D)`` final-norm patch tokens, row-major grid order.
        cls_attention: ``(B, heads, N)`` softmax attention of the [CLS] query over the patch
            tokens in the chosen block (CLS->CLS dropped, not renormalised), or None.
    """

    cls_token: torch.Tensor
    patch_tokens: torch.Tensor
    cls_attention: torch.Tensor | None = None


class VisionTransformer(nn.Module):
    """ViT encoder returning [CLS] and patch tokens (no classification head).

    ``stem_channels > 0`` puts a 3x3 convolution of that many channels before the patch
    projection (:class:`~attmask.models.conv_stem.ConvStemPatchEmbed`); 0 is the plain ViT.
    ``pos_embed_init``: ``normal`` (truncated normal, std 0.02, as DINO / iBOT / timm) or
    ``sincos`` (the 2-D sine-cosine table of MAE, still trained; [CLS]'s entry 0): position
    then weighs as much as content in every token from the first step, where a 0.02 table is
    about 30 times smaller than the patch embeddings and takes Adam thousands of steps to grow.
    ``pos_embed_resize``: how the position table is resized for another grid (local crops).
    ``timm`` (default): ``timm.layers.resample_abs_pos_embed``, bicubic with antialiasing to the
    exact target size. ``original``: the DINO / iBOT / AttMask code's ``interpolate_pos_encoding``,
    bicubic with ``scale_factor = (n + 0.1) / N`` and no antialiasing (``train.fidelity=original``).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        stem_channels: int = 0,
        pos_embed_init: str = "normal",
        pos_embed_resize: str = "timm",
    ) -> None:
        super().__init__()
        if pos_embed_resize not in ("timm", "original"):
            raise ValueError(f"unknown pos_embed_resize {pos_embed_resize!r}; choose timm or original")
        self.pos_embed_resize = pos_embed_resize
        if img_size % patch_size != 0:
            raise ValueError(f"img_size ({img_size}) must be divisible by patch_size ({patch_size})")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.stem_channels = stem_channels
        if stem_channels < 0:
            raise ValueError(f"stem_channels must be >= 0 (0 = no convolutional stem), got {stem_channels}")
        if stem_channels > 0:  # a 3x3 convolution before the patch projection (conv_stem.py)
            self.patch_embed: PatchEmbed = ConvStemPatchEmbed(img_size, patch_size, in_chans, embed_dim, stem_channels)
        else:
            self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)  # type: ignore[assignment]
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # stochastic depth decay rule
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.grad_checkpointing = False
        self._init_weights(pos_embed_init)

    def _init_weights(self, pos_embed_init: str) -> None:
        if pos_embed_init == "sincos":  # MAE's fixed table, here only the starting point
            table = build_sincos2d_pos_embed(list(self.grid_size), self.embed_dim)  # (N, D)
            with torch.no_grad():
                self.pos_embed.zero_()
                self.pos_embed[0, 1:] = table.reshape(-1, self.embed_dim)
        elif pos_embed_init == "normal":
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            raise ValueError(f"unknown pos_embed_init {pos_embed_init!r}; choose normal or sincos")
        trunc_normal_(self.cls_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return len(self.blocks)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter-name regexes grouping layers for layer-wise lr decay (timm's ViT rule).

        The stem (tokens, position and patch embedding) is layer 0, ``blocks.i`` is layer
        ``i + 1`` and the final norm joins the last block, as in ``timm``'s VisionTransformer;
        :func:`timm.optim.param_groups_layer_decay` reads it.

        Args:
            coarse: accepted for timm's interface; the grouping is the same.
        """
        return dict(
            stem=r"^cls_token|^pos_embed|^patch_embed|^mask_token",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters kept free of weight decay (tokens and position embedding)."""
        return {"pos_embed", "cls_token", "mask_token"}

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid ``(H / p, W / p)`` of an image; raises if a side is not a multiple of p."""
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the patch size "
                f"{self.patch_size}; resize or crop images to a multiple of {self.patch_size}"
            )
        return height // self.patch_size, width // self.patch_size

    def _position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == self.grid_size:
            return self.pos_embed
        if self.pos_embed_resize == "original":
            return self._original_resize(grid)
        return resample_abs_pos_embed(
            self.pos_embed, new_size=list(grid), old_size=list(self.grid_size), num_prefix_tokens=1
        )

    def _original_resize(self, grid: tuple[int, int]) -> torch.Tensor:
        """The original ``interpolate_pos_encoding``: table ``(1, 1 + N, D)`` -> ``(1, 1 + h*w, D)``.

        Bicubic ``F.interpolate`` of the ``(gh, gw)`` grid with ``scale_factor = (n + 0.1) / g``
        (DINO's "+0.1" against floor rounding of the output size), ``align_corners=False``, no
        antialiasing; the interpolation weights follow the scale factor, not the exact size ratio.
        """
        dim = self.embed_dim
        table = self.pos_embed[:, 1:].reshape(1, *self.grid_size, dim).permute(0, 3, 1, 2)
        scale = tuple((n + 0.1) / g for n, g in zip(grid, self.grid_size))
        resized = F.interpolate(table, scale_factor=scale, mode="bicubic")
        if tuple(resized.shape[-2:]) != tuple(grid):  # cannot happen for grids below 10x the table
            raise ValueError(f"position table resize gave {tuple(resized.shape[-2:])}, not {grid}")
        resized = resized.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat([self.pos_embed[:, :1], resized], dim=1)

    def embed(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch-embed, apply the mask token, prepend [CLS], add position embeddings.

        Args:
            images: ``(B, C, H, W)`` with H, W multiples of the patch size.
            mask: optional bool ``(B, N)``, True = replace by the mask token.

        Returns:
            Tokens ``(B, 1 + N, D)``.
        """
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images of shape (batch, {self.in_chans}, height, width), got {tuple(images.shape)}"
            )
        grid = self.grid_for(images.shape[-2], images.shape[-1])
        patches = self.patch_embed(images)  # (B, N, D)
        if mask is not None:
            if mask.shape != patches.shape[:2] or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be a bool tensor of shape {tuple(patches.shape[:2])}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            patches = torch.where(mask.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        return tokens + self._position_embedding(grid)

    def _block_index(self, block: int) -> int:
        index = block + self.depth if block < 0 else block
        if not 0 <= index < self.depth:
            raise ValueError(f"block index {block} out of range for a ViT of depth {self.depth}")
        return index

    def forward(
        self,
        images: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_cls_attention: bool = False,
        attention_block: int = -1,
    ) -> ViTOutput:
        """Encode images.

        Args:
            images: ``(B, C, H, W)``; any size divisible by the patch size.
            mask: optional bool ``(B, N)``, True = hidden (mask token).
            return_cls_attention: also return the [CLS] attention of ``attention_block``.
            attention_block: block whose attention is returned (default: last).

        Returns:
            :class:`ViTOutput`.
        """
        tokens = self.embed(images, mask)
        return self._encode(tokens, return_cls_attention, attention_block)

    def forward_visible(self, images: torch.Tensor, visible: torch.Tensor) -> ViTOutput:
        """Encode only the visible patches of each image (MAE's encoder, He et al. 2022 Sec. 3).

        Position embeddings are added before the hidden patches are dropped, so each kept token
        knows where it sits; [CLS] is kept.

        Args:
            images: ``(B, C, H, W)``.
            visible: ``(B, V)`` int64 indices of the kept patches (row-major), the same V per row.

        Returns:
            :class:`ViTOutput` with ``patch_tokens`` ``(B, V)`` in the order of ``visible``.
        """
        tokens = self.embed(images)  # (B, 1 + N, D)
        if visible.dim() != 2 or visible.shape[0] != tokens.shape[0]:
            raise ValueError(f"visible must be (batch, V) indices, got {tuple(visible.shape)}")
        index = visible.to(tokens.device).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
        kept = torch.gather(tokens[:, 1:], 1, index)  # (B, V, D)
        return self._encode(torch.cat([tokens[:, :1], kept], dim=1), False, -1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of keeping its activations (timm's
        method of the same name; ``train.activation_checkpointing``). Only while gradients are
        recorded: the teacher and evaluation run as before. Stochastic depth draws the same
        masks in the recomputation (the RNG state is replayed)."""
        self.grad_checkpointing = enable

    def _run_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def _encode(self, tokens: torch.Tensor, return_cls_attention: bool, attention_block: int) -> ViTOutput:
        """Run the blocks and the final norm on embedded tokens ``(B, 1 + N, D)``."""
        chosen = self._block_index(attention_block) if return_cls_attention else -1
        cls_attention = None
        for index, block in enumerate(self.blocks):
            if index == chosen:
                tokens, cls_row = block.forward_with_cls_attention(tokens)
                cls_attention = cls_row[:, :, 1:]  # drop CLS->CLS, no renormalisation
            else:
                tokens = self._run_block(block, tokens)
        tokens = self.norm(tokens)
        return ViTOutput(tokens[:, 0], tokens[:, 1:], cls_attention)

    def intermediate_layers(
        self, images: torch.Tensor, num_blocks: int = 4, mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Outputs of the last ``num_blocks`` blocks, each passed through the final norm.

        This is DINO's ``get_intermediate_layers``: the linear-probing protocol concatenates
        the [CLS] tokens ``out[:, 0]`` of the last 4 blocks.

        Returns:
            List (oldest first) of ``num_blocks`` tensors ``(B, 1 + N, D)``.
        """
        if not 1 <= num_blocks <= self.depth:
            raise ValueError(f"num_blocks must be in [1, {self.depth}], got {num_blocks}")
        tokens = self.embed(images, mask)
        outputs = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index >= self.depth - num_blocks:
                outputs.append(self.norm(tokens))
        return outputs
