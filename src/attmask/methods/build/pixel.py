"""Builders of the pixel-reconstruction methods (MAE, SimMIM, MST, LUT): they read the config."""

from __future__ import annotations

from attmask.config import Config, ConfigError
from attmask.heads import LUTMLP, MAEDecoder, SimMIMHead
from attmask.masking import check_fixed_count, paired_visible_count
from attmask.methods.build.parts import attention_teacher, build_backbone, masking_strategy
from attmask.methods.lut import LUT, LUTStudent, LUTTeacher
from attmask.methods.lut_simmim import LUTSimMIM, LUTSimMIMStudent
from attmask.methods.mae import MAE, MaskedAutoencoder
from attmask.methods.simmim import SimMIM, SimMIMModel


def _mae_decoder(config: Config, embed_dim: int) -> MAEDecoder:
    recon, patch = config.recon, config.model.patch_size
    return MAEDecoder(embed_dim, recon.decoder_dim, recon.decoder_depth, recon.decoder_heads, patch * patch * 3)


def build_mae(config: Config, img_size: int, num_local_crops: int, seed: int) -> MAE:
    """MAE with ``config.masking`` (fixed count per image) and ``config.recon``'s decoder."""
    check_fixed_count(config.masking, "mae")
    masking = masking_strategy(config)
    backbone = build_backbone(config, img_size, config.model.drop_path_rate)
    student = MaskedAutoencoder(backbone, _mae_decoder(config, backbone.embed_dim))
    weight = 1.0 if config.recon.weight is None else config.recon.weight
    return MAE(student, attention_teacher(config, img_size, masking), masking, seed, config.recon.norm_pix_loss, weight)


def mask_factor(config: Config, img_size: int) -> int:
    """Tokens per side of SimMIM's masking cell, ``recon.mask_patch_size / model.patch_size``.

    Raises:
        ConfigError: ``mask_patch_size`` not a positive multiple of the patch size, or not a
            divisor of ``img_size``.
    """
    patch, size = config.model.patch_size, config.recon.mask_patch_size
    size = patch if size is None else size
    if size < patch or size % patch:
        raise ConfigError(
            f"recon.mask_patch_size ({size}) must be a multiple of model.patch_size ({patch}), "
            f"e.g. {2 * patch}; or leave it empty for the patch size"
        )
    if img_size % size:
        raise ConfigError(
            f"recon.mask_patch_size ({size}) must divide the crop size ({img_size}); "
            f"pick a multiple of {patch} that does"
        )
    return size // patch


def build_simmim(config: Config, img_size: int, num_local_crops: int, seed: int) -> SimMIM:
    """SimMIM with any ``config.masking`` strategy on cells of ``recon.mask_patch_size`` pixels."""
    factor = mask_factor(config, img_size)
    if config.masking.strategy == "none":
        raise ConfigError(
            "simmim with masking.strategy=none hides nothing, so it has no loss; use random "
            "(SimMIM's choice), block or an attmask strategy"
        )
    masking = masking_strategy(config)
    backbone = build_backbone(config, img_size, config.model.drop_path_rate)
    head = SimMIMHead(backbone.embed_dim, config.model.patch_size, backbone.in_chans)
    student = SimMIMModel(backbone, head)
    weight = 1.0 if config.recon.weight is None else config.recon.weight
    return SimMIM(student, attention_teacher(config, img_size, masking), masking, seed, factor, weight)


def _lut_masking(config: Config, method: str, num_cells: int) -> None:
    """LUT's masking checks: ``random``, one ratio, probability 1, two disjoint visible sets fit."""
    masking_config = config.masking
    if masking_config.strategy != "random":
        raise ConfigError(
            f"{method} cuts two disjoint visible sets from one random shuffle: set "
            f"masking.strategy=random, not {masking_config.strategy!r}"
        )
    check_fixed_count(masking_config, method)
    paired_visible_count(num_cells, masking_config.ratio[0])


def _lut_parts(config: Config, img_size: int, embed_dim: int) -> tuple[LUTMLP, LUTMLP, LUTTeacher]:
    """Student projector and predictor, and the EMA teacher (backbone + projector)."""
    lut = config.lut
    projector = LUTMLP(embed_dim, lut.hidden_dim, lut.out_dim)
    predictor = LUTMLP(lut.out_dim, lut.hidden_dim, lut.out_dim)
    teacher = LUTTeacher(build_backbone(config, img_size, 0.0), LUTMLP(embed_dim, lut.hidden_dim, lut.out_dim))
    return projector, predictor, teacher


def build_lut(config: Config, img_size: int, num_local_crops: int, seed: int) -> LUT:
    """LUT: MAE (``config.recon``) + broader-context projector / predictor / EMA teacher
    (``config.lut``), on two crop+flip views with disjoint random visible sets.

    Raises:
        ConfigError: (one line) ``masking.strategy`` is not ``random`` with a single ratio and
            probability 1, or the two views' visible sets do not fit in one image (2V > N).
    """
    backbone = build_backbone(config, img_size, config.model.drop_path_rate)
    rows, cols = backbone.grid_for(img_size, img_size)
    _lut_masking(config, "lut", rows * cols)
    projector, predictor, teacher = _lut_parts(config, img_size, backbone.embed_dim)
    student = LUTStudent(backbone, _mae_decoder(config, backbone.embed_dim), projector, predictor)
    pixel_weight = 1.0 if config.recon.weight is None else config.recon.weight
    return LUT(
        student, teacher, masking_strategy(config), seed, config.recon.norm_pix_loss, pixel_weight, config.lut.weight
    )


def build_lut_simmim(config: Config, img_size: int, num_local_crops: int, seed: int) -> LUTSimMIM:
    """LUT on SimMIM: SimMIM's head and loss on cells of ``recon.mask_patch_size`` pixels, plus
    the broader-context loss pooled over the visible positions (``config.lut``).

    Raises:
        ConfigError: (one line) bad ``mask_patch_size``, or masking as in :func:`build_lut`.
    """
    factor = mask_factor(config, img_size)
    backbone = build_backbone(config, img_size, config.model.drop_path_rate)
    rows, cols = backbone.grid_for(img_size, img_size)
    _lut_masking(config, "lut_simmim", (rows // factor) * (cols // factor))
    projector, predictor, teacher = _lut_parts(config, img_size, backbone.embed_dim)
    head = SimMIMHead(backbone.embed_dim, config.model.patch_size, backbone.in_chans)
    student = LUTSimMIMStudent(backbone, head, projector, predictor)
    pixel_weight = 1.0 if config.recon.weight is None else config.recon.weight
    return LUTSimMIM(student, teacher, masking_strategy(config), seed, factor, pixel_weight, config.lut.weight)
