"""The pieces of ``train.fidelity=original`` and the fixed-masks API, one by one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from attmask.cli.main import main
from attmask.config import ConfigError
from attmask.engine.data import crop_config
from attmask.engine.optim import clip_per_parameter
from attmask.masking import MaskingConfig, build_masking
from attmask.methods import METHODS, build_method
from attmask.models import build_vit
from tests.engine.tiny import tiny_config
from tests.methods.test_all_methods import METHOD_OVERRIDES


def test_original_position_resize_is_the_plus_point_one_interpolation() -> None:
    original = build_vit("vit_tiny", img_size=32, patch_size=8, depth=1, pos_embed_resize="original")
    table = original.pos_embed
    grid = original.patch_embed.grid_size
    for target in ((2, 2), (2, 3), (3, 3)):
        ours = original._position_embedding(target)
        patches = table[:, 1:].reshape(1, *grid, -1).permute(0, 3, 1, 2)
        scale = ((target[0] + 0.1) / 4, (target[1] + 0.1) / 4)
        expected = F.interpolate(patches, scale_factor=scale, mode="bicubic").permute(0, 2, 3, 1).flatten(1, 2)
        torch.testing.assert_close(ours, torch.cat([table[:, :1], expected], 1), rtol=0, atol=0)
    timm = resample_abs_pos_embed(table, new_size=[2, 2], old_size=[4, 4], num_prefix_tokens=1)
    assert (timm - original._position_embedding((2, 2))).abs().max() > 1e-4  # the two rules differ
    with pytest.raises(ValueError, match="choose timm or original"):
        build_vit("vit_tiny", img_size=32, patch_size=8, pos_embed_resize="nearest")


def test_batched_per_parameter_clip_is_the_upstream_rule() -> None:
    """DINO's ``utils.clip_gradients``: ``grad * c`` with ``c = max_norm / (norm + 1e-6)`` where ``c < 1``
    (its upstream loop, a host sync per parameter, is the step benchmark's: tests/benchmarks)."""
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) * scale for scale in (0.01, 1.0, 10.0)]
    batched = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for parameter, g in zip(batched, grads):
        parameter.grad = g.clone()
    norm = clip_per_parameter(batched, 0.3)
    torch.testing.assert_close(norm, torch.stack([g.norm() for g in grads]).norm())
    for parameter, g in zip(batched, grads):
        coefficient = 0.3 / (g.norm() + 1e-6)
        torch.testing.assert_close(parameter.grad, g * coefficient if coefficient < 1 else g, rtol=1e-6, atol=0)
    assert torch.equal(batched[0].grad, grads[0])  # under the threshold: untouched


@pytest.mark.parametrize("strategy", ["attmask_high", "attmask_hint", "random"])
def test_original_ratio_draw_is_one_per_batch(strategy) -> None:
    config = MaskingConfig(strategy=strategy, ratio=(0.1, 0.5), probability=1.0)
    scores = torch.rand(64, 49)
    per_batch = build_masking(config, ratio_per_batch=True)(64, (7, 7), scores, torch.Generator().manual_seed(0))
    per_row = build_masking(config)(64, (7, 7), scores, torch.Generator().manual_seed(0))
    if strategy != "attmask_hint":
        assert per_batch.sum(1).unique().numel() == 1
        assert per_row.sum(1).unique().numel() > 1
    else:  # hidden = floor(49 r) - floor(49 * 0.1 r'), one r and one r' for the whole batch
        assert per_batch.sum(1).unique().numel() == 1


def test_original_hint_ratio_is_show_max_times_a_second_ratio_draw() -> None:
    config = MaskingConfig(strategy="attmask_hint", ratio=(0.5, 0.5), show_max=0.2, probability=1.0)
    hidden = build_masking(config, ratio_per_batch=True)(4, (10, 10), torch.rand(4, 100), torch.Generator())
    assert hidden.sum(1).tolist() == [50 - 10] * 4  # show ratio 0.2 * 0.5 = 0.1: 10 of 100 revealed


def test_fidelity_is_checked_and_model_width_heads_come_from_the_config() -> None:
    with pytest.raises(ConfigError, match="train.fidelity"):
        build_method(tiny_config("train.fidelity=orignal"), 16, 2)
    method = build_method(tiny_config("model.embed_dim=48", "model.num_heads=4"), 16, 2)
    backbone = method.student.backbone
    assert backbone.embed_dim == 48 and backbone.num_heads == 4 and backbone.blocks[0].attn.num_heads == 4
    original = build_method(tiny_config("train.fidelity=original"), 16, 2)
    assert original.student.backbone.pos_embed_resize == "original" and original.masking.ratio_per_batch


def test_bad_fidelity_is_one_line_from_the_cli(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "pretrain",
                "--set",
                "train.fidelity=exact",
                "--set",
                "data.source=digits",
                "--set",
                "data.num_workers=0",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "train.fidelity" in err and "default, original" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(METHODS))
def test_fixed_masks_replace_every_draw(name) -> None:
    config = tiny_config(*METHOD_OVERRIDES[name])
    crops_config = crop_config(config.data)
    torch.manual_seed(0)
    method = build_method(config, crops_config.global_size, crops_config.num_local)
    views = 2 if name in {"ibot", "dino", "mst", "lut", "lut_simmim"} else 1
    batch, tokens = 4, (crops_config.global_size // config.model.patch_size) ** 2
    masks = torch.zeros(views * batch, tokens, dtype=torch.bool)
    masks[:, : tokens // 2] = True
    images = torch.randn(batch, 3, crops_config.global_size, crops_config.global_size)
    spec = METHODS[name]
    if spec.views == "multicrop":
        crops = [images] * 2 + [torch.randn(batch, 3, 8, 8)] * crops_config.num_local
    else:
        crops = [images] * spec.num_views
    state = method.generator.get_state()
    drawn = []
    original = type(method).given_masks

    def spy(self, rows, num_tokens, device):
        result = original(self, rows, num_tokens, device)
        drawn.append(result)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(method), "given_masks", spy)
        with method.fixed_masks(masks):
            out = method.training_step(crops, 0)
    assert drawn and all(d is not None and torch.equal(d, masks) for d in drawn)
    if "mask_fraction" in out.logs:
        assert out.logs["mask_fraction"].item() == pytest.approx(0.5)
    assert torch.equal(method.generator.get_state(), state)  # no draw consumed the generator
    assert method._fixed_masks is None  # the block restored the default


def test_fixed_masks_of_the_wrong_shape_or_type_are_one_line_errors() -> None:
    config = tiny_config()
    method = build_method(config, 16, 2)
    images = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"fixed masks have shape \(4, 3\), but this step masks \(4, 16\)"):
        with method.fixed_masks(torch.zeros(4, 3, dtype=torch.bool)):
            method.training_step([images, images, torch.randn(2, 3, 8, 8)], 0)
    with pytest.raises(ValueError, match="bool tensor"):
        with method.fixed_masks(torch.zeros(4, 16)):
            pass


def test_the_student_runner_is_not_saved_twice_and_old_checkpoints_still_load() -> None:
    method = build_method(tiny_config(), 16, 2)
    state = method.state_dict()
    assert not any(key.startswith("_student_runner.") for key in state)
    legacy = {
        **state,
        **{f"_student_runner.{k[len('student.') :]}": v for k, v in state.items() if k.startswith("student.")},
    }
    method.load_state_dict(legacy)  # written before the fix: the duplicate is ignored
