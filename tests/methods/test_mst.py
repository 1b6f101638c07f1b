"""MST: the loss by hand, masks from the LOW teacher attention, two-step runs, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.heads import DINOHead, MSTDecoder
from attmask.losses import DINOLoss
from attmask.masking import MaskingConfig, build_masking
from attmask.methods import MST, Encoder, EncoderOutput, build_method
from attmask.models import build_vit
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import crash_and_resume, losses_by_step, tiny_config

OUT_DIM = 32


def _encoder(decoder: bool) -> Encoder:
    backbone = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    head = DINOHead(192, OUT_DIM, hidden_dim=24, bottleneck_dim=8)
    return Encoder(backbone, head, decoder=MSTDecoder(192, 4) if decoder else None, patch_outputs=False)


def _method(strategy: str = "attmask_low", ratio: float = 0.5) -> MST:
    torch.manual_seed(0)
    masking = build_masking(MaskingConfig(strategy=strategy, ratio=(ratio, ratio), probability=1.0))
    loss = DINOLoss(OUT_DIM, 4, 0.04, 0.04, 0, 1, student_temp=0.1)
    return MST(_encoder(True), _encoder(False), masking, loss, seed=0)


def _crops() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.randn(4, 3, 16, 16, generator=g) for _ in range(2)] + [
        torch.randn(4, 3, 8, 8, generator=g) for _ in range(2)
    ]


def _dino_by_hand(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DINO eq. 1 with centre 0, T_t = 0.04, T_s = 0.1: mean over pairs (q, v != q) of H."""
    teacher_probs = F.softmax(teacher / 0.04, dim=-1).chunk(2)
    student_logs = F.log_softmax(student / 0.1, dim=-1).chunk(4)
    terms = [-(t * s).sum(-1).mean() for q, t in enumerate(teacher_probs) for v, s in enumerate(student_logs) if v != q]
    return torch.stack(terms).mean()


def test_loss_is_dino_plus_0_6_times_l1_of_the_whole_restored_views() -> None:
    method = _method()
    crops = _crops()
    out = method.training_step(crops, epoch=0)

    views = torch.cat(crops[:2])  # (8, 3, 16, 16)
    teacher, student = method.teacher, method.student
    with torch.no_grad():
        t = teacher.backbone(views, return_cls_attention=True)
        scores = t.cls_attention.mean(dim=1)  # (8, 16)
        masks = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.argsort(dim=1)[:, :8], True)
        s = student.backbone(views, mask=masks)
        local = student.backbone(torch.cat(crops[2:])).cls_token
        student_logits = torch.cat([student.head(s.cls_token), student.head(local)])
        dino = _dino_by_hand(student_logits, teacher.head(t.cls_token))
        restore = (student.decoder(s.patch_tokens, (4, 4)) - views).abs().mean()
    torch.testing.assert_close(out.logs["loss_cls"], dino, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logs["loss_restore"], restore, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss.detach(), dino + 0.6 * restore, rtol=1e-5, atol=1e-6)
    assert out.logs["mask_fraction"] == 0.5 and out.logs["teacher_temp"] == pytest.approx(0.04)
    assert {"teacher_entropy", "teacher_kl_centre", "feature_std"} <= set(out.logs)

    out.loss.backward()
    assert all(p.grad is not None for p in student.decoder.parameters())
    assert not any("decoder" in name for name in method.teacher.state_dict())


def test_masks_hide_the_least_attended_tokens() -> None:
    method = _method(ratio=0.25)
    g = torch.Generator().manual_seed(5)
    attention = torch.rand(8, 3, 16, generator=g)  # (G*B, heads, N)
    target = EncoderOutput(cls=torch.zeros(8, OUT_DIM), cls_attention=attention)
    masks = method.draw_masks(torch.zeros(8, 3, 16, 16), target.cls_attention)
    lowest = attention.mean(dim=1).argsort(dim=1)[:, :4]  # 4 = 25% of 16, least attended first
    expected = torch.zeros(8, 16, dtype=torch.bool).scatter_(1, lowest, True)
    assert torch.equal(masks, expected)


def test_reconstruct_gives_masks_and_whole_images() -> None:
    method = _method()
    images = torch.randn(3, 3, 16, 16)
    result = method.reconstruct(images)
    assert result.reconstruction.shape == images.shape and result.patch_size == 4
    assert result.masks.shape == (3, 16) and result.masks.sum(dim=1).tolist() == [8, 8, 8]


def test_builder_defaults_and_override_the_weight() -> None:
    config = tiny_config("train.method=mst", "masking.strategy=attmask_low")
    method = build_method(config, img_size=16, num_local_crops=2)
    assert isinstance(method, MST) and method.weight == 0.6 and method.evaluated_branch == "teacher"
    assert isinstance(method.student.decoder, MSTDecoder) and method.teacher.decoder is None
    assert build_method(tiny_config("train.method=mst", "recon.weight=0.25"), 16, 2).weight == 0.25


@pytest.mark.parametrize("strategy", ["attmask_low", "block"])
def test_two_step_smoke_run(tmp_path, strategy: str) -> None:
    config = tiny_config("train.method=mst", f"masking.strategy={strategy}", "optim.epochs=1")
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert all(math.isfinite(r[k]) for k in ("loss", "loss_cls", "loss_restore"))
        assert r["loss"] == pytest.approx(r["loss_cls"] + 0.6 * r["loss_restore"], rel=1e-5)
        assert r["mask_fraction"] > 0 and r["feature_std"] > 0
    state = load_checkpoint(tmp_path / "checkpoint.pth")
    assert any(k.startswith("student.decoder.") for k in state["method"])
    assert not any(k.startswith("teacher.decoder.") for k in state["method"])
    loaded = load_backbone(tmp_path)
    assert loaded.which == "teacher"
    teacher = trainer.method.teacher.backbone.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in loaded.model.state_dict().items())


def test_resume_continues_exactly(tmp_path, monkeypatch) -> None:
    overrides = (
        "train.method=mst",
        "masking.strategy=attmask_low",
        "optim.epochs=2",
        "train.max_steps_per_epoch=3",
        "train.save_every_steps=2",
        "masking.probability=0.5",
    )
    Trainer(tiny_config(*overrides), tmp_path / "straight").fit()
    expected = losses_by_step(read_log(tmp_path / "straight"))
    assert sorted(expected) == list(range(1, 7))

    assert crash_and_resume(overrides, tmp_path / "resumed", 5, monkeypatch) == expected
