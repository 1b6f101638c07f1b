"""Key mapping between this project's ViT and timm's ``VisionTransformer``."""

from __future__ import annotations

from functools import partial

import torch

from attmask.models.conv_stem import ConvStemPatchEmbed
from attmask.models.vit import VisionTransformer

#: Parameters of :class:`VisionTransformer` that timm's ViT has no slot for.
PROJECT_ONLY_KEYS = ("mask_token",)


def to_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop project-only keys so the result loads into timm's ViT with ``strict=True``."""
    return {key: value for key, value in state_dict.items() if key not in PROJECT_ONLY_KEYS}


def timm_kwargs(model: VisionTransformer) -> dict[str, object]:
    """Arguments for ``timm.models.vision_transformer.VisionTransformer`` of the same shape
    (with a convolutional stem, ``embed_layer`` builds :class:`ConvStemPatchEmbed`)."""
    return {
        "img_size": model.img_size,
        "patch_size": model.patch_size,
        "in_chans": model.in_chans,
        "embed_dim": model.embed_dim,
        "depth": model.depth,
        "num_heads": model.num_heads,
        "mlp_ratio": model.blocks[0].mlp.fc1.out_features / model.embed_dim,
        "qkv_bias": model.blocks[0].attn.qkv.bias is not None,
        "num_classes": 0,
        **(
            {"embed_layer": partial(ConvStemPatchEmbed, stem_channels=model.stem_channels)}
            if model.stem_channels
            else {}
        ),
    }
