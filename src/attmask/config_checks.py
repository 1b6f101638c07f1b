"""Range checks of config values: every out-of-range setting is one line naming the key and the range.

Types are checked while the YAML is read (:mod:`attmask.core.typed_yaml`); this module checks what a
type cannot say (a negative learning rate, a momentum above 1, a zero patch size), so that a bad
value stops the run before anything is built or written, instead of a ``ZeroDivisionError`` deep
inside or a run that silently trains with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attmask.core.typed_yaml import ConfigError

Rule = tuple[str, Callable[[Any], bool], str]

#: The two ways of training on part of a data set, the same keys in pretraining and evaluation.
SUBSET_RULES: tuple[Rule, ...] = (
    (
        "data.subset",
        lambda v: 0 < v <= 1,
        "a fraction in (0, 1] (1 = all images); for a count of images per class use data.per_class",
    ),
    ("data.per_class", lambda v: v >= 1, ">= 1 images per class"),
)

#: (dotted key, accepted(value), the accepted range in words). None values (defaults) are skipped.
RULES: tuple[Rule, ...] = (
    ("model.patch_size", lambda v: v >= 1, ">= 1"),
    ("model.depth", lambda v: v >= 1, ">= 1 (or null for the architecture's)"),
    ("model.embed_dim", lambda v: v >= 1, ">= 1 (or null for the architecture's)"),
    ("model.num_heads", lambda v: v >= 1, ">= 1 (or null for the architecture's)"),
    ("model.drop_path_rate", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.stem_channels", lambda v: v >= 0, ">= 0 (0 = no convolutional stem)"),
    ("head.out_dim", lambda v: v >= 1, ">= 1"),
    ("head.patch_out_dim", lambda v: v >= 1, ">= 1"),
    ("head.hidden_dim", lambda v: v >= 1, ">= 1"),
    ("head.bottleneck_dim", lambda v: v >= 1, ">= 1"),
    ("loss.student_temp", lambda v: v > 0, "> 0"),
    ("loss.teacher_temp", lambda v: v > 0, "> 0"),
    ("loss.warmup_teacher_temp", lambda v: v > 0, "> 0"),
    ("loss.teacher_patch_temp", lambda v: v > 0, "> 0"),
    ("loss.warmup_teacher_patch_temp", lambda v: v > 0, "> 0"),
    ("loss.warmup_teacher_temp_epochs", lambda v: v >= 0, ">= 0"),
    ("loss.center_momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("loss.lambda_cls", lambda v: v >= 0, ">= 0"),
    ("loss.lambda_patch", lambda v: v >= 0, ">= 0"),
    ("loss.mim_start_epoch", lambda v: v >= 0, ">= 0"),
    *SUBSET_RULES,
    ("data.batch_size", lambda v: v >= 1, ">= 1"),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("data.val_images", lambda v: v >= 0, ">= 0 (0 = no validation hold-out)"),
    ("data.max_image_pixels", lambda v: v >= 1, ">= 1 pixels"),
    ("optim.epochs", lambda v: v >= 1, ">= 1"),
    ("optim.schedule_epochs", lambda v: v >= 0, ">= 0 (0: optim.epochs)"),
    ("optim.lr", lambda v: v >= 0, ">= 0, per 256 images: a step uses lr x global batch / 256"),
    ("optim.min_lr", lambda v: v >= 0, ">= 0"),
    ("optim.warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.weight_decay_end", lambda v: v >= 0, ">= 0"),
    ("optim.teacher_momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("optim.teacher_momentum_end", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("optim.betas", lambda v: all(0 <= b < 1 for b in v), "two values in [0, 1)"),
    ("optim.clip_grad", lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    ("optim.freeze_last_layer_epochs", lambda v: v >= 0, ">= 0"),
    ("optim.last_layer_lr_scale", lambda v: v >= 0, ">= 0"),
    ("optim.accumulation_steps", lambda v: v >= 1, ">= 1 (1 = no accumulation)"),
    ("train.num_threads", lambda v: v >= 0, ">= 0 (0 = PyTorch's default)"),
    ("train.save_every_steps", lambda v: v >= 0, ">= 0 (0 = at the end of every epoch only)"),
    ("train.keep_every_epochs", lambda v: v >= 0, ">= 0"),
    ("train.log_every_steps", lambda v: v >= 0, ">= 0"),
    ("train.max_steps_per_epoch", lambda v: v >= 0, ">= 0 (0 = the whole data set)"),
    ("train.knn_every_epochs", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.knn_k", lambda v: v >= 1, ">= 1"),
    ("train.knn_train_samples", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("train.knn_test_samples", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("train.figures_every_epochs", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.figure_images", lambda v: v >= 1, ">= 1"),
    ("train.parallel", lambda v: v in ("ddp", "fsdp"), "ddp or fsdp"),
)


def _lookup(config: Any, key: str) -> Any:
    value = config
    for part in key.split("."):
        value = getattr(value, part, None)
    return value


def check_rules(config: Any, rules: Sequence[tuple[str, Callable[[Any], bool], str]]) -> None:
    """Raise one ``ConfigError`` for the first ``(dotted key, accepted, words)`` rule that the value of
    ``config`` breaks; None values (defaults meaning "the model's" / "all") are skipped. Shared by the
    pretraining and the evaluation configuration."""
    for key, accepted, words in rules:
        value = _lookup(config, key)
        if value is not None and not accepted(value):
            raise ConfigError(f"config key {key} must be {words}, got {value!r}")


def check_one_subset(data: Any) -> None:
    """Refuse ``data.subset`` and ``data.per_class`` set together (both pick training images)."""
    if data is not None and data.subset is not None and data.per_class is not None:
        raise ConfigError(
            f"data.subset ({data.subset}) and data.per_class ({data.per_class}) both pick images; set one of them"
        )


def check_values(config: Any) -> None:
    """Raise one ``ConfigError`` for the first value of ``config`` outside its range (see :data:`RULES`)."""
    check_rules(config, RULES)
    optim = _lookup(config, "optim")
    if optim is not None and 0 < optim.schedule_epochs < optim.epochs:
        raise ConfigError(
            f"optim.schedule_epochs ({optim.schedule_epochs}) is shorter than optim.epochs "
            f"({optim.epochs}); set it >= optim.epochs, or 0 for the same length"
        )
    check_one_subset(_lookup(config, "data"))
    check_fsdp(_lookup(config, "train"))


def check_fsdp(train: Any) -> None:
    """Refuse what FSDP runs do not support, naming the way out."""
    if train is None or train.parallel != "fsdp":
        return
    if train.figures_every_epochs > 0:
        raise ConfigError(
            "train.figures_every_epochs needs train.parallel=ddp (figures are drawn by rank 0 alone, "
            "and sharded weights need every process); set it to 0 and draw them with attmask visualize"
        )
    if train.compile:
        raise ConfigError("train.compile is not supported with train.parallel=fsdp yet; set one of them off")
    if train.fidelity == "original":
        raise ConfigError(
            "train.fidelity=original (per-parameter clipping) is not supported with train.parallel=fsdp; use ddp"
        )
