"""EMA teacher: the fused update is DINO's eq. 2 (the original per-parameter loop lives in the step
benchmark's replica, tests/benchmarks/test_reference_design.py compares the two)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attmask.methods import ema_update, make_teacher


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    teacher = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    return teacher, student


@pytest.mark.parametrize("momentum", [0.0, 0.996, 1.0])
def test_fused_update_is_the_ema(momentum: float) -> None:
    teacher, student = _pair()
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, momentum)
    for old, new, source in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, momentum * old + (1 - momentum) * source.detach(), rtol=1e-6, atol=1e-7)


def test_update_rejects_different_structures() -> None:
    with pytest.raises(ValueError, match="structures differ"):
        ema_update(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)


def test_partial_teacher_is_paired_by_name() -> None:
    """A teacher holding a subset of the student's modules (LUT: no predictor) follows its namesakes."""
    torch.manual_seed(0)
    student = nn.ModuleDict({"backbone": nn.Linear(3, 3), "predictor": nn.Linear(3, 2)})
    teacher = make_teacher(nn.ModuleDict({"backbone": nn.Linear(3, 3)}), student)
    assert torch.equal(teacher["backbone"].weight, student["backbone"].weight)
    assert not teacher["backbone"].weight.requires_grad
    before = teacher["backbone"].weight.clone()
    with torch.no_grad():
        student["backbone"].weight.add_(1.0)
    ema_update(teacher, student, 0.75)
    torch.testing.assert_close(teacher["backbone"].weight, 0.75 * before + 0.25 * student["backbone"].weight)
    with pytest.raises(ValueError, match="not in the student"):
        make_teacher(nn.ModuleDict({"projector": nn.Linear(3, 3)}), student)
