"""Parts every method builder shares: the configured ViT and the EMA attention source."""

from __future__ import annotations

from attmask.config import Config
from attmask.masking import MaskingStrategy
from attmask.methods.method import BackboneOnly
from attmask.models import VisionTransformer, build_vit


def build_backbone(config: Config, img_size: int, drop_path_rate: float) -> VisionTransformer:
    """The ViT of ``config.model`` for ``img_size``-pixel inputs."""
    overrides = {"img_size": img_size, "patch_size": config.model.patch_size,
                 "explicit_attention": config.train.reference_design, "stem_channels": config.model.stem_channels,
                 "pos_embed_init": config.model.pos_embed_init}
    if config.model.depth is not None:
        overrides["depth"] = config.model.depth
    return build_vit(config.model.arch, drop_path_rate=drop_path_rate, **overrides)


def attention_teacher(config: Config, img_size: int, masking: MaskingStrategy) -> BackboneOnly | None:
    """An EMA copy of the encoder as the attention source of AttMask strategies, else None.

    Methods without a teacher of their own (MAE, SimMIM) get one only when the strategy ranks
    tokens by attention; it follows the encoder with ``optim.teacher_momentum`` and is not trained.
    """
    if not masking.requires_attention:
        return None
    return BackboneOnly(build_backbone(config, img_size, 0.0))
