"""MAE (He et al., 2022): hide most patches, encode only the visible ones, predict the pixels.

Masking is pluggable: any strategy that hides the same number of tokens in every image picks
the hidden set (``random`` is MAE; ``attmask_high`` / ``attmask_low`` rank tokens by the [CLS]
attention of an EMA copy of the encoder, which then exists only as the attention source).
"""

from __future__ import annotations

import torch
from torch import nn

from attmask.heads import MAEDecoder
from attmask.losses import mae_loss, normalized_patches
from attmask.masking import MaskingStrategy, visible_index
from attmask.methods.base import BackboneOnly, PretrainingMethod, Reconstruction, StepOutput
from attmask.models import VisionTransformer, patchify, unpatchify


class MaskedAutoencoder(nn.Module):
    """Encoder (ViT on visible tokens) + decoder: ``(images, masks) -> patch predictions``.

    Args:
        backbone: the ViT encoder.
        decoder: :class:`MAEDecoder` predicting ``p * p * C`` values per patch.
    """

    def __init__(self, backbone: VisionTransformer, decoder: MAEDecoder) -> None:
        super().__init__()
        self.backbone, self.decoder = backbone, decoder
        # The encoder drops hidden tokens, so its mask token never gets a gradient; frozen, DDP
        # (no unused-parameter search) and AdamW leave it alone. The decoder has its own.
        backbone.mask_token.requires_grad_(False)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the visible patches, decode every patch.

        Args:
            images: ``(B, C, H, W)``.
            masks: bool ``(B, N)``, True = hidden; the same count per row.

        Returns:
            ``(prediction (B, N, p*p*C), visible patch tokens (B, V, D))``.
        """
        visible = visible_index(masks)
        encoded = self.backbone.forward_visible(images, visible)
        tokens = torch.cat([encoded.cls_token.unsqueeze(1), encoded.patch_tokens], dim=1)
        grid = self.backbone.grid_for(*images.shape[-2:])
        return self.decoder(tokens, visible, grid), encoded.patch_tokens


class MAE(PretrainingMethod):
    """Masked autoencoder: ``L = mean over hidden patches of ||pred - target||^2`` (MAE Sec. 3).

    Args:
        student: :class:`MaskedAutoencoder`.
        teacher: EMA :class:`BackboneOnly` scoring tokens for attention strategies, else None.
        masking: strategy with a fixed count per image (see ``attmask.masking.visible``).
        seed: masking generator seed.
        norm_pix_loss: targets are per-patch normalised pixels (MAE's default).
        weight: loss weight.
    """

    evaluated_branch = "student"
    reconstructs = True

    def __init__(
        self,
        student: MaskedAutoencoder,
        teacher: BackboneOnly | None,
        masking: MaskingStrategy,
        seed: int = 0,
        norm_pix_loss: bool = True,
        weight: float = 1.0,
    ) -> None:
        super().__init__(student, teacher, masking, seed)
        self.norm_pix_loss, self.weight = norm_pix_loss, weight

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, N, p*p*C)`` regression targets of ``images``."""
        return pixel_targets(images, self.student.backbone.patch_size, self.norm_pix_loss)

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One MAE step on ``[images (B, C, H, W)]`` (extra views are ignored)."""
        images = crops[0]
        masks = self.draw_masks(images)
        prediction, _ = self._student_runner(images, masks)
        loss = self.weight * mae_loss(prediction, self.targets(images), masks)
        return StepOutput(loss, {"loss": loss.detach(), "mask_fraction": masks.float().mean()})

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """Masks and predictions of ``images`` (see :func:`fill_hidden_patches`)."""
        masks = self.draw_masks(images)
        prediction, _ = self.student(images, masks)
        return fill_hidden_patches(images, masks, prediction, self.student.backbone.patch_size, self.norm_pix_loss)


def pixel_targets(images: torch.Tensor, patch_size: int, norm_pix_loss: bool) -> torch.Tensor:
    """``(B, N, p*p*C)`` MAE regression targets of ``images`` ``(B, C, H, W)``: the patches, each
    normalised by its own mean and std when ``norm_pix_loss``."""
    patches = patchify(images, patch_size)
    return normalized_patches(patches) if norm_pix_loss else patches


def fill_hidden_patches(
    images: torch.Tensor, masks: torch.Tensor, prediction: torch.Tensor, patch_size: int, norm_pix_loss: bool
) -> Reconstruction:
    """Visible patches keep their pixels, hidden ones get ``prediction`` ``(B, N, p*p*C)`` (with
    ``norm_pix_loss``, mapped back with each true patch's own mean and std, as MAE's figures do:
    the model predicts the normalised patch only)."""
    patches = patchify(images, patch_size)
    if norm_pix_loss:
        mean, std = patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
        prediction = prediction * std + mean
    mixed = torch.where(masks.unsqueeze(-1), prediction.to(patches.dtype), patches)
    grid = (images.shape[-2] // patch_size, images.shape[-1] // patch_size)
    output = unpatchify(mixed, patch_size, grid, images.shape[1])
    return Reconstruction(images, masks, output, patch_size)
