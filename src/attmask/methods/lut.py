"""LUT (Kim et al., "Learning with Unmasked Tokens Drives Stronger Vision Learners", ECCV 2024):
MAE plus a "broader context" loss on the unmasked tokens.

Two crop+flip views x1, x2 of each image share one random shuffle of the N patch positions and
keep disjoint visible sets (view 1 the shuffled positions ``[0, V)``, view 2 ``[V, 2V)``, with
``V = N - floor(N r)``). The student is MAE's encoder on each view's visible tokens plus MAE's
decoder; in addition, the mean of its visible patch tokens goes through a projector and a
predictor (BYOL's ``Linear-BN-ReLU-Linear`` MLPs) to ``q``. An EMA teacher (backbone + projector)
encodes the full views, unmasked: mean of all patch tokens -> projector = ``k``. Then

``L = L_MAE + w * L_BC``, ``L_MAE`` = MAE's pixel loss on each view's hidden patches averaged over
the two views, ``L_BC = 1/2 [mean_b (2 - 2 cos(q1, k2)) + mean_b (2 - 2 cos(q2, k1))]``, w = 0.25.

Masking is random only. Attention-guided masking (AttMask) is not offered for LUT: the two
visible sets are cut from one shared random shuffle so that they are disjoint; an attention
ranking is one fixed order per image, not a shuffle to split, and the two views are different
crops, so one view's attention would not rank the other view's positions.

The projector's and predictor's BatchNorm use each rank's batch (no SyncBatchNorm); the teacher
runs in train mode like the student (batch statistics, as BYOL's target network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attmask.heads import LUTMLP, MAEDecoder
from attmask.losses import mae_loss, symmetric_broader_context_loss
from attmask.masking import MaskingStrategy, disjoint_visible_masks
from attmask.methods.base import PretrainingMethod, Reconstruction, StepOutput
from attmask.methods.mae import MaskedAutoencoder, fill_hidden_patches, pixel_targets
from attmask.models import VisionTransformer


@dataclass
class LUTStudentOutput:
    """What the student makes of both views.

    Attributes:
        predictions: ``(prediction_1, prediction_2)``, pixel predictions ``(B, N, p*p*C)`` per view.
        contexts: ``(q1, q2)``, predictor outputs ``(B, K)`` of each view's pooled visible tokens.
    """

    predictions: tuple[torch.Tensor, torch.Tensor]
    contexts: tuple[torch.Tensor, torch.Tensor]


class LUTStudent(MaskedAutoencoder):
    """MAE encoder + decoder, plus projector and predictor on the pooled visible tokens.

    The whole student computation of a step is one ``forward``, so a DDP wrapper sees it.

    Args:
        backbone: the ViT encoder.
        decoder: :class:`MAEDecoder`.
        projector: :class:`LUTMLP` ``D -> hidden -> K`` (shared by name with the teacher).
        predictor: :class:`LUTMLP` ``K -> hidden -> K`` (student only).
    """

    def __init__(self, backbone: VisionTransformer, decoder: MAEDecoder, projector: LUTMLP, predictor: LUTMLP) -> None:
        super().__init__(backbone, decoder)
        self.projector, self.predictor = projector, predictor

    def autoencode(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MAE's forward: ``(prediction (B, N, p*p*C), visible patch tokens (B, V, D))``."""
        return super().forward(images, masks)

    def forward(
        self,
        views: tuple[torch.Tensor, torch.Tensor],  # type: ignore[override]
        masks: tuple[torch.Tensor, torch.Tensor],
    ) -> LUTStudentOutput:
        """Both views through encoder and decoder in one batch; projector and predictor per view.

        Args:
            views: ``(x1, x2)``, each ``(B, C, H, W)`` of the same size.
            masks: ``(mask_1, mask_2)``, bool ``(B, N)``, True = hidden, V visible per row.

        Returns:
            :class:`LUTStudentOutput`. The MLPs' BatchNorm sees one view's batch at a time (as
            BYOL runs each view separately), so the encoder pass is the only shared one.
        """
        prediction, visible_tokens = self.autoencode(torch.cat(views), torch.cat(masks))  # (2B, ...)
        pooled = visible_tokens.mean(dim=1)  # (2B, D)
        contexts = tuple(self.predictor(self.projector(part)) for part in pooled.chunk(2))
        return LUTStudentOutput(tuple(prediction.chunk(2)), contexts)  # type: ignore[arg-type]


