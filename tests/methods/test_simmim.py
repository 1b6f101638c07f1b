"""SimMIM: L1 on hidden pixels only, mask token in the encoder's input, coarse masking cells,
any masking strategy, two-step CPU runs through the trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from attmask.config import ConfigError, load_config
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.masking import STRATEGIES, build_masking
from attmask.methods import BackboneOnly, build_method
from attmask.methods.build.pixel import mask_factor
from attmask.methods.simmim import SimMIM, SimMIMModel
from attmask.models import build_vit
from attmask.models.checkpoints import load_backbone
from tests.engine.tiny import tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

SIMMIM = ("train.method=simmim", "masking.ratio=0.6", "masking.probability=1.0")


class FixedPrediction(nn.Module):
    """A student that predicts a given image whatever it sees (to check the loss by hand)."""

    def __init__(self, prediction: torch.Tensor, patch_size: int) -> None:
        super().__init__()
        self.backbone = build_vit("vit_tiny", img_size=prediction.shape[-1], patch_size=patch_size, depth=1)
        self.prediction = nn.Parameter(prediction.clone())

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.prediction


def fixed_method(prediction: torch.Tensor, masks: torch.Tensor, weight: float = 1.0) -> SimMIM:
    method = SimMIM(FixedPrediction(prediction, patch_size=2), None, build_masking("random"), weight=weight)
    method.draw_masks = lambda views: masks  # type: ignore[method-assign]
    return method


def test_loss_on_a_hand_computed_example() -> None:
    # 3 channels, 4x4 pixels, patches of 2 px: a 2x2 grid; the top-left patch is hidden.
    images = torch.zeros(1, 3, 4, 4)
    prediction = torch.zeros(1, 3, 4, 4)
    prediction[0, 0, :2, :2] = torch.tensor([[1.0, -2.0], [3.0, 4.0]])  # hidden patch 0, channel 0
    prediction[0, 1, :2, :2] = 0.5  # hidden patch 0, channel 1: 4 pixels of error 0.5
    prediction[0, :, :, 2:] = 100.0  # visible patches 1 and 3 (right half): ignored
    masks = torch.tensor([[True, False, False, False]])  # 2x2 grid of 2 px patches
    # sum |error| = (1 + 2 + 3 + 4) + 4 * 0.5 = 12 over 4 hidden pixels and 3 channels
    expected = 0.5 * 12.0 / 4.0 / 3.0
    out = fixed_method(prediction, masks, weight=0.5).training_step([images], epoch=0)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.logs["mask_fraction"].item() == 0.25


def test_visible_pixels_do_not_count() -> None:
    torch.manual_seed(0)
    images, prediction = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    masks = torch.rand(2, 16) > 0.5
    masks[:, 0] = True
    method = fixed_method(prediction, masks)
    pixels = method.pixel_masks(masks, images)  # (B, 1, H, W)
    loss = method.training_step([images], 0).loss
    changed_visible = torch.where(pixels, prediction, prediction + torch.randn_like(prediction))
    assert method_loss(changed_visible, masks, images) == pytest.approx(loss.item(), abs=1e-6)
    changed_hidden = torch.where(pixels, prediction + 1.0, prediction)
    assert method_loss(changed_hidden, masks, images) != pytest.approx(loss.item(), abs=1e-3)


def method_loss(prediction: torch.Tensor, masks: torch.Tensor, images: torch.Tensor) -> float:
    return fixed_method(prediction, masks).training_step([images], 0).loss.item()


def tiny_simmim(*overrides: str) -> SimMIM:
    return build_method(tiny_config(*SIMMIM, *overrides), img_size=16, num_local_crops=0)


def test_encoder_input_holds_the_mask_token_at_hidden_positions() -> None:
    method = tiny_simmim("masking.strategy=random")
    backbone = method.student.backbone
    seen: list[torch.Tensor] = []
    backbone.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    images = torch.randn(2, 3, 16, 16)
    masks = method.draw_masks(images)
    prediction = method.student(images, masks)
    assert prediction.shape == images.shape
    tokens = seen[0][:, 1:]  # (B, N, D), [CLS] dropped: all N tokens reach the encoder
    position = backbone.pos_embed[:, 1:].detach()
    patches = backbone.patch_embed(images).detach()
    assert tokens.shape[1] == 16 and masks.any() and (~masks).any()
    hidden = (backbone.mask_token.detach() + position).expand_as(tokens)
    torch.testing.assert_close(tokens[masks], hidden[masks])
    torch.testing.assert_close(tokens[~masks], (patches + position)[~masks])
    assert backbone.mask_token.abs().sum() > 0, "SimMIM initialises the mask token (std 0.02)"


def test_masks_come_in_cells_of_mask_patch_size() -> None:
    method = tiny_simmim("masking.strategy=random", "recon.mask_patch_size=8")  # 2x2 tokens per cell
    assert method.mask_factor == 2
    masks = method.draw_masks(torch.randn(4, 3, 16, 16))
    cells = masks.reshape(4, 2, 2, 2, 2)  # (B, cell row, row in cell, cell col, col in cell)
    assert torch.equal(cells, cells[:, :, :1, :, :1].expand_as(cells))
    assert masks.sum(dim=1).tolist() == [8] * 4, "floor(4 cells * 0.6) = 2 cells of 4 tokens"


def test_attention_strategies_rank_cells_by_pooled_teacher_attention(monkeypatch) -> None:
    method = tiny_simmim("masking.strategy=attmask_high", "masking.ratio=0.25", "recon.mask_patch_size=8")
    scores = torch.zeros(2, 16)
    scores[:, 0] = 0.3  # top token in cell 0, but cell 3 (tokens 10, 11, 14, 15) sums to 0.8
    scores[:, [10, 11, 14, 15]] = 0.2
    monkeypatch.setattr(method, "attention_scores", lambda views, cls_attention=None: scores)
    masks = method.draw_masks(torch.randn(2, 3, 16, 16))
    assert masks.nonzero()[:, 1].tolist() == [10, 11, 14, 15] * 2


def test_no_masking_is_refused() -> None:
    with pytest.raises(ConfigError, match="hides nothing"):
        tiny_simmim("masking.strategy=none")


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "none"])
def test_every_masking_strategy_trains_and_reconstructs(strategy: str) -> None:
    method = tiny_simmim(f"masking.strategy={strategy}", "recon.mask_patch_size=8", "masking.show_ratio=[0.01, 0.05]")
    assert isinstance(method.teacher, BackboneOnly) == strategy.startswith("attmask")
    images = torch.randn(2, 3, 16, 16)
    out = method.training_step([images], epoch=0)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert method.student.backbone.mask_token.grad is not None
    result = method.reconstruct(images)
    pixels = method.pixel_masks(result.masks, images).expand_as(images)
    assert torch.equal(result.reconstruction[~pixels], images[~pixels]), "visible pixels are kept"
    assert result.reconstruction.shape == images.shape and result.patch_size == 4


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (6, r"recon.mask_patch_size \(6\) must be a multiple of model.patch_size \(4\)"),
        (2, r"recon.mask_patch_size \(2\) must be a multiple of model.patch_size \(4\)"),
        (12, r"recon.mask_patch_size \(12\) must divide the crop size \(16\)"),
    ],
)
def test_bad_mask_patch_size_is_one_line(size: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        tiny_simmim("masking.strategy=random", f"recon.mask_patch_size={size}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("strategy", ["random", "attmask_high"])
def test_two_step_trainer_run(tmp_path, strategy: str) -> None:
    config = tiny_config(*SIMMIM, f"masking.strategy={strategy}", "recon.mask_patch_size=8", "optim.epochs=1")
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    steps = [r for r in read_log(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    assert all(r["mask_fraction"] == 0.5 for r in steps), "2 of 4 cells of 2x2 tokens"
    assert (tmp_path / "checkpoint.pth").is_file()
    loaded = load_backbone(tmp_path)
    student = trainer.method.student.backbone.state_dict()
    assert loaded.model.state_dict().keys() <= student.keys()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, student[key].cpu())
    if strategy == "attmask_high":  # the EMA attention source is a different ViT
        teacher = trainer.method.teacher.backbone.state_dict()
        assert not torch.equal(teacher["pos_embed"], student["pos_embed"])


def test_presets() -> None:
    paper = load_config(CONFIGS / "simmim_vitb16_in1k.yaml")
    assert paper.train.method == "simmim" and mask_factor(paper, 224) == 2  # 32 px cells, 16 px patches
    assert paper.masking.ratio == (0.6, 0.6) and paper.optim.lr == pytest.approx(
        1e-4 * 256 / 512
    )  # released config: 1e-4 per 512
    tiny = build_method(load_config(CONFIGS / "fashion_mnist_simmim_tiny.yaml"), 28, 0)
    assert isinstance(tiny, SimMIM) and isinstance(tiny.student, SimMIMModel)
    assert tiny.mask_factor == 2 and tiny.teacher is None
