"""EMA teacher: the fused update and the original per-parameter loop agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attmask.methods import ema_update
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
    with pytest.raises(ValueError, match="different parameter structures"):
        ema_update_loop(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.9)
