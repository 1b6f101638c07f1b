"""iBOT loss: [CLS] self-distillation plus masked image modeling on the patch tokens.

Zhou et al., "iBOT", ICLR 2022, Sec. 3.2 (L_[CLS] and L_MIM); AttMask (Kakogeorgiou et al.,
ECCV 2022) eq. 3-4: ``L = lambda_cls * L_[CLS] + lambda_patch * L_MIM``, where

* ``L_[CLS]`` is the DINO loss (Caron et al., 2021, eq. 1) over every pair of a teacher global
  view q and a student view v != q, local crops included
  (:func:`attmask.losses.dino.cross_view_loss`);
* ``L_MIM`` pairs each global view with itself (v == q): the student sees the masked view, the
  teacher the unmasked one, and for image b
  ``l_b = sum_{i masked} H(P_t(x_i), P_s(x~_i)) / max(#masked_b, 1)``.
  As in the official code, ``l_b`` is then **averaged over all images of the view, including
  images without any masked token, which contribute 0** (they are not excluded from the mean,
  so with masking probability 0.5 the effective weight is about halved), and then over views.

Teacher targets are ``softmax((g_t - c) / T_t)`` with the [CLS] centre and schedule for L_[CLS]
and the patch centre and patch schedule for L_MIM; the student uses ``log_softmax(g_s / T_s)``.
After the loss both centres are updated (EMA): the [CLS] centre from all ``G*B`` teacher [CLS]
rows, the patch centre from the per-image mean over **all** patch tokens (not only the masked
ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attmask.core.schedules import teacher_temperature_schedule
from attmask.losses.center import Center
from attmask.losses.dino import compute_dtype, cross_view_loss, full_precision, temperature_at


@dataclass
class IBOTLossOutput:
    """Total loss and its two weighted terms (scalars); ``loss == cls + patch``."""

    loss: torch.Tensor
    cls: torch.Tensor
    patch: torch.Tensor


def masked_patch_loss(
    student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """L_MIM (iBOT Sec. 3.2, AttMask eq. 3) for rows whose student and teacher views match.

    Args:
        student_log_probs: ``(R, N, K)`` student log-probabilities, R = G*B images.
        teacher_probs: ``(R, N, K)`` centred, sharpened teacher probabilities.
        masks: bool ``(R, N)``, True = masked (the token counts).

    Returns:
        Scalar: per image the mean cross-entropy over its masked tokens (0 without any), then
        the mean over all R images (equal to the official mean over images, then over views).
    """
    token_loss = -(teacher_probs * student_log_probs).sum(dim=-1)  # (R, N)
    weights = masks.to(token_loss.dtype)
    per_image = (token_loss * weights).sum(dim=-1) / weights.sum(dim=-1).clamp(min=1.0)  # (R,)
    return per_image.mean()


def masked_token_index(masks: torch.Tensor) -> torch.Tensor:
    """Flat row-major indices ``(M,)`` of the masked tokens of ``masks`` ``(R, N)``.

    The order of the rows of a student's ``(M, K)`` masked-token predictions. Its length is data
    dependent, so on a GPU this is one host synchronisation.
    """
    return masks.flatten().nonzero().squeeze(1)


def selected_patch_loss(
    student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor, masked_index: torch.Tensor
) -> torch.Tensor:
    """:func:`masked_patch_loss` from the masked tokens only (the rows the loss reads).

    Args:
        student_log_probs: ``(M, K)`` student log-probabilities of the masked tokens.
        teacher_probs: ``(M, K)`` teacher probabilities of the same tokens.
        masks: bool ``(R, N)``, True = masked.
        masked_index: ``(M,)`` :func:`masked_token_index` of ``masks``.

    Returns:
        Scalar equal to ``masked_patch_loss`` of the full tensors: the token losses are put back
        on the ``(R, N)`` grid (zeros elsewhere) and summed in the same order.
    """
    token_loss = -(teacher_probs * student_log_probs).sum(dim=-1)  # (M,)
    grid = token_loss.new_zeros(masks.numel()).index_add(0, masked_index, token_loss).view(masks.shape)
    per_image = grid.sum(dim=-1) / masks.to(token_loss.dtype).sum(dim=-1).clamp(min=1.0)  # (R,)
    return per_image.mean()


class IBOTLoss(nn.Module):
    """iBOT loss with teacher-temperature warm-ups and two EMA centres.

    Args:
        out_dim: K of the [CLS] head.
        patch_out_dim: K of the patch head.
        num_local_crops: L.
        warmup_teacher_temp, teacher_temp: [CLS] T_t at epoch 0 and after the warm-up.
        warmup_teacher_patch_temp, teacher_patch_temp: patch T_t at epoch 0 and after.
        warmup_teacher_temp_epochs: length of both linear warm-ups (epochs).
        num_epochs: length of the schedules; later epochs keep the last value.
        student_temp: T_s of both terms.
        center_momentum, patch_center_momentum: momenta of the two centres.
        lambda_cls, lambda_patch: weights of L_[CLS] and L_MIM.
        mim_start_epoch: the patch temperature holds its warm-up value for this many epochs
            before its warm-up starts (official ``mim_start_epoch``). The loss does not switch
            L_MIM off: upstream, the same epoch (``pred_start_epoch``) makes the data pipeline
            produce empty masks before it, and images without masked tokens contribute 0.
        num_global_crops: G.

    Attributes:
        center: :class:`Center` ``(1, K)``; patch_center: :class:`Center` ``(1, 1, K_patch)``.
        teacher_temp_schedule, teacher_patch_temp_schedule: per-epoch float64 arrays.
    """

    def __init__(
        self,
        out_dim: int,
        patch_out_dim: int,
        num_local_crops: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_patch_temp: float,
        teacher_patch_temp: float,
        warmup_teacher_temp_epochs: int,
        num_epochs: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        patch_center_momentum: float = 0.9,
        lambda_cls: float = 1.0,
        lambda_patch: float = 1.0,
        mim_start_epoch: int = 0,
        num_global_crops: int = 2,
    ) -> None:
        super().__init__()
        if num_global_crops < 1 or num_local_crops < 0 or num_global_crops + num_local_crops < 2:
            raise ValueError(
                f"need >= 1 global crop, >= 0 local crops and >= 2 crops in all, "
                f"got {num_global_crops} and {num_local_crops}"
            )
        self.out_dim, self.patch_out_dim = out_dim, patch_out_dim
        self.num_global_crops, self.num_local_crops = num_global_crops, num_local_crops
        self.student_temp, self.lambda_cls, self.lambda_patch = student_temp, lambda_cls, lambda_patch
        self.center = Center((1, out_dim), center_momentum)
        self.patch_center = Center((1, 1, patch_out_dim), patch_center_momentum)
        self.teacher_temp_schedule = teacher_temperature_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, num_epochs
        )
        self.teacher_patch_temp_schedule = teacher_temperature_schedule(
            warmup_teacher_patch_temp,
            teacher_patch_temp,
            warmup_teacher_temp_epochs,
            num_epochs,
            start_epoch=mim_start_epoch,
        )

    def teacher_temps(self, epoch: int) -> tuple[float, float]:
        """([CLS] T_t, patch T_t) of ``epoch``."""
        return (
            temperature_at(self.teacher_temp_schedule, epoch),
            temperature_at(self.teacher_patch_temp_schedule, epoch),
        )

    def _check(
        self,
        student_cls: torch.Tensor,
        student_patch: torch.Tensor,
        teacher_cls: torch.Tensor,
        teacher_patch: torch.Tensor,
        masks: torch.Tensor,
        student_local_cls: torch.Tensor | None,
        masked_index: torch.Tensor | None,
    ) -> None:
        rows, tokens = student_cls.shape[0], teacher_patch.shape[1] if teacher_patch.ndim == 3 else -1
        patch_shape = (rows, tokens, self.patch_out_dim)
        if student_patch.ndim == 2 and masked_index is not None:  # masked tokens only
            patch_shape = (masked_index.numel(), self.patch_out_dim)
        if rows % self.num_global_crops:
            raise ValueError(f"student_cls rows ({rows}) must be a multiple of G={self.num_global_crops}")
        local_rows = rows // self.num_global_crops * self.num_local_crops
        expected = {
            "student_cls": (student_cls, (rows, self.out_dim)),
            "teacher_cls": (teacher_cls, (rows, self.out_dim)),
            "student_patch": (student_patch, patch_shape),
            "teacher_patch": (teacher_patch, (rows, tokens, self.patch_out_dim)),
            "masks": (masks, (rows, tokens)),
        }
        if local_rows or student_local_cls is not None:
            expected["student_local_cls (L*B, K)"] = (student_local_cls, (local_rows, self.out_dim))
        for name, (tensor, shape) in expected.items():
            actual = None if tensor is None else tuple(tensor.shape)
            if actual != shape:
                raise ValueError(f"{name} must have shape {shape}, got {actual}")
        if masks.dtype != torch.bool:
            raise ValueError(f"masks must be torch.bool (True = masked), got {masks.dtype}")

    def forward(
        self,
        student_cls: torch.Tensor,
        student_patch: torch.Tensor,
        teacher_cls: torch.Tensor,
        teacher_patch: torch.Tensor,
        masks: torch.Tensor,
        epoch: int,
        student_local_cls: torch.Tensor | None = None,
        masked_index: torch.Tensor | None = None,
    ) -> IBOTLossOutput:
        """Loss of one step, then both centre updates (no gradient; the centres are used first).

        Args:
            student_cls: ``(G*B, K)`` student [CLS] logits of the masked global views, view-major.
            student_patch: ``(G*B, N, K_patch)`` student patch logits of the same views, or
                ``(M, K_patch)`` those of the masked tokens only, in :func:`masked_token_index`
                order (L_MIM reads nothing else, so both give the same loss).
            teacher_cls: ``(G*B, K)`` teacher [CLS] logits of the unmasked global views.
            teacher_patch: ``(G*B, N, K_patch)`` teacher patch logits (all tokens: the patch
                centre is their mean).
            masks: bool ``(G*B, N)``, True = masked for the student = counts in L_MIM.
            epoch: selects the teacher temperatures.
            student_local_cls: ``(L*B, K)`` [CLS] logits of the local crops, crop-major, or None
                when there are no local crops.
            masked_index: ``(M,)`` :func:`masked_token_index` of ``masks`` for an ``(M, K_patch)``
                ``student_patch``; computed here when None.

        Returns:
            :class:`IBOTLossOutput` of scalars, float32 (float64 for float64 inputs) even under
            autocast. Inputs are never modified; no gradient flows to the teacher tensors.
        """
        if student_patch.ndim == 2 and masked_index is None:
            masked_index = masked_token_index(masks)
        self._check(
            student_cls,
            student_patch,
            teacher_cls,
            teacher_patch,
            masks,
            student_local_cls,
            masked_index if student_patch.ndim == 2 else None,
        )
        dtype = compute_dtype(student_cls)
        cls_temp, patch_temp = self.teacher_temps(epoch)
        with full_precision(student_cls.device):
            crops = student_cls if student_local_cls is None else torch.cat([student_cls, student_local_cls])
            crops = crops.to(dtype).reshape(self.num_global_crops + self.num_local_crops, -1, self.out_dim)
            teacher_cls = teacher_cls.detach().to(dtype)
            teacher_patch = teacher_patch.detach().to(dtype)
            cls_probs = F.softmax((teacher_cls - self.center.center.to(dtype)) / cls_temp, dim=-1)
            cls_loss = cross_view_loss(
                F.log_softmax(crops / self.student_temp, dim=-1),
                cls_probs.reshape(self.num_global_crops, -1, self.out_dim),
            )
            patch_loss = self._patch_term(student_patch.to(dtype), teacher_patch, masks, patch_temp, masked_index)
            cls_loss, patch_loss = self.lambda_cls * cls_loss, self.lambda_patch * patch_loss
            self.center.update_from_rows(teacher_cls)
            self.patch_center.update_from_rows(teacher_patch.mean(dim=1))
        return IBOTLossOutput(cls_loss + patch_loss, cls_loss, patch_loss)

    def _patch_term(
        self,
        student_patch: torch.Tensor,
        teacher_patch: torch.Tensor,
        masks: torch.Tensor,
        patch_temp: float,
        masked_index: torch.Tensor | None,
    ) -> torch.Tensor:
        """Unweighted L_MIM from all tokens ``(R, N, K)`` or from the masked ones ``(M, K)``."""
        centre = self.patch_center.center.to(teacher_patch.dtype)  # (1, 1, K)
        student_log_probs = F.log_softmax(student_patch / self.student_temp, dim=-1)
        if student_patch.ndim == 3:
            patch_probs = F.softmax((teacher_patch - centre) / patch_temp, dim=-1)
            return masked_patch_loss(student_log_probs, patch_probs, masks)
        picked = teacher_patch.flatten(0, 1).index_select(0, masked_index)  # (M, K)
        patch_probs = F.softmax((picked - centre.reshape(1, -1)) / patch_temp, dim=-1)
        return selected_patch_loss(student_log_probs, patch_probs, masks, masked_index)
