"""Parts every method builder shares: the configured ViT, the masking strategy, the EMA attention
source, and the reading of ``train.fidelity``."""

from __future__ import annotations

from attmask.config import FIDELITIES, Config, ConfigError
from attmask.masking import MaskingStrategy, build_masking
from attmask.methods.base import BackboneOnly
from attmask.models import VIT_ARCHITECTURES, VisionTransformer, build_vit


def original_numerics(config: Config) -> bool:
    """True for ``train.fidelity=original``; a one-line ``ConfigError`` for an unknown value."""
    if config.train.fidelity not in FIDELITIES:
        raise ConfigError(f"unknown train.fidelity {config.train.fidelity!r}; choose one of {', '.join(FIDELITIES)}")
    return config.train.fidelity == "original"


def build_backbone(config: Config, img_size: int, drop_path_rate: float) -> VisionTransformer:
    """The ViT of ``config.model`` for ``img_size``-pixel inputs."""
    model = config.model
    overrides = {
        "img_size": img_size,
        "patch_size": model.patch_size,
        "stem_channels": model.stem_channels,
        "pos_embed_init": model.pos_embed_init,
        "pos_embed_resize": "original" if original_numerics(config) else "timm",
    }
    for name in ("depth", "embed_dim", "num_heads"):
        if getattr(model, name) is not None:
            overrides[name] = getattr(model, name)
    check_heads(config)
    backbone = build_vit(model.arch, drop_path_rate=drop_path_rate, **overrides)
    backbone.set_grad_checkpointing(config.train.activation_checkpointing)
    return backbone


def check_heads(config: Config) -> None:
    """Refuse a width that the heads do not split evenly, naming the config keys and the head counts
    that would (the attention layer's own error names neither)."""
    model, spec = config.model, VIT_ARCHITECTURES.get(config.model.arch)
    if spec is None:  # an unknown architecture: build_vit names the known ones
        return
    width, heads = model.embed_dim or spec["embed_dim"], model.num_heads or spec["num_heads"]
    if width % heads:
        whose = f" (of {model.arch})" if model.embed_dim is None else ""
        fitting = ", ".join(str(n) for n in range(1, min(width, 32) + 1) if width % n == 0)
        raise ConfigError(
            f"model.embed_dim {width}{whose} does not split into model.num_heads={heads} heads; "
            f"set model.num_heads to one of {fitting}, or model.embed_dim to a multiple of {heads}"
        )


def masking_strategy(config: Config) -> MaskingStrategy:
    """The masking strategy of ``config.masking`` (with the original's ratio draws under
    ``train.fidelity=original``)."""
    return build_masking(config.masking, ratio_per_batch=original_numerics(config))


def attention_teacher(config: Config, img_size: int, masking: MaskingStrategy) -> BackboneOnly | None:
    """An EMA copy of the encoder as the attention source of AttMask strategies, else None.

    Methods without a teacher of their own (MAE, SimMIM) get one only when the strategy ranks
    tokens by attention; it follows the encoder with ``optim.teacher_momentum`` and is not trained.
    """
    if not masking.requires_attention:
        return None
    return BackboneOnly(build_backbone(config, img_size, 0.0))
