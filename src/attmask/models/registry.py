"""Model registry: ``build_vit("vit_small", img_size=32, patch_size=4)``.

Widths, depths and heads are timm's (``vit_tiny_patch16_224`` ... ``vit_huge_patch14_224``).
"""

from __future__ import annotations

import inspect
from typing import Any

from attmask.models.vit import VisionTransformer

VIT_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "vit_huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16},  # timm's vit_huge_patch14_224
}

_OVERRIDABLE = tuple(name for name in inspect.signature(VisionTransformer.__init__).parameters if name != "self")


def build_vit(name: str, **overrides: Any) -> VisionTransformer:
    """Build a registered ViT, overriding any constructor argument.

    Args:
        name: one of ``vit_tiny``, ``vit_small``, ``vit_base``, ``vit_large``, ``vit_huge``.
        **overrides: e.g. ``img_size``, ``patch_size``, ``in_chans``, ``drop_path_rate``,
            ``depth`` (for small experiments).

    Raises:
        ValueError: unknown architecture or argument.
    """
    if name not in VIT_ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(VIT_ARCHITECTURES)}")
    unknown = sorted(set(overrides) - set(_OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown ViT option(s) {unknown} for {name}; valid: {', '.join(_OVERRIDABLE)}")
    return VisionTransformer(**{**VIT_ARCHITECTURES[name], **overrides})


def registered_heads(embed_dim: int, depth: int) -> int | None:
    """The number of heads of the registered architecture of this width and depth, if any (ViT-H's
    16 heads of 80 dimensions are not ``embed_dim // 64``)."""
    for spec in VIT_ARCHITECTURES.values():
        if spec["embed_dim"] == embed_dim and spec["depth"] == depth:
            return spec["num_heads"]
    return None
