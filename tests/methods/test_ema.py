"""EMA teacher: the fused update and the original per-parameter loop agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attmask.methods import ema_update, make_teacher
from attmask.methods.ema import ema_update_loop


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    teacher = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    return teacher, student


@pytest.mark.parametrize("momentum", [0.0, 0.996, 1.0])
def test_loop_matches_the_fused_update(momentum: float) -> None:
    fused_teacher, student = _pair()
    loop_teacher, _ = _pair()
    before = [p.detach().clone() for p in fused_teacher.parameters()]
    ema_update(fused_teacher, student, momentum)
    ema_update_loop(loop_teacher, student, momentum)
    for old, fused, loop, source in zip(before, fused_teacher.parameters(), loop_teacher.parameters(),
                                        student.parameters()):
        expected = momentum * old + (1 - momentum) * source.detach()
        torch.testing.assert_close(loop, expected, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-7)


def test_loop_rejects_different_structures() -> None:
    with pytest.raises(ValueError, match="structures differ"):
        ema_update_loop(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)


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
