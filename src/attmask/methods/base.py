"""Shared pieces of the self-distillation methods: encoder (backbone + head) and step output."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from attmask.models import VisionTransformer


@dataclass
class StepOutput:
    """What ``training_step`` returns.

    Attributes:
        loss: scalar to back-propagate.
        logs: detached scalar tensors (no host sync until the trainer logs them).
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class EncoderOutput:
    """Head outputs of one encoder pass over the global (and local) crops.

    Attributes:
        cls: ``(G*B, K)`` head output of the global views' [CLS], view-major.
        patch: ``(G*B, N, K_patch)`` head output of the global views' patch tokens, or None.
        local_cls: ``(L*B, K)`` head output of the local crops' [CLS], crop-major, or None.
        cls_attention: ``(G*B, heads, N)`` last-block [CLS] attention of the global views, or None.
        embedding: ``(G*B, D)`` backbone [CLS] token of the global views (before the head).
    """

    cls: torch.Tensor
    patch: torch.Tensor | None = None
    local_cls: torch.Tensor | None = None
    cls_attention: torch.Tensor | None = None
    embedding: torch.Tensor | None = None


class Encoder(nn.Module):
    """Backbone plus projection head(s), run once per crop resolution (DINO's MultiCropWrapper).

    Args:
        backbone: the ViT.
        head: head for [CLS] tokens (and patch tokens when ``patch_head`` is None).
        patch_head: separate head for patch tokens, or None to share ``head``.
    """

    def __init__(
        self, backbone: VisionTransformer, head: nn.Module, patch_head: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.patch_head = patch_head

    def forward(
        self,
        global_views: torch.Tensor,
        masks: torch.Tensor | None = None,
        local_views: list[torch.Tensor] | None = None,
        with_patches: bool = True,
        return_cls_attention: bool = False,
    ) -> EncoderOutput:
        """Encode the global views (optionally masked) and the local views.

        Args:
            global_views: ``(G*B, C, H, W)``, the global crops concatenated view-major.
            masks: bool ``(G*B, N)``, True = replace by the mask token; None = no masking.
            local_views: local crops ``(B, C, h, w)`` each; crops of one resolution share a pass.
            with_patches: run the head on patch tokens (iBOT) or not (DINO).
            return_cls_attention: also return the global views' last-block [CLS] attention.

        Returns:
            :class:`EncoderOutput`.
        """
        out = self.backbone(global_views, mask=masks, return_cls_attention=return_cls_attention)
        patch = None
        if with_patches:
            patch = (self.patch_head or self.head)(out.patch_tokens)
        local_cls = None
        if local_views:
            local_cls = torch.cat([self.head(t) for t in self._local_cls_tokens(local_views)])
        return EncoderOutput(self.head(out.cls_token), patch, local_cls, out.cls_attention, out.cls_token)

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


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / compiled wrapper, else the module itself."""
    inner = getattr(module, "module", module)
    return getattr(inner, "_orig_mod", inner)
