"""LUT: disjoint visible sets, full-view EMA teacher, L = L_MAE + 0.25 L_BC, trainer smoke run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from attmask.config import ConfigError, load_config
from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.losses import mae_loss
from attmask.masking import disjoint_visible_masks, paired_visible_count
from attmask.methods import build_method
from attmask.methods.ema import paired_parameters
from attmask.methods.lut import LUT
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import tiny_config, train_on_gloo

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LUT_TINY = (
    "train.method=lut",
    "masking.strategy=random",
    "masking.ratio=0.75",
    "recon.decoder_dim=32",
    "recon.decoder_depth=1",
    "recon.decoder_heads=2",
    "lut.hidden_dim=32",
    "lut.out_dim=16",
)


def _lut(*overrides: str) -> LUT:
    """The tiny config's LUT: 16 px crops, 4 px patches, N = 16 tokens, V = 4 per view."""
    torch.manual_seed(0)
    return build_method(tiny_config(*LUT_TINY, *overrides), 16, 0)


def _views(batch: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(2)]


def _cosine_term(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of 2 - 2 q.k / (|q| |k|), written out."""
    dot = (prediction * target).sum(-1)
    return (2 - 2 * dot / (prediction.norm(dim=-1) * target.norm(dim=-1))).mean()


@pytest.mark.parametrize(("num_tokens", "visible"), [(16, 4), (196, 49), (17, 5)])
def test_two_views_keep_disjoint_sets_of_v_tokens(num_tokens: int, visible: int) -> None:
    first, second = disjoint_visible_masks(64, num_tokens, 0.75, torch.Generator().manual_seed(0))
    assert paired_visible_count(num_tokens, 0.75) == visible  # V = N - floor(0.75 N)
    assert first.dtype == torch.bool and first.shape == (64, num_tokens)
    assert ((~first).sum(1) == visible).all() and ((~second).sum(1) == visible).all()
    assert not (~first & ~second).any(), "a position is visible in both views"
    assert not torch.equal(first[0], first[1]), "every image draws its own shuffle"


def test_masks_come_from_the_methods_generator_only() -> None:
    method = _lut()
    views = _views()
    method.generator.manual_seed(5)
    torch.manual_seed(123)
    first = method.draw_view_masks(views[0])
    method.generator.manual_seed(5)
    torch.manual_seed(456)  # the global generator plays no part
    second = method.draw_view_masks(views[0])
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(((~m).sum(1) == 4).all() for m in first) and not (~first[0] & ~first[1]).any()


def test_too_few_tokens_for_two_disjoint_views_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"2V <= N") as error:
        disjoint_visible_masks(2, 16, 0.4)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("masking.strategy=attmask_high",), "masking.strategy=random"),
        (("masking.strategy=block",), "masking.strategy=random"),
        (("masking.ratio=[0.6, 0.8]",), "single value"),
        (("masking.probability=0.5",), "single value"),
        (("masking.ratio=0.4",), r"2V <= N"),
    ],
)
def test_bad_masking_settings_are_one_line_config_errors(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        _lut(*overrides)
    assert "\n" not in str(error.value)


def test_teacher_sees_the_full_views_and_gets_no_gradient() -> None:
    method = _lut()
    seen: dict[str, tuple[int, ...]] = {}
    method.teacher.backbone.register_forward_hook(
        lambda module, args, output: seen.update(
            teacher_input=tuple(args[0].shape), teacher_tokens=tuple(output.patch_tokens.shape)
        )
    )
    method.student.backbone.blocks[0].register_forward_hook(
        lambda module, args, output: seen.update(student_tokens=tuple(args[0].shape))
    )
    views = _views(batch=6)
    out = method.training_step(views, epoch=0)
    assert seen["teacher_input"] == (12, 3, 16, 16)  # both views, every pixel
    assert seen["teacher_tokens"][:2] == (12, 16)  # all N = 16 patch tokens
    assert seen["student_tokens"][:2] == (12, 1 + 4)  # [CLS] + V = 4 visible tokens per view
    out.loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in method.teacher.parameters())
    frozen = [name for name, p in method.student.named_parameters() if not p.requires_grad]
    assert frozen == ["backbone.mask_token"], "only the encoder's unused mask token is frozen"
    for name in ("backbone", "decoder", "projector", "predictor"):
        grads = [p.grad for p in getattr(method.student, name).parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name


def test_total_loss_is_mae_plus_a_quarter_of_the_broader_context_loss() -> None:
    method = _lut()
    views = _views(batch=6)
    method.generator.manual_seed(7)
    out = method.training_step(views, epoch=0)

    method.generator.manual_seed(7)  # the same shuffle, the parts recomputed view by view
    masks = method.draw_view_masks(views[0])
    student, teacher, patch = method.student, method.teacher, method.student.backbone.patch_size
    with torch.no_grad():
        loss_mae, pooled, targets = 0.0, [], []
        for view, mask in zip(views, masks):
            prediction, visible_tokens = student.autoencode(view, mask)
            patches = view.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, r, c, p, p)
            patches = patches.permute(0, 2, 3, 4, 5, 1).reshape(view.shape[0], 16, -1)  # (B, N, p*p*C)
            normalised = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
            loss_mae = loss_mae + mae_loss(prediction, normalised, mask) / 2
            pooled.append(student.predictor(student.projector(visible_tokens.mean(1))))
            targets.append(teacher.projector(teacher.backbone(view).patch_tokens.mean(1)))
        loss_bc = (_cosine_term(pooled[0], targets[1]) + _cosine_term(pooled[1], targets[0])) / 2

    torch.testing.assert_close(out.logs["loss_mae"], loss_mae, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_bc"], loss_bc, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss.detach(), loss_mae + 0.25 * loss_bc, rtol=1e-5, atol=1e-6)
    assert out.logs["mask_fraction"].item() == pytest.approx(0.75)
    assert 0 < loss_bc < 4


def test_ema_pairs_the_teachers_backbone_and_projector_with_the_students() -> None:
    method = _lut()
    teacher_names = [name for name, _ in method.teacher.named_parameters()]
    assert {name.split(".")[0] for name in teacher_names} == {"backbone", "projector"}
    student = dict(method.student.named_parameters())
    assert any(name.startswith("predictor.") for name in student)
    assert any(name.startswith("decoder.") for name in student)
    for name, parameter in method.teacher.named_parameters():  # initialised from the student
        torch.testing.assert_close(parameter, student[name].detach())
    assert len(paired_parameters(method.teacher, method.student)[0]) == len(teacher_names)

    with torch.no_grad():
        for parameter in method.student.parameters():
            parameter.add_(1.0)
    before = {name: p.detach().clone() for name, p in method.teacher.named_parameters()}
    method.update_teacher(0.9)
    for name, parameter in method.teacher.named_parameters():
        torch.testing.assert_close(parameter, 0.9 * before[name] + 0.1 * student[name].detach())
        assert not torch.equal(parameter, before[name]), f"{name} did not move"


def test_reconstruction_keeps_v_visible_patches() -> None:
    method = _lut()
    images = _views(batch=3)[0]
    result = method.reconstruct(images)
    assert result.reconstruction.shape == images.shape and result.patch_size == 4
    assert ((~result.masks).sum(1) == 4).all()
    visible = (~result.masks).reshape(3, 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2)
    pixels = visible.unsqueeze(1).expand_as(images)
    torch.testing.assert_close(result.reconstruction[pixels], images[pixels])


def test_two_step_trainer_smoke_run_loads_the_student_backbone(tmp_path) -> None:
    config = tiny_config(*LUT_TINY, "optim.epochs=1")
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert all(math.isfinite(record[key]) for key in ("loss", "loss_mae", "loss_bc"))
        assert record["mask_fraction"] == pytest.approx(0.75)
        assert record["loss"] == pytest.approx(record["loss_mae"] + 0.25 * record["loss_bc"], rel=1e-5)
    state = load_checkpoint(tmp_path / "checkpoint.pth")
    progress = state["progress"]
    assert {key: progress[key] for key in ("epoch", "step", "global_step")} == {"epoch": 1, "step": 0, "global_step": 2}
    assert progress["train_seconds"] > 0
    assert state["evaluated_branch"] == "student"
    loaded = load_backbone(tmp_path)
    assert loaded.which == "student"
    student = trainer.method.student.backbone.state_dict()
    teacher = trainer.method.teacher.backbone.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, student[key])
    assert not torch.equal(student["pos_embed"], teacher["pos_embed"]), "EMA teacher lags the student"


def test_tiny_preset_builds_a_lut_with_four_visible_tokens_per_view() -> None:
    config = load_config(CONFIGS / "fashion_mnist_lut_tiny.yaml")
    method = build_method(config, 28, 0)
    assert isinstance(method, LUT) and method.context_weight == 0.25
    masks = method.draw_view_masks(torch.zeros(2, 3, 28, 28))
    assert [int((~m).sum(1)[0]) for m in masks] == [4, 4]
    assert method.student.projector.layers[-1].out_features == config.lut.out_dim


def test_two_gloo_processes_run_the_student_under_ddp(tmp_path) -> None:
    """DDP wraps the whole student forward; every trained parameter must get a gradient in
    every step (DDP without ``find_unused_parameters`` fails on the next step otherwise)."""
    train_on_gloo(tmp_path, (*LUT_TINY, "optim.epochs=1", "train.max_steps_per_epoch=3", "data.batch_size=4"))
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["loss_bc"]) for r in steps)
