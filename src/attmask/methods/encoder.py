"""The encoder of the self-distillation methods: backbone + head(s), one forward per crop resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attmask.models import VisionTransformer


@dataclass
class EncoderOutput:
    """Head outputs of one encoder pass over the global (and local) crops.

    Attributes:
        cls: ``(G*B, K)`` head output of the global views' [CLS], view-major.
        patch: ``(G*B, N, K_patch)`` head output of the global views' patch tokens, or None.
        selected_patch: ``(M, K_patch)`` head output of only the patch tokens picked by
            ``patch_index`` (then ``patch`` is None), or None.
        local_cls: ``(L*B, K)`` head output of the local crops' [CLS], crop-major, or None.
        cls_attention: ``(G*B, heads, N)`` last-block [CLS] attention of the global views, or None.
        embedding: ``(G*B, D)`` backbone [CLS] token of the global views (before the head).
        reconstruction: ``(G*B, C, H, W)`` the decoder's image of each global view, or None.
    """

    cls: torch.Tensor
    patch: torch.Tensor | None = None
    selected_patch: torch.Tensor | None = None
    local_cls: torch.Tensor | None = None
    cls_attention: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


class Encoder(nn.Module):
    """Backbone plus projection head(s), run once per crop resolution (DINO's MultiCropWrapper).

    Args:
        backbone: the ViT.
        head: head for [CLS] tokens (and patch tokens when ``patch_head`` is None).
        patch_head: separate head for patch tokens, or None to share ``head``.
        decoder: ``(patch tokens (B, N, D), grid) -> image (B, C, H, W)`` (MST's image decoder),
            or None. It runs inside every forward (so a DDP wrapper of the encoder covers it) and
            is not one of the token-wise heads checked for ``patch_index``.
        patch_outputs: run a head on the patch tokens (iBOT) or not (DINO, MST).

    What a forward fills is fixed by how the encoder was built (``patch`` with ``patch_outputs``,
    ``reconstruction`` with a ``decoder``) plus two requests: the [CLS] attention (it costs a
    softmax row) and ``patch_index`` (``selected_patch`` then replaces ``patch``).
    """

    def __init__(
        self,
        backbone: VisionTransformer,
        head: nn.Module,
        patch_head: nn.Module | None = None,
        decoder: nn.Module | None = None,
        patch_outputs: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.patch_head = patch_head
        self.decoder = decoder
        self.patch_outputs = patch_outputs
        heads = [head] if patch_head is None else [head, patch_head]
        self._token_wise_heads = not any(  # a head over a subset of tokens gives the same rows
            isinstance(m, nn.modules.batchnorm._BatchNorm) for h in heads for m in h.modules()
        )

    def forward(
        self,
        global_views: torch.Tensor,
        masks: torch.Tensor | None = None,
        local_views: list[torch.Tensor] | None = None,
        return_cls_attention: bool = False,
        patch_index: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode the global views (optionally masked) and the local views.

        Args:
            global_views: ``(G*B, C, H, W)``, the global crops concatenated view-major.
            masks: bool ``(G*B, N)``, True = replace by the mask token; None = no masking.
            local_views: local crops ``(B, C, h, w)`` each; crops of one resolution share a pass.
            return_cls_attention: also return the global views' last-block [CLS] attention.
            patch_index: ``(M,)`` flat indices into the ``G*B*N`` patch tokens (row-major): run
                the patch head on these tokens only (``selected_patch``) instead of all of them.
                The head must treat tokens independently (no BatchNorm), as DINOHead does.

        Returns:
            :class:`EncoderOutput`: ``reconstruction`` ``(G*B, C, H, W)``, the decoder's image of
            each (masked) global view, when the encoder has a decoder.
        """
        if patch_index is not None and not self.patch_outputs:
            raise ValueError("patch_index needs an Encoder built with patch_outputs=True")
        out = self.backbone(global_views, mask=masks, return_cls_attention=return_cls_attention)
        reconstruction = None
        if self.decoder is not None:
            grid = self.backbone.grid_for(*global_views.shape[-2:])
            reconstruction = self.decoder(out.patch_tokens, grid)  # (G*B, C, H, W)
        cls, patch, selected = None, None, None
        if patch_index is not None:
            cls, selected = self._selected_heads(out.cls_token, out.patch_tokens, patch_index)
        elif self.patch_outputs:
            patch = (self.patch_head or self.head)(out.patch_tokens)
        if cls is None:
            cls = self.head(out.cls_token)
        local_cls = None
        if local_views:
            local_cls = torch.cat([self.head(t) for t in self._local_cls_tokens(local_views)])
        return EncoderOutput(
            cls=cls,
            patch=patch,
            selected_patch=selected,
            local_cls=local_cls,
            cls_attention=out.cls_attention,
            embedding=out.cls_token,
            reconstruction=reconstruction,
        )

    def _selected_heads(
        self, cls_token: torch.Tensor, patch_tokens: torch.Tensor, patch_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs of the [CLS] ``(R, K)`` and of the selected patch tokens ``(M, K_patch)``.

        A shared head runs once over ``R + M`` rows ([CLS] first), a separate one twice.
        """
        if not self._token_wise_heads:
            raise ValueError("patch_index needs heads without BatchNorm (rows would see other rows)")
        selected = patch_tokens.flatten(0, 1).index_select(0, patch_index)  # (M, D)
        if self.patch_head is not None:
            return self.head(cls_token), self.patch_head(selected)
        both = self.head(torch.cat([cls_token, selected]))  # (R + M, K)
        return both[: cls_token.shape[0]], both[cls_token.shape[0] :]

    def _local_cls_tokens(self, local_views: list[torch.Tensor]) -> list[torch.Tensor]:
        """[CLS] tokens of the local crops, one backbone pass per run of equal resolution."""
        tokens, start = [], 0
        while start < len(local_views):
            end = start
            while end < len(local_views) and local_views[end].shape == local_views[start].shape:
                end += 1
            tokens.append(self.backbone(torch.cat(local_views[start:end])).cls_token)
            start = end
        return tokens
