"""Exponential moving average teacher (BYOL / DINO "momentum encoder")."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- m * teacher + (1 - m) * student`` for every parameter, in one fused call.

    Uses ``torch._foreach_lerp_`` (one kernel launch per group of tensors, no Python loop
    over parameters). The two modules must have the same parameter structure.

    Args:
        teacher: updated in place.
        student: source (a DDP wrapper is unwrapped by the caller).
        momentum: m in [0, 1].
    """
    teacher_params = list(teacher.parameters())
    student_params = [p.detach() for p in student.parameters()]
    if len(teacher_params) != len(student_params):
        raise ValueError("teacher and student have different parameter structures")
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)


@torch.no_grad()
def ema_update_loop(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """:func:`ema_update` as the original DINO / iBOT code writes it: a Python loop, two kernels
    per parameter (``param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)``).

    Kept for the reference design (``train.reference_design``) only; same arguments.
    """
    teacher_params, student_params = list(teacher.parameters()), list(student.parameters())
    if len(teacher_params) != len(student_params):
        raise ValueError("teacher and student have different parameter structures")
    for param_q, param_k in zip(student_params, teacher_params):
        param_k.data.mul_(momentum).add_((1 - momentum) * param_q.detach().data)


def make_teacher(teacher: nn.Module, student: nn.Module) -> nn.Module:
    """Initialise ``teacher`` with the student's weights and freeze it."""
    teacher.load_state_dict(student.state_dict())
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
