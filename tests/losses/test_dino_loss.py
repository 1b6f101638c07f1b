"""DINO loss: parity with the official ``DINOLoss`` (dino_loss.npz) and numerical safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attmask.losses import DINOLoss
from tests.conftest import load_reference, reference_json

TOLERANCE = {"float64": {"rtol": 1e-9, "atol": 1e-9}, "float32": {"rtol": 1e-5, "atol": 1e-6}}


def _loss_for_case(meta: dict) -> DINOLoss:
    loss = DINOLoss(
        meta["K"],
        meta["ncrops"],
        meta["warmup_teacher_temp"],
        meta["teacher_temp"],
        meta["warmup_teacher_temp_epochs"],
        meta["nepochs"],
        student_temp=meta["student_temp"],
        center_momentum=meta["center_momentum"],
    )
    return loss.to(getattr(torch, meta["dtype"]))


@pytest.mark.parametrize("case", ["A", "A32", "B"])
def test_matches_official_dino_loss_step_by_step(case: str) -> None:
    ref = load_reference("dino_loss.npz")
    meta = reference_json(ref, "meta_json")[case]
    loss_fn = _loss_for_case(meta)
    np.testing.assert_allclose(loss_fn.teacher_temp_schedule, ref[f"{case}_teacher_temp_schedule"], rtol=1e-12)
    loss_fn.center.center.copy_(torch.from_numpy(ref[f"{case}_center_init"]))
    tol = TOLERANCE[meta["dtype"]]
    for step, epoch in enumerate(ref[f"{case}_epochs"].tolist()):
        loss = loss_fn(
            torch.from_numpy(ref[f"{case}_student_output"][step]),
            torch.from_numpy(ref[f"{case}_teacher_output"][step]),
            epoch,
        )
        assert loss.dtype == getattr(torch, meta["dtype"])
        np.testing.assert_allclose(loss.item(), ref[f"{case}_loss"][step], **tol)
        np.testing.assert_allclose(loss_fn.center.center.numpy(), ref[f"{case}_center_after"][step], **tol)


def _naive(
    student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, temp: float, crops: int, global_crops: int = 2
) -> torch.Tensor:
    """The official double loop, for configurations the reference file does not cover."""
    student_chunks = (student / 0.1).chunk(crops)
    teacher_chunks = F.softmax((teacher - center) / temp, dim=-1).chunk(global_crops)
    total, terms = 0.0, 0
    for q, target in enumerate(teacher_chunks):
        for v, chunk in enumerate(student_chunks):
            if v != q:
                total = total + (-target * F.log_softmax(chunk, dim=-1)).sum(dim=-1).mean()
                terms += 1
    return total / terms


@pytest.mark.parametrize(("crops", "global_crops"), [(2, 2), (5, 2), (3, 1), (4, 3)])
def test_matches_the_official_loop_for_other_crop_counts(crops: int, global_crops: int) -> None:
    generator = torch.Generator().manual_seed(crops)
    student = torch.randn(crops * 3, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(global_crops * 3, 8, generator=generator, dtype=torch.float64)
    loss_fn = DINOLoss(8, crops, 0.04, 0.07, 3, 4, num_global_crops=global_crops).double()
    loss_fn.center.center.normal_(generator=generator)
    expected = _naive(student, teacher, loss_fn.center.center.clone(), 0.055, crops, global_crops)
    torch.testing.assert_close(loss_fn(student, teacher, epoch=1), expected, rtol=1e-12, atol=1e-12)


def _inputs(dtype: torch.dtype = torch.float32, crops: int = 4, batch: int = 3, dim: int = 16):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(crops * batch, dim, generator=generator).to(dtype)
    teacher = torch.randn(2 * batch, dim, generator=generator).to(dtype)
    return student, teacher


def test_state_dict_holds_the_centre() -> None:
    assert list(DINOLoss(16, 4, 0.04, 0.07, 3, 10).state_dict()) == ["center.center"]


def test_bf16_inputs_give_a_float32_loss_close_to_fp32() -> None:
    student, teacher = _inputs(torch.bfloat16)
    low = DINOLoss(16, 4, 0.04, 0.07, 3, 10)(student, teacher, 0)
    exact = DINOLoss(16, 4, 0.04, 0.07, 3, 10)(student.float(), teacher.float(), 0)
    full = DINOLoss(16, 4, 0.04, 0.07, 3, 10)(*_inputs(torch.float32), 0)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    torch.testing.assert_close(low, exact)  # computed in float32 after the cast
    torch.testing.assert_close(low, full, rtol=2e-2, atol=0.0)


def test_autocast_does_not_lower_the_loss_precision() -> None:
    student, teacher = _inputs()
    expected = DINOLoss(16, 4, 0.04, 0.07, 3, 10)(student, teacher, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DINOLoss(16, 4, 0.04, 0.07, 3, 10)(student, teacher, 0)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_inputs_are_not_modified_and_the_teacher_gets_no_gradient() -> None:
    student, teacher = _inputs()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    before = (student.detach().clone(), teacher.detach().clone())
    loss_fn = DINOLoss(16, 4, 0.04, 0.07, 3, 10)
    loss_fn(student, teacher, 2).backward()
    assert torch.equal(student.detach(), before[0]) and torch.equal(teacher.detach(), before[1])
    assert teacher.grad is None and student.grad is not None and torch.isfinite(student.grad).all()
    assert not loss_fn.center.center.requires_grad


def test_centre_is_used_before_its_update() -> None:
    student, teacher = _inputs()
    loss_fn = DINOLoss(16, 4, 0.04, 0.07, 3, 10)
    loss = loss_fn(student, teacher, 0)
    torch.testing.assert_close(loss, _naive(student, teacher, torch.zeros(1, 16), 0.04, 4))
    torch.testing.assert_close(loss_fn.center.center, 0.1 * teacher.mean(dim=0, keepdim=True))


def test_epochs_past_the_schedule_keep_the_last_temperature() -> None:
    loss_fn = DINOLoss(16, 4, 0.04, 0.07, 3, 5)
    assert loss_fn.teacher_temp(100) == loss_fn.teacher_temp(4) == pytest.approx(0.07)
    with pytest.raises(ValueError):
        loss_fn.teacher_temp(-1)


@pytest.mark.parametrize(
    ("student_shape", "teacher_shape"), [((10, 16), (6, 16)), ((12, 8), (6, 8)), ((12, 16), (4, 16))]
)
def test_rejects_inconsistent_shapes(student_shape: tuple, teacher_shape: tuple) -> None:
    with pytest.raises(ValueError):
        DINOLoss(16, 4, 0.04, 0.07, 3, 10)(torch.randn(student_shape), torch.randn(teacher_shape), 0)
