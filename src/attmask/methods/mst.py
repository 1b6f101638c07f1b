"""MST (Li et al., "MST: Masked Self-Supervised Transformer for Visual Representation", NeurIPS 2021).

DINO plus masked image restoration. The teacher sees the whole global views; the student's
global views are masked where the teacher's last-block [CLS] attention (head mean) is lowest,
so the tokens that carry the image's main content stay visible (``attmask_low``; the strategy
is pluggable, ``masking.strategy`` picks any), and the masked tokens are replaced by the mask
token. A convolutional decoder (:class:`attmask.heads.MSTDecoder`) restores the *whole* image
of each global view from the student's patch tokens:

    L = L_DINO + lambda * L_restore,   L_restore = mean |decoder(student patches) - x|

over all pixels of the (normalised) global views x; lambda = ``recon.weight`` (default 0.6).
The local crops enter only L_DINO, as in DINO.
"""

from __future__ import annotations

import torch
from torch import nn

from attmask.losses import image_l1_loss
from attmask.masking import MaskingStrategy
from attmask.methods.base import Reconstruction, StepOutput
from attmask.methods.distillation import DINO
from attmask.methods.encoder import Encoder

DEFAULT_RESTORE_WEIGHT = 0.6


class MST(DINO):
    """MST: DINO on multi-crop views + L1 restoration of the masked global views.

    Args:
        student: :class:`Encoder` with a ``decoder`` (e.g. :class:`attmask.heads.MSTDecoder`).
        teacher: :class:`Encoder` without a decoder (the EMA pairs parameters by name; the
            decoder is the student's only).
        masking: strategy for the student's global views (MST: ``attmask_low``).
        loss: an :class:`attmask.losses.DINOLoss`.
        seed: seed of the masking generator.
        weight: lambda, weight of the restoration loss.
    """

    evaluated_branch = "teacher"
    reconstructs = True

    def __init__(
        self,
        student: Encoder,
        teacher: Encoder,
        masking: MaskingStrategy,
        loss: nn.Module,
        seed: int = 0,
        weight: float = DEFAULT_RESTORE_WEIGHT,
    ) -> None:
        if getattr(student, "decoder", None) is None:
            raise ValueError("MST needs a student Encoder with a decoder")
        super().__init__(student, teacher, masking, loss, seed)
        self.weight = weight

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One MST step on ``[global_1, global_2, local_1, ...]``, each ``(B, C, H, W)``."""
        loss_cls, logs, pred, global_views = self._distill(crops, epoch)
        loss_restore = image_l1_loss(pred.reconstruction, global_views)
        loss = loss_cls + self.weight * loss_restore
        logs.update(loss=loss.detach(), loss_cls=loss_cls.detach(), loss_restore=loss_restore.detach())
        return StepOutput(loss, logs)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> Reconstruction:
        """Masks of ``images`` ``(B, C, H, W)`` from the teacher's attention (as in training) and
        the student's restored images (the whole image is predicted, visible patches included)."""
        target = self.teacher(images, return_cls_attention=self.masking.requires_attention)
        masks = self.draw_masks(images, target.cls_attention)
        out = self.student(images, masks)
        restored = out.reconstruction.to(images.dtype)
        return Reconstruction(images, masks, restored, self.student.backbone.patch_size)
