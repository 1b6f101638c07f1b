"""Builders of the pixel-reconstruction methods (MAE, SimMIM, MST, LUT): they read the config."""

from __future__ import annotations

from attmask.config import Config
from attmask.heads import MAEDecoder
from attmask.masking import build_masking, check_fixed_count
from attmask.methods.components import attention_teacher, build_backbone
from attmask.methods.mae import MAE, MaskedAutoencoder


def _mae_decoder(config: Config, embed_dim: int) -> MAEDecoder:
    recon, patch = config.recon, config.model.patch_size
    return MAEDecoder(embed_dim, recon.decoder_dim, recon.decoder_depth, recon.decoder_heads, patch * patch * 3)


def build_mae(config: Config, img_size: int, num_local_crops: int, seed: int) -> MAE:
    """MAE with ``config.masking`` (fixed count per image) and ``config.recon``'s decoder."""
    check_fixed_count(config.masking, "mae")
    masking = build_masking(config.masking)
    backbone = build_backbone(config, img_size, config.model.drop_path_rate)
    student = MaskedAutoencoder(backbone, _mae_decoder(config, backbone.embed_dim))
    weight = 1.0 if config.recon.weight is None else config.recon.weight
    return MAE(student, attention_teacher(config, img_size, masking), masking, seed,
               config.recon.norm_pix_loss, weight)
