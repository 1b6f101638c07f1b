"""Every registered method: a tiny run per method, exact resume, the reconstruction capability,
and the 2-process gloo path of a pixel method with an EMA attention source."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.core.checkpoint import load_checkpoint
from attmask.engine.data import crop_config
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.methods import METHODS, build_method
from tests.engine.tiny import TINY_MAE, crash_and_resume, losses_by_step, tiny_config, train_on_gloo

#: Overrides that make each method's tiny run valid (keep in step with METHODS).
METHOD_OVERRIDES: dict[str, tuple[str, ...]] = {
    "ibot": ("train.method=ibot",),
    "dino": ("train.method=dino",),
    "mst": ("train.method=mst", "masking.strategy=attmask_low"),
    "mae": (*TINY_MAE, "masking.strategy=attmask_high"),
    "simmim": ("train.method=simmim", "masking.strategy=attmask_high", "masking.ratio=0.5", "recon.mask_patch_size=8"),
    "lut": (*TINY_MAE, "train.method=lut", "lut.hidden_dim=32", "lut.out_dim=16"),
    "lut_simmim": (
        "train.method=lut_simmim",
        "masking.strategy=random",
        "masking.ratio=0.5",
        "recon.mask_patch_size=8",
        "lut.hidden_dim=32",
        "lut.out_dim=16",
    ),
}
RECONSTRUCTING = {"mst", "mae", "simmim", "lut", "lut_simmim"}


def test_every_registered_method_is_covered() -> None:
    assert set(METHOD_OVERRIDES) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_reconstruct_exists_exactly_for_pixel_methods(name: str) -> None:
    config = tiny_config(*METHOD_OVERRIDES[name])
    crops = crop_config(config.data)
    method = build_method(config, crops.global_size, crops.num_local).eval()
    images = torch.randn(2, 3, crops.global_size, crops.global_size)
    assert method.reconstructs == (name in RECONSTRUCTING)
    evaluates_teacher = name in ("ibot", "dino", "mst")
    assert method.eval_name == ("teacher" if evaluates_teacher else "encoder")
    assert (method.eval_backbone is method.teacher.backbone) == evaluates_teacher
    if method.reconstructs:
        out = method.reconstruct(images)
        assert out.reconstruction.shape == images.shape and out.masks.dtype == torch.bool
    else:
        with pytest.raises(ValueError, match="does not reconstruct pixels"):
            method.reconstruct(images)


@pytest.mark.parametrize("name", ["mae", "simmim", "lut", "lut_simmim"])
def test_resume_continues_exactly(tmp_path, monkeypatch, name: str) -> None:
    overrides = (*METHOD_OVERRIDES[name], "optim.epochs=2", "train.max_steps_per_epoch=3", "train.save_every_steps=2")
    Trainer(tiny_config(*overrides), tmp_path / "straight").fit()
    expected = losses_by_step(read_log(tmp_path / "straight"))
    assert sorted(expected) == list(range(1, 7)) and all(math.isfinite(v) for v in expected.values())
    assert crash_and_resume(overrides, tmp_path / "resumed", 5, monkeypatch) == expected


# MAE + AttMask-High with one ratio: the masks depend only on the data (the EMA encoder's
# attention), so one process with 8 images and two with 4 each must give the same losses.
DDP_MAE = (*METHOD_OVERRIDES["mae"], "optim.epochs=1", "train.max_steps_per_epoch=3")


def test_attmask_guided_mae_on_two_gloo_processes_matches_one_process(tmp_path) -> None:
    Trainer(tiny_config(*DDP_MAE, "data.batch_size=8"), tmp_path / "single").fit()
    train_on_gloo(tmp_path / "ddp", (*DDP_MAE, "data.batch_size=4"))
    single = losses_by_step(read_log(tmp_path / "single"))
    ddp = losses_by_step(read_log(tmp_path / "ddp"))
    assert sorted(single) == sorted(ddp) == [1, 2, 3]
    for step in single:
        assert ddp[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6)
    one = load_checkpoint(tmp_path / "single" / "checkpoint.pth")["method"]
    two = load_checkpoint(tmp_path / "ddp" / "checkpoint.pth")["method"]
    for key in (
        "teacher.backbone.pos_embed",
        "student.decoder.pred.weight",
        "student.backbone.blocks.0.attn.qkv.weight",
    ):
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