class LUTTeacher(nn.Module):
    """EMA target: ``backbone`` and ``projector``, named as in :class:`LUTStudent`."""

    def __init__(self, backbone: VisionTransformer, projector: LUTMLP) -> None:
        super().__init__()
        self.backbone, self.projector = backbone, projector

    def forward(self, views: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets ``(k1, k2)``, each ``(B, K)``: projector of the mean of all patch tokens of the
        full (unmasked) view. One backbone pass over both views, the projector per view."""
        patch_tokens = self.backbone(torch.cat(views)).patch_tokens  # (2B, N, D)
        return tuple(self.projector(part) for part in patch_tokens.mean(dim=1).chunk(2))  # type: ignore[return-value]


class LUT(PretrainingMethod):
    """MAE + broader context: ``L = L_MAE + weight * L_BC`` (see the module docstring).

    Args:
        student: :class:`LUTStudent`.
        teacher: :class:`LUTTeacher`, initialised from the student and updated by EMA
            (``update_teacher`` with the trainer's cosine momentum, e.g. 0.996 -> 1).
        masking: a ``random`` strategy with one ratio; only ``masking.config.ratio`` is used
            (the shared shuffle replaces the strategy's own draws).
        seed: masking generator seed.
        norm_pix_loss: MAE's per-patch normalised pixel targets.
        pixel_weight: weight of ``L_MAE``.
        context_weight: weight of ``L_BC`` (LUT: 0.25).
    """

    evaluated_branch = "student"
    reconstructs = True
    pixel_loss_name = "loss_mae"

    def __init__(
        self,
        student: LUTStudent,
        teacher: LUTTeacher,
        masking: MaskingStrategy,
        seed: int = 0,
        norm_pix_loss: bool = True,
        pixel_weight: float = 1.0,
        context_weight: float = 0.25,
    ) -> None:
        super().__init__(student, teacher, masking, seed)
        self.norm_pix_loss, self.pixel_weight, self.context_weight = norm_pix_loss, pixel_weight, context_weight

    def draw_view_masks(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(mask_1, mask_2)`` ``(B, N)`` of the two views of ``views`` ``(B, C, H, W)``
        (either view: both have its size): one shuffle from ``self.generator`` on the CPU, disjoint
        visible sets, moved to the views' device."""
        rows, cols = self.student.backbone.grid_for(*views.shape[-2:])
        given = self.given_masks(2 * views.shape[0], rows * cols, views.device)  # (2B, N), view-major
        if given is not None:
            return given[: views.shape[0]], given[views.shape[0] :]
        masks = disjoint_visible_masks(views.shape[0], rows * cols, self.masking.config.ratio[0], self.generator)
        return masks[0].to(views.device), masks[1].to(views.device)

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, N, p*p*C)`` pixel regression targets of ``images``."""
        return pixel_targets(images, self.student.backbone.patch_size, self.norm_pix_loss)

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One LUT step on ``[view_1, view_2]``, each ``(B, C, H, W)``.

        Logs ``loss``, ``loss_mae`` (L_MAE), ``loss_bc`` (L_BC) and ``mask_fraction`` (hidden
        fraction of each view, ``1 - V / N``).
        """
        if len(crops) != 2:
            raise ValueError(f"lut needs two views per image, got {len(crops)}")
        views = (crops[0], crops[1])
        masks = self.draw_view_masks(views[0])
        out = self._student_runner(views, masks)
        loss_pixel = 0.5 * sum(
            self.pixel_loss(prediction, view, mask)  # same hidden count per view
            for prediction, view, mask in zip(out.predictions, views, masks)
        )
        with torch.no_grad():
            contexts = self.teacher(views)
        loss_bc = symmetric_broader_context_loss(out.contexts, contexts)
        loss = self.pixel_weight * loss_pixel + self.context_weight * loss_bc
        return StepOutput(
            loss,
            {
                "loss": loss.detach(),
                self.pixel_loss_name: loss_pixel.detach(),
                "loss_bc": loss_bc.detach(),
                "mask_fraction": masks[0].float().mean(),
            },
        )

    def pixel_loss(self, prediction: torch.Tensor, view: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MAE's loss of one view: ``prediction`` ``(B, N, p*p*C)``, ``view`` ``(B, C, H, W)``,
        ``mask`` ``(B, N)``."""
        return mae_loss(prediction, self.targets(view), mask)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """MAE-style reconstruction of ``images`` as view 1 (V visible tokens of the shared
        shuffle); see :meth:`attmask.methods.mae.MAE.reconstruct`."""
        masks = self.draw_view_masks(images)[0]
        prediction, _ = self.student.autoencode(images, masks)
        return fill_hidden_patches(images, masks, prediction, self.student.backbone.patch_size, self.norm_pix_loss)
