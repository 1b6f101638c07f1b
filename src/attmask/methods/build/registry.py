"""Builders: the only place where a method reads the config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from attmask.config import Config, ConfigError
from attmask.heads import DINOHead, MSTDecoder
from attmask.losses import DINOLoss, IBOTLoss
from attmask.methods.base import PretrainingMethod
from attmask.methods.build.parts import build_backbone, masking_strategy
from attmask.methods.build.pixel import build_lut, build_lut_simmim, build_mae, build_simmim
from attmask.methods.distillation import DINO, IBOT, SelfDistillation
from attmask.methods.encoder import Encoder
from attmask.methods.mst import DEFAULT_RESTORE_WEIGHT, MST


def _encoder(config: Config, img_size: int, drop_path_rate: float, patch_head: bool) -> Encoder:
    backbone = build_backbone(config, img_size, drop_path_rate)
    head_config = config.head
    head = DINOHead(
        backbone.embed_dim,
        head_config.out_dim,
        head_config.hidden_dim,
        head_config.bottleneck_dim,
        norm_last_layer=head_config.norm_last_layer,
    )
    separate = None
    if patch_head and not head_config.shared_head:
        separate = DINOHead(
            backbone.embed_dim,
            head_config.patch_out_dim,
            head_config.hidden_dim,
            head_config.bottleneck_dim,
            norm_last_layer=head_config.norm_last_layer,
        )
    return Encoder(backbone, head, separate, patch_outputs=patch_head)


def _pair(config: Config, img_size: int, patch_head: bool) -> tuple[Encoder, Encoder]:
    student = _encoder(config, img_size, config.model.drop_path_rate, patch_head)
    teacher = _encoder(config, img_size, 0.0, patch_head)
    return student, teacher


def _build_ibot(config: Config, img_size: int, num_local_crops: int, seed: int) -> SelfDistillation:
    head, loss_config = config.head, config.loss
    if head.shared_head and head.patch_out_dim != head.out_dim:
        raise ConfigError(
            f"head.patch_out_dim ({head.patch_out_dim}) must equal head.out_dim ({head.out_dim}) "
            "with head.shared_head=true; set both or head.shared_head=false"
        )
    loss = IBOTLoss(
        head.out_dim,
        head.patch_out_dim if not head.shared_head else head.out_dim,
        num_local_crops,
        loss_config.warmup_teacher_temp,
        loss_config.teacher_temp,
        loss_config.warmup_teacher_patch_temp,
        loss_config.teacher_patch_temp,
        loss_config.warmup_teacher_temp_epochs,
        config.optim.epochs,
        student_temp=loss_config.student_temp,
        center_momentum=loss_config.center_momentum,
        patch_center_momentum=loss_config.center_momentum,
        lambda_cls=loss_config.lambda_cls,
        lambda_patch=loss_config.lambda_patch,
        mim_start_epoch=loss_config.mim_start_epoch,
    )
    student, teacher = _pair(config, img_size, patch_head=True)
    return IBOT(student, teacher, masking_strategy(config), loss, seed, loss_config.mim_start_epoch)


def _dino_loss(config: Config, num_local_crops: int) -> DINOLoss:
    loss_config = config.loss
    return DINOLoss(
        config.head.out_dim,
        2 + num_local_crops,
        loss_config.warmup_teacher_temp,
        loss_config.teacher_temp,
        loss_config.warmup_teacher_temp_epochs,
        config.optim.epochs,
        student_temp=loss_config.student_temp,
        center_momentum=loss_config.center_momentum,
    )


def _build_dino(config: Config, img_size: int, num_local_crops: int, seed: int) -> SelfDistillation:
    student, teacher = _pair(config, img_size, patch_head=False)
    return DINO(student, teacher, masking_strategy(config), _dino_loss(config, num_local_crops), seed)


def _build_mst(config: Config, img_size: int, num_local_crops: int, seed: int) -> SelfDistillation:
    """MST: DINO's student and teacher, the student with an :class:`MSTDecoder` (teacher without)."""
    student, teacher = _pair(config, img_size, patch_head=False)
    backbone = student.backbone
    decoder = MSTDecoder(backbone.embed_dim, backbone.patch_size, backbone.in_chans)
    student = Encoder(backbone, student.head, decoder=decoder, patch_outputs=False)
    weight = DEFAULT_RESTORE_WEIGHT if config.recon.weight is None else config.recon.weight
    return MST(student, teacher, masking_strategy(config), _dino_loss(config, num_local_crops), seed, weight)


@dataclass(frozen=True)
class MethodSpec:
    """How to build a method and which views its data gives it.

    Attributes:
        build: ``(config, img_size, num_local_crops, seed) -> PretrainingMethod``.
        views: ``multicrop`` (2 global + L local crops, DINO's augmentation) or ``crop_flip``
            (``num_views`` random resized crops with flips, MAE's augmentation).
        num_views: views per image for ``crop_flip``.
    """

    build: Callable[[Config, int, int, int], PretrainingMethod]
    views: str = "multicrop"
    num_views: int = 1


METHODS: dict[str, MethodSpec] = {
    "ibot": MethodSpec(_build_ibot),
    "dino": MethodSpec(_build_dino),
    "mst": MethodSpec(_build_mst),
    "mae": MethodSpec(build_mae, views="crop_flip"),
    "simmim": MethodSpec(build_simmim, views="crop_flip"),
    "lut": MethodSpec(build_lut, views="crop_flip", num_views=2),
    "lut_simmim": MethodSpec(build_lut_simmim, views="crop_flip", num_views=2),
}


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of method ``name``; one-line ``ConfigError`` for an unknown name."""
    if name not in METHODS:
        raise ConfigError(f"unknown train.method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def build_method(config: Config, img_size: int, num_local_crops: int, seed: int = 0) -> PretrainingMethod:
    """Build the configured method for global crops of ``img_size`` pixels.

    Args:
        config: the full config (``train.method`` picks the method).
        img_size: global crop size (the backbone's native resolution).
        num_local_crops: L, local crops per image (multi-crop methods).
        seed: seed of the masking generator (add the rank for distributed runs).
    """
    try:
        return method_spec(config.train.method).build(config, img_size, num_local_crops, seed)
    except ValueError as error:  # masking / head settings that do not fit the method
        raise ConfigError(str(error)) from None
