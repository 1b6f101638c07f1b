"""SimMIM (Xie et al., 2022): hide patches with a mask token, regress their raw pixels with a
linear head and an L1 loss on the hidden pixels only.

Unlike MAE, the encoder sees every token (hidden ones are the learned mask token), so any
masking strategy works: ``block``, ``random`` (SimMIM's choice), and the AttMask strategies
``attmask_high`` / ``attmask_low`` / ``attmask_hint``, which rank cells by the [CLS] attention
of an EMA copy of the encoder (it exists only as that attention source). Masks are drawn on
cells of ``mask_patch_size`` pixels (SimMIM Sec. 3.1: 32 px on a 16 px patch grid) and
spread over the tokens they cover.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from attmask.heads import SimMIMHead
from attmask.losses import masked_l1_loss
from attmask.masking import MaskingStrategy, coarse_grid, expand_mask, pool_scores
from attmask.methods.base import BackboneOnly, PretrainingMethod, Reconstruction, StepOutput
from attmask.models import VisionTransformer
from attmask.models.patches import mask_to_pixels


class SimMIMModel(nn.Module):
    """Encoder (ViT on all tokens, hidden ones replaced by its mask token) + linear head.

    Args:
        backbone: the ViT encoder; its ``mask_token`` is re-initialised with std 0.02 (SimMIM's
            initialisation; iBOT's zeros would make every hidden token start as its position).
        head: :class:`SimMIMHead` with the backbone's width and patch size.
    """

    def __init__(self, backbone: VisionTransformer, head: SimMIMHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        trunc_normal_(self.backbone.mask_token, std=0.02)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``images``.

        Args:
            images: ``(B, C, H, W)``.
            masks: bool ``(B, N)``, True = the token is replaced by the mask token.

        Returns:
            ``(B, C, H, W)`` predicted pixels (of every patch; the loss reads the hidden ones).
        """
        return self.predict(images, masks)

    def predict(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` under a name subclasses keep (LUT-SimMIM's forward does more)."""
        encoded = self.backbone(images, mask=masks)
        return self.head(encoded.patch_tokens, self.backbone.grid_for(*images.shape[-2:]))


def hidden_pixels(backbone: VisionTransformer, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Bool ``(B, 1, H, W)`` hidden pixels of token masks ``(B, N)`` on ``images``' patch grid."""
    return mask_to_pixels(masks, backbone.patch_size, backbone.grid_for(*images.shape[-2:]))


def fill_hidden_pixels(
    images: torch.Tensor, masks: torch.Tensor, prediction: torch.Tensor, backbone: VisionTransformer
) -> Reconstruction:
    """Visible pixels of ``images`` kept, hidden ones taken from ``prediction`` ``(B, C, H, W)``."""
    output = torch.where(hidden_pixels(backbone, masks, images), prediction.to(images.dtype), images)
    return Reconstruction(images, masks, output, backbone.patch_size)


class SimMIM(PretrainingMethod):
    """SimMIM: ``L = weight * sum |x - y| * M / (sum M) / C`` over hidden pixels (SimMIM eq. 1).

    Args:
        student: :class:`SimMIMModel`.
        teacher: EMA :class:`BackboneOnly` scoring tokens for attention strategies, else None.
        masking: any strategy; it draws on the grid of ``mask_factor x mask_factor`` cells.
        seed: masking generator seed.
        mask_factor: tokens per masking-cell side, ``mask_patch_size / patch_size``.
        weight: loss weight.
    """

    evaluated_branch = "student"
    reconstructs = True

    def __init__(
        self,
        student: SimMIMModel,
        teacher: BackboneOnly | None,
        masking: MaskingStrategy,
        seed: int = 0,
        mask_factor: int = 1,
        weight: float = 1.0,
    ) -> None:
        super().__init__(student, teacher, masking, seed)
        self.mask_factor, self.weight = mask_factor, weight

    def draw_masks(self, views: torch.Tensor, cls_attention: torch.Tensor | None = None) -> torch.Tensor:
        """Token masks ``(B, N)`` of ``views`` ``(B, C, H, W)``, drawn on the coarse grid of cells
        (attention strategies rank cells by the teacher's attention summed over each cell)."""
        grid = self.student.backbone.grid_for(*views.shape[-2:])
        given = self.given_masks(views.shape[0], grid[0] * grid[1], views.device)
        if given is not None:
            return given
        cells = coarse_grid(grid, self.mask_factor)
        scores = self.attention_scores(views, cls_attention)
        if scores is not None:
            scores = pool_scores(scores, grid, self.mask_factor)
        masks = self.masking(views.shape[0], cells, scores, self.generator)  # (B, n)
        return expand_mask(masks, cells, self.mask_factor).to(views.device)

    def pixel_masks(self, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Bool ``(B, 1, H, W)`` hidden pixels of token masks ``(B, N)`` on ``images``' grid."""
        return hidden_pixels(self.student.backbone, masks, images)

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One SimMIM step on ``[images (B, C, H, W)]`` (extra views are ignored)."""
        images = crops[0]
        masks = self.draw_masks(images)
        prediction = self._student_runner(images, masks)
        loss = self.weight * masked_l1_loss(prediction, images, self.pixel_masks(masks, images))
        return StepOutput(loss, {"loss": loss.detach(), "mask_fraction": masks.float().mean()})

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """Masks and predictions of ``images``: visible pixels kept, hidden pixels predicted."""
        masks = self.draw_masks(images)
        return fill_hidden_pixels(images, masks, self.student(images, masks), self.student.backbone)
