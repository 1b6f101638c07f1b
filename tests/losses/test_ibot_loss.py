"""iBOT loss: parity with the official ``iBOTLoss`` (ibot_loss.npz) and the documented semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attmask.losses import (
    DINOLoss,
    IBOTLoss,
    IBOTLossOutput,
    masked_patch_loss,
    masked_token_index,
    selected_patch_loss,
)
from tests.conftest import load_reference, reference_json

TOLERANCE = {"float64": {"rtol": 1e-9, "atol": 1e-9}, "float32": {"rtol": 1e-5, "atol": 1e-6}}


def _loss_for_case(meta: dict) -> IBOTLoss:
    loss = IBOTLoss(
        meta["K"],
        meta["K"],
        meta["L"],
        meta["wt"],
        meta["tt"],
        meta["wt2"],
        meta["tt2"],
        meta["warm"],
        meta["nepochs"],
        student_temp=meta["student_temp"],
        center_momentum=meta["center_momentum"],
        patch_center_momentum=meta["center_momentum2"],
        lambda_cls=meta["lambda1"],
        lambda_patch=meta["lambda2"],
        mim_start_epoch=meta["mim_start"],
    )
    return loss.to(getattr(torch, meta["dtype"]))


def _step_inputs(ref: dict, case: str, step: int) -> dict:
    tensor = {
        name: torch.from_numpy(ref[f"{case}_{name}"][step])
        for name in ("student_cls", "student_patch", "teacher_cls", "teacher_patch")
    }
    masks = ref[f"{case}_masks"][step]  # (2, B, H, W), view-major
    tensor["masks"] = torch.from_numpy(masks.reshape(masks.shape[0] * masks.shape[1], -1))
    local = ref.get(f"{case}_student_local_cls")
    tensor["student_local_cls"] = None if local is None else torch.from_numpy(local[step])
    return tensor


@pytest.mark.parametrize("case", ["A", "A32", "B", "C"])
def test_matches_official_ibot_loss_step_by_step(case: str) -> None:
    ref = load_reference("ibot_loss.npz")
    meta = reference_json(ref, "meta_json")[case]
    loss_fn = _loss_for_case(meta)
    np.testing.assert_allclose(loss_fn.teacher_temp_schedule, ref[f"{case}_teacher_temp_schedule"], rtol=1e-12)
    np.testing.assert_allclose(loss_fn.teacher_patch_temp_schedule, ref[f"{case}_teacher_temp2_schedule"], rtol=1e-12)
    loss_fn.center.center.copy_(torch.from_numpy(ref[f"{case}_center_init"]))
    loss_fn.patch_center.center.copy_(torch.from_numpy(ref[f"{case}_center2_init"]))
    tol = TOLERANCE[meta["dtype"]]
    for step, epoch in enumerate(ref[f"{case}_epochs"].tolist()):
        out = loss_fn(epoch=epoch, **_step_inputs(ref, case, step))
        assert isinstance(out, IBOTLossOutput) and out.loss.dtype == getattr(torch, meta["dtype"])
        for field, key in (("loss", "loss_total"), ("cls", "loss_cls"), ("patch", "loss_patch")):
            np.testing.assert_allclose(getattr(out, field).item(), ref[f"{case}_{key}"][step], **tol)
        np.testing.assert_allclose(loss_fn.center.center.numpy(), ref[f"{case}_center_after"][step], **tol)
        np.testing.assert_allclose(loss_fn.patch_center.center.numpy(), ref[f"{case}_center2_after"][step], **tol)


# ------------------------------------------------------------------------- semantics
B, N, K, L = 3, 5, 8, 2


def _inputs(dtype: torch.dtype = torch.float32, local: bool = True, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    masks = torch.rand(2 * B, N, generator=generator) < 0.5
    masks[0] = False
    masks[-1] = True
    return {
        "student_cls": draw(2 * B, K),
        "student_patch": draw(2 * B, N, K),
        "teacher_cls": draw(2 * B, K),
        "teacher_patch": draw(2 * B, N, K),
        "masks": masks,
        "student_local_cls": draw(L * B, K) if local else None,
    }


def _loss(num_local_crops: int = L, **kwargs) -> IBOTLoss:
    return IBOTLoss(K, K, num_local_crops, 0.04, 0.07, 0.04, 0.07, 3, 10, **kwargs)


def test_state_dict_holds_both_centres() -> None:
    loss_fn = _loss()
    assert sorted(loss_fn.state_dict()) == ["center.center", "patch_center.center"]
    assert loss_fn.center.center.shape == (1, K) and loss_fn.patch_center.center.shape == (1, 1, K)


def test_no_mask_gives_zero_patch_loss_but_still_updates_the_patch_centre() -> None:
    inputs = _inputs()
    inputs["masks"] = torch.zeros(2 * B, N, dtype=torch.bool)
    loss_fn = _loss()
    out = loss_fn(epoch=0, **inputs)
    assert out.patch.item() == 0.0 and torch.equal(out.loss, out.cls)
    expected = 0.1 * inputs["teacher_patch"].mean(dim=(0, 1)).reshape(1, 1, K)
    torch.testing.assert_close(loss_fn.patch_center.center, expected)


def test_patch_term_averages_over_all_images_including_unmasked_ones() -> None:
    inputs = _inputs(torch.float64)
    inputs["masks"] = torch.zeros(2 * B, N, dtype=torch.bool)
    inputs["masks"][1, :2] = True  # one masked image out of 2B: its mean over 2 tokens / (2B)
    out = _loss().double()(epoch=0, **inputs)
    teacher = torch.softmax(inputs["teacher_patch"][1, :2] / 0.04, dim=-1)
    student = torch.log_softmax(inputs["student_patch"][1, :2] / 0.1, dim=-1)
    expected = -(teacher * student).sum(dim=-1).mean() / (2 * B)
    torch.testing.assert_close(out.patch, expected, rtol=1e-12, atol=1e-12)


def test_cls_term_is_the_dino_loss_and_lambdas_scale_the_terms() -> None:
    inputs = _inputs(torch.float64)
    plain = _loss().double()(epoch=1, **inputs)
    dino = DINOLoss(K, 2 + L, 0.04, 0.07, 3, 10).double()
    student = torch.cat([inputs["student_cls"], inputs["student_local_cls"]])
    torch.testing.assert_close(plain.cls, dino(student, inputs["teacher_cls"], 1), rtol=1e-12, atol=1e-12)
    weighted = _loss(lambda_cls=0.5, lambda_patch=3.0).double()(epoch=1, **inputs)
    torch.testing.assert_close(weighted.cls, 0.5 * plain.cls)
    torch.testing.assert_close(weighted.patch, 3.0 * plain.patch)
    torch.testing.assert_close(weighted.loss, weighted.cls + weighted.patch)


def test_without_local_crops() -> None:
    out = _loss(num_local_crops=0)(epoch=0, **_inputs(local=False))
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="student_local_cls"):
        _loss()(epoch=0, **_inputs(local=False))


def test_mim_start_holds_only_the_patch_temperature() -> None:
    loss_fn = IBOTLoss(K, K, L, 0.04, 0.07, 0.03, 0.06, 3, 10, mim_start_epoch=2)
    assert loss_fn.teacher_temps(0) == pytest.approx((0.04, 0.03))
    assert loss_fn.teacher_temps(2) == pytest.approx((0.07, 0.03))
    assert loss_fn.teacher_temps(3) == pytest.approx((0.07, 0.045))
    assert loss_fn.teacher_temps(50) == pytest.approx((0.07, 0.06))


def test_bf16_inputs_give_a_float32_loss_close_to_fp32() -> None:
    low = _loss()(epoch=0, **_inputs(torch.bfloat16))
    full = _loss()(epoch=0, **_inputs(torch.float32))
    assert low.loss.dtype == torch.float32 and torch.isfinite(low.loss)
    torch.testing.assert_close(low.loss, full.loss, rtol=2e-2, atol=0.0)


def test_autocast_does_not_lower_the_loss_precision() -> None:
    expected = _loss()(epoch=0, **_inputs())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _loss()(epoch=0, **_inputs())
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, expected.loss, rtol=1e-6, atol=1e-6)


def test_inputs_are_not_modified_and_teachers_get_no_gradient() -> None:
    inputs = _inputs()
    for value in inputs.values():
        if value.is_floating_point():
            value.requires_grad_(True)
    before = {name: value.detach().clone() for name, value in inputs.items()}
    _loss()(epoch=0, **inputs).loss.backward()
    for name, value in inputs.items():
        assert torch.equal(value.detach(), before[name]), name
    assert inputs["teacher_cls"].grad is None and inputs["teacher_patch"].grad is None
    for name in ("student_cls", "student_patch", "student_local_cls"):
        assert inputs[name].grad is not None and torch.isfinite(inputs[name].grad).all(), name


@pytest.mark.parametrize("bad", ["mask_dtype", "mask_shape", "patch_dim", "teacher_shape"])
def test_rejects_inconsistent_inputs(bad: str) -> None:
    inputs = _inputs()
    if bad == "mask_dtype":
        inputs["masks"] = inputs["masks"].float()
    elif bad == "mask_shape":
        inputs["masks"] = inputs["masks"][:, :-1]
    elif bad == "patch_dim":
        inputs["student_patch"] = inputs["student_patch"][..., :-1]
    else:
        inputs["teacher_cls"] = inputs["teacher_cls"][:-1]
    with pytest.raises(ValueError):
        _loss()(epoch=0, **inputs)


# ------------------------------------------------------- masked-token predictions only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_token_predictions_give_the_same_loss_gradients_and_centres(dtype: torch.dtype) -> None:
    full_inputs = _inputs(dtype)
    full_inputs["student_patch"].requires_grad_(True)
    selected_inputs = {**full_inputs, "student_patch": full_inputs["student_patch"].detach().clone()}
    selected_inputs["student_patch"].requires_grad_(True)
    masks = full_inputs["masks"]
    full_fn, selected_fn = _loss().to(dtype), _loss().to(dtype)
    full = full_fn(epoch=1, **full_inputs)
    picked = selected_inputs["student_patch"][masks]  # (M, K), row-major like masked_token_index
    selected = selected_fn(epoch=1, **{**selected_inputs, "student_patch": picked})
    for field in ("loss", "cls", "patch"):  # the same sums in the same order: equal, not just close
        torch.testing.assert_close(getattr(selected, field), getattr(full, field), rtol=1e-12, atol=0.0)
    full.loss.backward()
    selected.loss.backward()
    torch.testing.assert_close(selected_inputs["student_patch"].grad, full_inputs["student_patch"].grad)
    assert not full_inputs["student_patch"].grad[~masks].any()  # unmasked rows never count
    torch.testing.assert_close(selected_fn.patch_center.center, full_fn.patch_center.center)
    torch.testing.assert_close(selected_fn.center.center, full_fn.center.center)


def test_masked_token_index_orders_rows_like_boolean_indexing() -> None:
    masks = _inputs()["masks"]
    grid = torch.arange(masks.numel()).view(masks.shape)
    assert torch.equal(masked_token_index(masks), grid[masks])
    student = torch.randn(2 * B, N, K, dtype=torch.float64)
    teacher = torch.softmax(torch.randn(2 * B, N, K, dtype=torch.float64), dim=-1)
    index = masked_token_index(masks)
    expected = masked_patch_loss(torch.log_softmax(student, -1), teacher, masks)
    actual = selected_patch_loss(torch.log_softmax(student[masks], -1), teacher[masks], masks, index)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=0.0)


def test_masked_token_predictions_without_any_mask_and_with_a_wrong_row_count() -> None:
    inputs = _inputs()
    inputs["masks"] = torch.zeros(2 * B, N, dtype=torch.bool)
    out = _loss()(epoch=0, **{**inputs, "student_patch": torch.zeros(0, K)})
    assert out.patch.item() == 0.0 and torch.equal(out.loss, out.cls)
    inputs = _inputs()
    with pytest.raises(ValueError, match="student_patch must have shape"):
        _loss()(epoch=0, **{**inputs, "student_patch": torch.zeros(int(inputs["masks"].sum()) + 1, K)})
