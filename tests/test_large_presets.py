"""The ViT-L/16 and ViT-H/14 iBOT + AttMask presets: sharded settings, architecture, and a method
that builds (and whose backbone encodes both crop sizes) at reduced depth and head sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attmask.config import load_config
from attmask.engine.data import crop_config
from attmask.methods import build_method
from attmask.models.registry import VIT_ARCHITECTURES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# file, architecture, patch size, width
PRESETS = [
    ("ibot_attmask_vitl16_in1k.yaml", "vit_large", 16, 1024),
    ("ibot_attmask_vith14_in1k.yaml", "vit_huge", 14, 1280),
]

SMALL = ["model.depth=2", "head.out_dim=64", "head.patch_out_dim=64", "head.hidden_dim=64", "head.bottleneck_dim=32"]


@pytest.mark.parametrize(("name", "arch", "patch", "width"), PRESETS, ids=[p[0] for p in PRESETS])
def test_preset_settings(name: str, arch: str, patch: int, width: int) -> None:
    config = load_config(CONFIGS / name)
    assert config.model.arch == arch and config.model.patch_size == patch
    assert VIT_ARCHITECTURES[arch]["embed_dim"] == width
    assert config.model.depth is None and config.model.embed_dim is None, "the registered architecture"
    assert config.train.method == "ibot"
    assert config.train.parallel == "fsdp"
    assert config.train.precision == "bf16"
    assert config.train.activation_checkpointing is True
    assert config.train.figures_every_epochs == 0, "figures are refused with fsdp"
    assert config.masking.strategy == "attmask_high"
    assert config.masking.ratio == (0.1, 0.5) and config.masking.probability == 0.5
    crops = crop_config(config.data)
    assert crops.global_size % patch == 0 and crops.local_size % patch == 0, "crops fit the patch grid"


@pytest.mark.parametrize(("name", "arch", "patch", "width"), PRESETS, ids=[p[0] for p in PRESETS])
def test_reduced_method_builds(name: str, arch: str, patch: int, width: int) -> None:
    config = load_config(CONFIGS / name, SMALL)
    crops = crop_config(config.data)
    method = build_method(config, crops.global_size, crops.num_local)
    backbone = method.eval_backbone
    assert backbone.depth == 2 and backbone.patch_size == patch and backbone.img_size == crops.global_size
    with torch.no_grad():
        for size in (crops.global_size, crops.local_size):
            out = backbone(torch.zeros(1, 3, size, size))
            assert out.patch_tokens.shape == (1, (size // patch) ** 2, width)
            assert out.cls_token.shape == (1, width)
