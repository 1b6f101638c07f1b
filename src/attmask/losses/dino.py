"""DINO self-distillation loss on [CLS] outputs (Caron et al., 2021, eq. 1; AttMask eq. 4).

``L = 1/|P| sum_{(q, v) in P} H(P_t(x_q), P_s(x_v))`` over the pairs P of a teacher global view
q and a student view v != q (global and local crops), with the centred, sharpened teacher
distribution ``P_t = softmax((g_t - c) / T_t)``, the student ``log P_s = log_softmax(g_s / T_s)``
and ``H(a, b) = -sum_k a_k log b_k`` averaged over the batch. T_t follows a per-epoch warm-up
schedule; the centre c is an EMA of the teacher outputs (:class:`attmask.losses.center.Center`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attmask.core.schedules import teacher_temperature_schedule
from attmask.losses.center import Center


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other floating type (bf16, fp16, fp32) is computed in fp32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast so that nothing in the loss runs in bf16 / fp16."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        return contextlib.nullcontext()


def temperature_at(schedule: Sequence[float], epoch: int) -> float:
    """Value of a per-epoch schedule; epochs past its end keep the last value."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return float(schedule[min(epoch, len(schedule) - 1)])


def cross_view_loss(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """DINO eq. 1: mean over the pairs (teacher view q, student view v), v != q, of the cross-entropy.

    Each pair's cross-entropy ``-sum_k P_t[q, b, k] log P_s[v, b, k]`` is averaged over the B
    images, then the pairs are averaged. Products and sums are elementwise (one teacher view at
    a time, transient memory of one ``(V, B, K)`` tensor), not a matmul, so neither autocast nor
    TF32 can lower their precision.

    Args:
        student_log_probs: ``(V, B, K)`` for V student views, the first G of which are the
            global views the teacher saw (in the same order).
        teacher_probs: ``(G, B, K)``.

    Returns:
        Scalar loss.
    """
    views, global_views = student_log_probs.shape[0], teacher_probs.shape[0]
    if views < global_views or views < 2:
        raise ValueError(f"need >= 2 student views including the {global_views} global ones, got {views}")
    batch = teacher_probs.shape[1]
    pair_loss = -torch.stack(
        [(target * student_log_probs).sum(dim=(1, 2)) for target in teacher_probs]
    )  # (G, V): summed over images and classes
    same_view = torch.eye(global_views, views, dtype=torch.bool, device=pair_loss.device)  # (G, V)
    return pair_loss.masked_fill(same_view, 0.0).sum() / (batch * (global_views * views - global_views))


class DINOLoss(nn.Module):
    """DINO loss (eq. 1) with teacher-temperature warm-up and an EMA centre.

    Args:
        out_dim: K, head output dimension.
        num_crops: all crops per image (global + local).
        warmup_teacher_temp: T_t at epoch 0.
        teacher_temp: T_t after the warm-up.
        warmup_teacher_temp_epochs: length of the linear T_t warm-up (epochs).
        num_epochs: length of the schedule; later epochs keep its last value.
        student_temp: T_s.
        center_momentum: m of the centre.
        num_global_crops: G, the views the teacher sees (the first G student crops).

    Attributes:
        center: the :class:`Center` ``(1, K)`` (``state_dict`` key ``center.center``).
        teacher_temp_schedule: per-epoch T_t, float64 ``(num_epochs,)``.
    """

    def __init__(
        self,
        out_dim: int,
        num_crops: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        num_epochs: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        num_global_crops: int = 2,
    ) -> None:
        super().__init__()
        if not 1 <= num_global_crops <= num_crops or num_crops < 2:
            raise ValueError(
                f"need num_crops >= 2 and 1 <= num_global_crops <= num_crops, got {num_crops} and {num_global_crops}"
            )
        self.out_dim, self.num_crops, self.num_global_crops = out_dim, num_crops, num_global_crops
        self.student_temp = student_temp
        self.center = Center((1, out_dim), center_momentum)
        self.teacher_temp_schedule = teacher_temperature_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, num_epochs
        )

    def teacher_temp(self, epoch: int) -> float:
        """T_t of ``epoch``."""
        return temperature_at(self.teacher_temp_schedule, epoch)

    def _check(self, student_output: torch.Tensor, teacher_output: torch.Tensor) -> None:
        rows, dim = student_output.shape[0], student_output.shape[-1]
        if student_output.ndim != 2 or dim != self.out_dim or rows % self.num_crops:
            raise ValueError(
                f"student_output must be (num_crops*B, {self.out_dim}) with num_crops="
                f"{self.num_crops}, got {tuple(student_output.shape)}"
            )
        expected = (rows // self.num_crops * self.num_global_crops, self.out_dim)
        if tuple(teacher_output.shape) != expected:
            raise ValueError(f"teacher_output must be {expected}, got {tuple(teacher_output.shape)}")

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int) -> torch.Tensor:
        """Loss of one step, then the centre update with ``teacher_output`` (no gradient).

        The centre is used before it is updated. Inputs are never modified; no gradient flows
        to ``teacher_output``.

        Args:
            student_output: ``(num_crops * B, K)`` logits, crop-major, global crops first.
            teacher_output: ``(G * B, K)`` logits of the global crops, view-major.
            epoch: selects the teacher temperature.

        Returns:
            Scalar loss, float32 (float64 for float64 inputs) even under autocast.
        """
        self._check(student_output, teacher_output)
        dtype = compute_dtype(student_output)
        with full_precision(student_output.device):
            student = student_output.to(dtype).reshape(self.num_crops, -1, self.out_dim)
            teacher = teacher_output.detach().to(dtype)
            centred = (teacher - self.center.center.to(dtype)) / self.teacher_temp(epoch)
            teacher_probs = F.softmax(centred, dim=-1).reshape(self.num_global_crops, -1, self.out_dim)
            loss = cross_view_loss(F.log_softmax(student / self.student_temp, dim=-1), teacher_probs)
            self.center.update_from_rows(teacher)
        return loss
