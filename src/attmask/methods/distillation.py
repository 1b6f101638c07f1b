"""Self-distillation with an EMA teacher and attention-guided masking (iBOT and DINO).

The teacher sees the full global views. Its last-block [CLS] attention, averaged over heads,
comes out of the same forward pass that produces the targets, so AttMask's scores cost nothing
extra (AttMask Sec. 3.3). Each global view of each image is masked from its own attention.
"""

from __future__ import annotations

import torch
from torch import nn

from attmask.losses import masked_token_index
from attmask.masking import MaskingStrategy
from attmask.methods.base import PretrainingMethod, StepOutput
from attmask.methods.encoder import Encoder, EncoderOutput
from attmask.methods.monitors import collapse_monitors

NUM_GLOBAL_CROPS = 2


class SelfDistillation(PretrainingMethod):
    """Student, EMA teacher (both :class:`Encoder`) and masking strategy; subclasses define the loss.

    Args:
        student: trained encoder.
        teacher: encoder of the same structure (drop path off), initialised from the student.
        masking: strategy applied to the student's global views.
        seed: seed of the CPU generator that drives every masking draw.
    """

    def __init__(self, student: Encoder, teacher: Encoder, masking: MaskingStrategy, seed: int = 0) -> None:
        super().__init__(student, teacher, masking, seed)

    def _split(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if len(crops) < NUM_GLOBAL_CROPS:
            raise ValueError(f"need {NUM_GLOBAL_CROPS} global crops, got {len(crops)} crops")
        return torch.cat(crops[:NUM_GLOBAL_CROPS]), list(crops[NUM_GLOBAL_CROPS:])


class IBOT(SelfDistillation):
    """iBOT (Zhou et al., 2022) with pluggable masking: L = L_[CLS] + lambda * L_MIM (AttMask eq. 3-4).

    Args:
        loss: an :class:`attmask.losses.IBOTLoss`.
        mim_start_epoch: epochs before masking starts (iBOT's ``pred_start_epoch``): until then
            the student sees whole views and the MIM term is 0.

    The student's patch head runs only on the masked tokens, the only ones L_MIM reads (the
    teacher's runs on all: the patch centre is their mean); see :meth:`student_patch_index`.
    """

    title = "iBOT"

    def __init__(
        self,
        student: Encoder,
        teacher: Encoder,
        masking: MaskingStrategy,
        loss: nn.Module,
        seed: int = 0,
        mim_start_epoch: int = 0,
    ) -> None:
        super().__init__(student, teacher, masking, seed)
        self.loss = loss
        self.mim_start_epoch = mim_start_epoch

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One iBOT step on ``[global_1, global_2, local_1, ...]``, each ``(B, C, H, W)``."""
        global_views, local_views = self._split(crops)
        with torch.no_grad():
            target = self.teacher(global_views, return_cls_attention=self.masking.requires_attention)
        masks = self.draw_masks(global_views, target.cls_attention)
        if epoch < self.mim_start_epoch:
            masks = torch.zeros_like(masks)
        index = self.student_patch_index(masks)  # (M,)
        pred = self._student_runner(global_views, masks, local_views, patch_index=index)
        monitors = collapse_monitors(
            target.cls, self.loss.center.center, self.loss.teacher_temps(epoch)[0], target.embedding
        )
        student_patch = pred.patch if index is None else pred.selected_patch
        out = self.loss(pred.cls, student_patch, target.cls, target.patch, masks, epoch, pred.local_cls, index)
        logs = {
            "loss": out.loss.detach(),
            "loss_cls": out.cls.detach(),
            "loss_patch": out.patch.detach(),
            "mask_fraction": masks.float().mean(),
            "teacher_temp": torch.tensor(self.loss.teacher_temps(epoch)[0]),
            **monitors,
        }
        return StepOutput(out.loss, logs)

    def student_patch_index(self, masks: torch.Tensor) -> torch.Tensor | None:
        """Flat indices ``(M,)`` of the patch tokens of ``masks`` ``(G*B, N)`` that the student's
        patch head runs on: the masked ones. None would run it on every patch token, as the
        original code does (what the step benchmark's replica measures); the loss is the same."""
        return masked_token_index(masks)


class DINO(SelfDistillation):
    """DINO (Caron et al., 2021): [CLS] self-distillation over multi-crop views.

    With a masking strategy other than ``none`` the student's global views are masked (the
    AttMask paper's Table 3 setting); the teacher always sees them whole.

    Args:
        loss: an :class:`attmask.losses.DINOLoss`.
    """

    title = "DINO"

    def __init__(
        self, student: Encoder, teacher: Encoder, masking: MaskingStrategy, loss: nn.Module, seed: int = 0
    ) -> None:
        super().__init__(student, teacher, masking, seed)
        self.loss = loss

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """One DINO step on ``[global_1, global_2, local_1, ...]``, each ``(B, C, H, W)``."""
        loss, logs, _, _ = self._distill(crops, epoch)
        return StepOutput(loss, logs)

    def _distill(
        self, crops: list[torch.Tensor], epoch: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], EncoderOutput, torch.Tensor]:
        """DINO loss, logs, the student's output (with its ``reconstruction`` when the student has
        a decoder, as MST's does) and the global views ``(G*B, C, H, W)`` it saw."""
        global_views, local_views = self._split(crops)
        with torch.no_grad():
            target = self.teacher(global_views, return_cls_attention=self.masking.requires_attention)
        masks = self.draw_masks(global_views, target.cls_attention)
        pred = self._student_runner(global_views, masks, local_views)
        student_out = pred.cls if pred.local_cls is None else torch.cat([pred.cls, pred.local_cls])
        temperature = self.loss.teacher_temp(epoch)
        monitors = collapse_monitors(target.cls, self.loss.center.center, temperature, target.embedding)
        loss = self.loss(student_out, target.cls, epoch)
        logs = {
            "loss": loss.detach(),
            "mask_fraction": masks.float().mean(),
            "teacher_temp": torch.tensor(temperature),
            **monitors,
        }
        return loss, logs, pred, global_views
