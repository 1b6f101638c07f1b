"""LUT on SimMIM: disjoint visible cells, context pooled over visible positions only,
L = L_SimMIM + 0.25 L_BC, trainer run, configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.config import ConfigError
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.losses import masked_l1_loss
from attmask.methods import build_method
from attmask.methods.lut_simmim import LUTSimMIM
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import tiny_config
from tests.methods.test_lut import _cosine_term, _views

LUT_SIMMIM = (
    "train.method=lut_simmim",
    "masking.strategy=random",
    "masking.ratio=0.5",
    "masking.probability=1.0",
    "recon.mask_patch_size=8",
    "lut.hidden_dim=32",
    "lut.out_dim=16",
)


def _method(*overrides: str) -> LUTSimMIM:
    """16 px crops, 4 px patches (4x4 tokens), 8 px cells (2x2 cells): 2 visible cells per view."""
    torch.manual_seed(0)
    return build_method(tiny_config(*LUT_SIMMIM, *overrides), 16, 0)


def test_views_keep_disjoint_cells() -> None:
    method = _method()
    first, second = method.draw_view_masks(_views()[0])
    assert first.shape == (6, 16) and (~first).sum(1).tolist() == [8] * 6  # 2 cells of 4 tokens
    assert not ((~first) & (~second)).any(), "no token is visible in both views"
    cells = first.reshape(6, 2, 2, 2, 2)  # (B, cell row, token row, cell col, token col)
    assert torch.equal(cells.all(dim=(2, 4)), cells.any(dim=(2, 4))), "whole cells are hidden"


def test_context_pools_only_visible_positions() -> None:
    """Changing the encoder output at hidden positions must not move the student's context."""
    method = _method()
    views = _views()
    masks = method.draw_view_masks(views[0])
    student = method.student
    original = student.backbone.forward

    def spoil_hidden(images, mask=None, **kwargs):
        out = original(images, mask=mask, **kwargs)
        out.patch_tokens = torch.where(mask.unsqueeze(-1), out.patch_tokens + 100.0, out.patch_tokens)
        return out

    student.eval()
    with torch.no_grad():
        clean = student(tuple(views), masks).contexts
        student.backbone.forward = spoil_hidden
        spoiled = student(tuple(views), masks).contexts
    for a, b in zip(clean, spoiled):
        torch.testing.assert_close(a, b)


def test_total_loss_is_simmim_plus_a_quarter_of_the_broader_context_loss() -> None:
    method = _method()
    views = _views()
    method.generator.manual_seed(3)
    out = method.training_step(views, epoch=0)
    method.generator.manual_seed(3)
    masks = method.draw_view_masks(views[0])
    student, teacher = method.student, method.teacher
    with torch.no_grad():
        loss_pixel, contexts, targets = 0.0, [], []
        for view, mask in zip(views, masks):
            encoded = student.backbone(view, mask=mask)
            prediction = student.head(encoded.patch_tokens, (4, 4))
            pixels = mask.reshape(6, 1, 4, 1, 4, 1).expand(6, 1, 4, 4, 4, 4).reshape(6, 1, 16, 16)
            loss_pixel = loss_pixel + masked_l1_loss(prediction, view, pixels) / 2
            visible = encoded.patch_tokens[~mask].reshape(6, 8, -1).mean(1)
            contexts.append(student.predictor(student.projector(visible)))
            targets.append(teacher.projector(teacher.backbone(view).patch_tokens.mean(1)))
        loss_bc = (_cosine_term(contexts[0], targets[1]) + _cosine_term(contexts[1], targets[0])) / 2
    torch.testing.assert_close(out.logs["loss_simmim"], loss_pixel, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_bc"], loss_bc, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss.detach(), loss_pixel + 0.25 * loss_bc, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("masking.strategy=attmask_high", "masking.strategy=random"),
        ("masking.ratio=0.25", "two disjoint visible sets"),
        ("recon.mask_patch_size=6", "must be a multiple of model.patch_size"),
    ],
)
def test_bad_settings_are_one_line_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _method(override)


def test_two_step_trainer_run_evaluates_the_encoder(tmp_path) -> None:
    trainer = Trainer(tiny_config(*LUT_SIMMIM, "optim.epochs=1"), tmp_path)
    trainer.fit()
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["loss_bc"]) and r["mask_fraction"] == 0.5 for r in steps)
    loaded = load_backbone(tmp_path)
    assert loaded.which == "student"
    result = trainer.method.reconstruct(_views(2)[0])
    assert result.reconstruction.shape == (2, 3, 16, 16)
