"""Vision Transformer backbones (timm-compatible keys, mask token, cheap [CLS] attention)."""

from attmask.models.convert import PROJECT_ONLY_KEYS, timm_kwargs, to_timm_state_dict
from attmask.models.patches import mask_to_pixels, patchify, unpatchify
from attmask.models.registry import VIT_ARCHITECTURES, build_vit
from attmask.models.vit import VisionTransformer, ViTOutput

__all__ = [
    "PROJECT_ONLY_KEYS",
    "VIT_ARCHITECTURES",
    "VisionTransformer",
    "ViTOutput",
    "build_vit",
    "mask_to_pixels",
    "patchify",
    "unpatchify",
    "timm_kwargs",
    "to_timm_state_dict",
]
