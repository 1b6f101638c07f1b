"""Every argument check of the masking and loss primitives raises its own message (a library user
calling them directly gets the argument's name and range, not an index error further down)."""

from __future__ import annotations

import pytest
import torch

from attmask.losses.center import Center
from attmask.losses.dino import DINOLoss, cross_view_loss
from attmask.masking.attention import attmask_hint, scores_from_cls_attention, token_ranks
from attmask.masking.ratio import grid_shape, sample_keep_rows, sample_ratios

SCORES = torch.rand(2, 16)
CASES = [
    (lambda: scores_from_cls_attention(torch.rand(2, 16)), r"cls_attention must have shape \(batch, heads, tokens\)"),
    (lambda: token_ranks(torch.rand(16), descending=True), r"scores must have shape \(batch, tokens\), got \(16,\)"),
    (lambda: attmask_hint(SCORES, 0.5, 0.01, show_max=1.5), r"show_max must lie in \[0, 1\], got 1.5"),
    (lambda: attmask_hint(SCORES, 0.5, 0.2, show_max=0.1), r"show_ratio \(0.2\) must not exceed show_max \(0.1\)"),
    (lambda: grid_shape((4, 0)), r"patch grid must be positive integers \(height, width\), got \(4, 0\)"),
    (lambda: grid_shape(2.5), r"patch grid must be positive integers .*got 2.5"),
    (lambda: grid_shape((4, 4, 4)), r"patch grid must be positive integers .*got \(4, 4, 4\)"),
    (lambda: grid_shape("4"), r"patch grid must be positive integers .*got '4'"),
    (lambda: sample_ratios(2, 0.5, 0.1), r"0 <= low <= high <= 1, got \(0.5, 0.1\)"),
    (lambda: sample_keep_rows(2, 1.5), r"masking probability must lie in \[0, 1\], got 1.5"),
    (lambda: Center((1, 4), momentum=1.5), r"center momentum must lie in \[0, 1\], got 1.5"),
    (lambda: Center((1, 4)).update(torch.zeros(1, 4), 0), r"at least one row, got count=0"),
    (lambda: Center((1, 4)).update(torch.zeros(1, 5), 2), r"expects \(1, 4\) elements, got \(1, 5\)"),
    (lambda: cross_view_loss(torch.rand(1, 2, 4), torch.rand(1, 2, 4)), r"need >= 2 student views"),
    (lambda: DINOLoss(4, num_crops=2, warmup_teacher_temp=0.04, teacher_temp=0.04,
                      warmup_teacher_temp_epochs=0, num_epochs=1, num_global_crops=3),
     r"need num_crops >= 2 and 1 <= num_global_crops <= num_crops, got 2 and 3"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "message"), CASES, ids=[message[:40] for _, message in CASES])
def test_argument_check_names_the_argument(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
