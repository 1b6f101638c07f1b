"""Exponential moving average teacher (BYOL / DINO "momentum encoder").

The teacher may hold a subset of the student's modules (LUT's teacher: backbone + projector,
no decoder or predictor); parameters are paired by name.
"""

from __future__ import annotations

import torch
from torch import nn

Pairs = tuple[list[torch.Tensor], list[torch.Tensor]]


def paired_parameters(teacher: nn.Module, student: nn.Module) -> Pairs:
    """``(teacher_params, student_params)`` matched by name, in the teacher's order.

    The parameters themselves are listed (not detached copies), so the pairs stay valid when the
    modules move to another device; callers may find them once and reuse them every step.

    Raises:
        ValueError: a teacher parameter has no student parameter of the same name and shape.
    """
    source = dict(student.named_parameters())
    teacher_params, student_params = [], []
    for name, parameter in teacher.named_parameters():
        match = source.get(name)
        if match is None or match.shape != parameter.shape:
            raise ValueError(
                f"teacher parameter {name} has no student counterpart of shape "
                f"{tuple(parameter.shape)}; teacher and student structures differ"
            )
        teacher_params.append(parameter)
        student_params.append(match)
    return teacher_params, student_params


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float, pairs: Pairs | None = None) -> None:
    """``teacher <- m * teacher + (1 - m) * student`` for every teacher parameter, in one fused call.

    Uses ``torch._foreach_lerp_`` (one kernel launch per group of tensors, no Python loop
    over parameters).

    Args:
        teacher: updated in place.
        student: source (a DDP wrapper is unwrapped by the caller); holds every teacher name.
        momentum: m in [0, 1].
        pairs: :func:`paired_parameters` of the two modules, if already found.
    """
    teacher_params, student_params = pairs or paired_parameters(teacher, student)
    torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)


def make_teacher(teacher: nn.Module, student: nn.Module) -> nn.Module:
    """Initialise ``teacher`` with the student's weights of the same names and freeze it."""
    source = student.state_dict()
    missing = [key for key in teacher.state_dict() if key not in source]
    if missing:
        raise ValueError(f"teacher keys {missing[:3]} are not in the student; structures differ")
    teacher.load_state_dict({key: source[key] for key in teacher.state_dict()})
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
