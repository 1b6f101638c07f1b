"""Convolutional stem and sin-cos position init: same grid, timm parity through ``embed_layer``, export."""

from __future__ import annotations

import functools
import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from attmask.config import load_config
from attmask.methods.build.parts import build_backbone
from attmask.models import build_vit, timm_kwargs, to_timm_state_dict
from attmask.models.checkpoints import load_backbone
from attmask.models.conv_stem import ConvStemPatchEmbed
from attmask.models.export import export_backbone


def _stem_vit():
    return build_vit("vit_tiny", img_size=28, patch_size=7, depth=2, stem_channels=16).eval()


def test_stem_keeps_the_grid_and_changes_the_tokens() -> None:
    model = _stem_vit()
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    assert isinstance(model.patch_embed, ConvStemPatchEmbed)
    assert model.patch_embed.stem[0].weight.shape == (16, 3, 3, 3)
    assert model.patch_embed.proj.weight.shape == (192, 16, 7, 7)
    assert model(images).patch_tokens.shape == (2, 16, 192)
    assert model(images[..., :14, :14]).patch_tokens.shape == (2, 4, 192), "local crops keep working"
    # the stem is what the patch projection sees: zeroing it leaves only the bias of the GELU
    with torch.no_grad():
        model.patch_embed.stem[0].weight.zero_()
        model.patch_embed.stem[0].bias.zero_()
        tokens = model.patch_embed(images)
    assert torch.allclose(tokens, tokens[:1, :1].expand_as(tokens))
    with pytest.raises(ValueError, match="stem_channels"):
        ConvStemPatchEmbed(28, 7, 3, 192, stem_channels=0)


def test_timm_builds_the_same_model_through_embed_layer() -> None:
    model = _stem_vit()
    twin = timm.models.vision_transformer.VisionTransformer(**timm_kwargs(model)).eval()
    twin.load_state_dict(to_timm_state_dict(model.state_dict()), strict=True)
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(images).cls_token, twin.forward_features(images)[:, 0], atol=1e-5, rtol=1e-5)


def test_export_names_the_stem_and_reloads(tmp_path) -> None:
    model = _stem_vit()
    kwargs = {
        "img_size": 28,
        "patch_size": 7,
        "in_chans": 3,
        "embed_dim": 192,
        "depth": 2,
        "num_heads": 3,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "stem_channels": 16,
    }
    weights, sidecar = export_backbone(model, kwargs, tmp_path / "backbone.safetensors")
    info = json.loads(sidecar.read_text())
    assert "stem_channels" not in info["timm_kwargs"]
    assert info["embed_layer"] == {"class": "attmask.models.conv_stem.ConvStemPatchEmbed", "stem_channels": 16}
    embed_layer = functools.partial(ConvStemPatchEmbed, stem_channels=info["embed_layer"]["stem_channels"])
    twin = timm.create_model(info["timm_model"], pretrained=False, embed_layer=embed_layer, **info["timm_kwargs"])
    twin.load_state_dict(load_file(str(weights)), strict=True)
    again = load_backbone(weights)
    assert again.kwargs["stem_channels"] == 16 and again.kwargs["in_chans"] == 3
    images = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(again.model(images).cls_token, model(images).cls_token)


def test_config_key_builds_the_stem() -> None:
    config = load_config(None, ["model.arch=vit_tiny", "model.patch_size=7", "model.stem_channels=8"])
    assert build_backbone(config, 28, 0.0).patch_embed.stem_channels == 8
    plain = load_config(None, ["model.arch=vit_tiny", "model.patch_size=7"])
    assert not isinstance(build_backbone(plain, 28, 0.0).patch_embed, ConvStemPatchEmbed)


def test_sincos_position_init_is_maes_table_and_stays_trainable() -> None:
    from timm.layers import build_sincos2d_pos_embed

    model = build_vit("vit_tiny", img_size=28, patch_size=7, depth=1, pos_embed_init="sincos")
    table = build_sincos2d_pos_embed([4, 4], 192).reshape(16, 192)
    torch.testing.assert_close(model.pos_embed[0, 1:].detach(), table)
    assert model.pos_embed[0, 0].abs().max() == 0 and model.pos_embed.requires_grad
    default = build_vit("vit_tiny", img_size=28, patch_size=7, depth=1)
    assert default.pos_embed.std() < 0.05, "the default keeps DINO's 0.02 truncated normal"
    with pytest.raises(ValueError, match="pos_embed_init"):
        build_vit("vit_tiny", img_size=28, patch_size=7, depth=1, pos_embed_init="zeros")
    config = load_config(None, ["model.arch=vit_tiny", "model.patch_size=7", "model.pos_embed_init=sincos"])
    torch.testing.assert_close(build_backbone(config, 28, 0.0).pos_embed[0, 1:].detach(), table)


def test_negative_stem_channels_and_validation_images_are_one_line_errors() -> None:
    from attmask.data.datasets import DatasetError, build_dataset
    from attmask.data.splits import validation_split

    with pytest.raises(ValueError, match="stem_channels must be >= 0"):
        build_vit("vit_tiny", img_size=28, patch_size=7, depth=1, stem_channels=-1)
    with pytest.raises(DatasetError, match="val_images must be >= 0"):
        validation_split(build_dataset("digits", "train"), -5)
