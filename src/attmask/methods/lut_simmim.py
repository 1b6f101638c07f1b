"""LUT on SimMIM (Kim et al., ECCV 2024, the SimMIM variant): SimMIM's loss plus the
broader-context loss on unmasked tokens.

As in :mod:`attmask.methods.lut`, two crop+flip views share one random shuffle with disjoint
visible sets, here of SimMIM's masking cells (``recon.mask_patch_size``). The encoder sees every
token (hidden ones are the mask token), so the student's context is the mean of its output
patch tokens at the VISIBLE positions only; the EMA teacher (backbone + projector) pools all
patch tokens of the full view. ``L = L_SimMIM + w * L_BC``, ``L_SimMIM`` = SimMIM's L1 on the
hidden pixels of each view, averaged over the two views; w = 0.25.
"""

from __future__ import annotations

import torch

from attmask.heads import LUTMLP, SimMIMHead
from attmask.losses import masked_l1_loss
from attmask.masking import MaskingStrategy, coarse_grid, disjoint_visible_masks, expand_mask
from attmask.methods.base import Reconstruction
from attmask.methods.lut import LUT, LUTStudentOutput, LUTTeacher
from attmask.methods.simmim import SimMIMModel, fill_hidden_pixels, hidden_pixels
from attmask.models import VisionTransformer


class LUTSimMIMStudent(SimMIMModel):
    """SimMIM encoder + linear head, plus projector and predictor on the pooled visible tokens.

    Args:
        backbone: the ViT encoder.
        head: :class:`SimMIMHead`.
        projector: :class:`LUTMLP` ``D -> hidden -> K`` (shared by name with the teacher).
        predictor: :class:`LUTMLP` ``K -> hidden -> K`` (student only).
    """

    def __init__(self, backbone: VisionTransformer, head: SimMIMHead, projector: LUTMLP, predictor: LUTMLP) -> None:
        super().__init__(backbone, head)
        self.projector, self.predictor = projector, predictor

    def forward(
        self,
        views: tuple[torch.Tensor, torch.Tensor],  # type: ignore[override]
        masks: tuple[torch.Tensor, torch.Tensor],
    ) -> LUTStudentOutput:
        """Both views through encoder and head in one batch; projector and predictor per view.

        Args:
            views: ``(x1, x2)``, each ``(B, C, H, W)``.
            masks: ``(mask_1, mask_2)``, bool ``(B, N)``, True = mask token.

        Returns:
            :class:`LUTStudentOutput` with images ``(B, C, H, W)`` as predictions.
        """
        images, hidden = torch.cat(views), torch.cat(masks)
        encoded = self.backbone(images, mask=hidden)  # not predict(): the context pools these tokens
        prediction = self.head(encoded.patch_tokens, self.backbone.grid_for(*images.shape[-2:]))
        visible = (~hidden).unsqueeze(-1).to(encoded.patch_tokens.dtype)  # (2B, N, 1)
        pooled = (encoded.patch_tokens * visible).sum(1) / visible.sum(1).clamp(min=1.0)  # (2B, D)
        contexts = tuple(self.predictor(self.projector(part)) for part in pooled.chunk(2))
        return LUTStudentOutput(tuple(prediction.chunk(2)), contexts)  # type: ignore[arg-type]


class LUTSimMIM(LUT):
    """SimMIM + broader context: ``L = L_SimMIM + weight * L_BC`` (see the module docstring).

    Args:
        student: :class:`LUTSimMIMStudent`.
        teacher: :class:`attmask.methods.lut.LUTTeacher`.
        masking: a ``random`` strategy with one ratio (only its ratio is used).
        seed: masking generator seed.
        mask_factor: tokens per masking-cell side (``recon.mask_patch_size / patch_size``).
        pixel_weight: weight of ``L_SimMIM``.
        context_weight: weight of ``L_BC`` (LUT: 0.25).
    """

    pixel_loss_name = "loss_simmim"

    def __init__(
        self,
        student: LUTSimMIMStudent,
        teacher: LUTTeacher,
        masking: MaskingStrategy,
        seed: int = 0,
        mask_factor: int = 1,
        pixel_weight: float = 1.0,
        context_weight: float = 0.25,
    ) -> None:
        super().__init__(student, teacher, masking, seed, False, pixel_weight, context_weight)  # type: ignore[arg-type]
        self.mask_factor = mask_factor

    def draw_view_masks(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token masks ``(mask_1, mask_2)`` ``(B, N)``: disjoint visible sets of cells, one shuffle."""
        grid = self.student.backbone.grid_for(*views.shape[-2:])
        given = self.given_masks(2 * views.shape[0], grid[0] * grid[1], views.device)  # (2B, N), view-major
        if given is not None:
            return given[: views.shape[0]], given[views.shape[0] :]
        cells = coarse_grid(grid, self.mask_factor)
        pair = disjoint_visible_masks(views.shape[0], cells[0] * cells[1], self.masking.config.ratio[0], self.generator)
        first, second = (expand_mask(mask, cells, self.mask_factor).to(views.device) for mask in pair)
        return first, second

    def pixel_loss(self, prediction: torch.Tensor, view: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """SimMIM's L1 on the hidden pixels of one view (``prediction`` ``(B, C, H, W)``)."""
        return masked_l1_loss(prediction, view, hidden_pixels(self.student.backbone, mask, view))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """SimMIM-style reconstruction of ``images`` as view 1: visible pixels kept, hidden predicted."""
        masks = self.draw_view_masks(images)[0]
        return fill_hidden_pixels(images, masks, self.student.predict(images, masks), self.student.backbone)
