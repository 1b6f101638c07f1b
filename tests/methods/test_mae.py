"""MAE: encoder on visible tokens only, decoder over all positions, pluggable masking, trainer runs."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.config import ConfigError
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.losses import mae_loss, normalized_patches
from attmask.masking import attmask_high, scores_from_cls_attention
from attmask.methods import build_method
from attmask.models import build_vit, patchify
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import tiny_config

MAE = (
    "train.method=mae",
    "masking.strategy=random",
    "masking.ratio=0.75",
    "masking.probability=1.0",
    "recon.decoder_dim=32",
    "recon.decoder_depth=1",
    "recon.decoder_heads=2",
)


def _method(*overrides: str):
    torch.manual_seed(0)
    return build_method(tiny_config(*MAE, *overrides), img_size=16, num_local_crops=0, seed=0).eval()


def test_forward_visible_with_every_token_equals_the_full_forward() -> None:
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", img_size=16, patch_size=4, depth=2).eval()
    images = torch.randn(2, 3, 16, 16)
    everything = torch.arange(16).expand(2, 16)
    full, visible = vit(images), vit.forward_visible(images, everything)
    torch.testing.assert_close(visible.patch_tokens, full.patch_tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(visible.cls_token, full.cls_token, rtol=1e-5, atol=1e-5)


def test_prediction_ignores_the_pixels_of_hidden_patches() -> None:
    """The encoder never sees hidden patches: changing them changes no prediction."""
    method = _method()
    images = torch.randn(3, 3, 16, 16)
    masks = method.draw_masks(images)
    assert masks.sum(1).tolist() == [12, 12, 12]
    changed = images.clone()
    pixels = masks.reshape(3, 1, 4, 1, 4, 1).expand(3, 3, 4, 4, 4, 4).reshape(3, 3, 16, 16)
    changed[pixels] = 100.0
    with torch.no_grad():
        before, _ = method.student(images, masks)
        after, _ = method.student(changed, masks)
    torch.testing.assert_close(before, after)
    assert before.shape == (3, 16, 4 * 4 * 3)


def test_training_step_loss_is_mse_on_normalised_hidden_patches() -> None:
    method = _method()
    images = torch.randn(2, 3, 16, 16)
    state = method.generator.get_state()
    out = method.training_step([images], epoch=0)
    method.generator.set_state(state)
    masks = method.draw_masks(images)
    with torch.no_grad():
        prediction, _ = method.student(images, masks)
    target = normalized_patches(patchify(images, 4))
    manual = ((prediction - target) ** 2).mean(-1)[masks].mean()
    torch.testing.assert_close(out.loss.detach(), manual)
    torch.testing.assert_close(mae_loss(prediction, target, masks), manual)
    assert float(out.logs["mask_fraction"]) == 0.75


def test_attmask_guided_mae_hides_what_the_ema_encoder_attends_to() -> None:
    method = _method("masking.strategy=attmask_high")
    assert method.teacher is not None and not any(p.requires_grad for p in method.teacher.parameters())
    images = torch.randn(4, 3, 16, 16)
    state = method.generator.get_state()
    masks = method.draw_masks(images)
    method.generator.set_state(state)
    with torch.no_grad():
        attention = method.teacher.backbone(images, return_cls_attention=True).cls_attention
    expected = attmask_high(scores_from_cls_attention(attention), torch.full((4,), 0.75))
    assert torch.equal(masks, expected)
    assert _method().teacher is None, "random masking builds no EMA copy"


@pytest.mark.parametrize(
    ("override", "message"), [("masking.strategy=block", "not 'block'"), ("masking.ratio=[0.5, 0.8]", "single value")]
)
def test_masking_without_a_fixed_count_is_a_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _method(override)


@pytest.mark.parametrize("strategy", ["random", "attmask_low"])
def test_two_step_trainer_run_and_the_encoder_is_what_gets_evaluated(tmp_path, strategy: str) -> None:
    config = tiny_config(
        *MAE, f"masking.strategy={strategy}", "optim.epochs=1", "optim.betas=[0.9, 0.95]", "optim.clip_grad=0"
    )
    trainer = Trainer(config, tmp_path)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    trainer.fit()
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(math.isfinite(r["loss"]) for r in steps)
    assert all(r["mask_fraction"] == 0.75 for r in steps)
    loaded = load_backbone(tmp_path)
    assert loaded.which == "student"
    for name, value in trainer.method.student.backbone.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value)
    assert trainer.method.eval_backbone is trainer.method.student.backbone
    if strategy == "random":
        with pytest.raises(ValueError, match="has no teacher backbone; load the student"):
            load_backbone(tmp_path, "teacher")
