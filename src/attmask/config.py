"""Typed configuration: dataclasses loaded from YAML, overridden with ``--set a.b=c``.

Only builders read the config; models, losses and masking functions take plain arguments.
Every key is checked: an unknown key or a value of the wrong type is one clear error naming
the key and the accepted values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attmask.masking import MaskingConfig


class ConfigError(ValueError):
    """A bad config file, key or value (one line, names the key and the fix)."""


@dataclass
class ModelConfig:
    """Backbone. ``img_size`` of the ViT is the global crop size of the data config."""

    arch: str = "vit_small"
    patch_size: int = 16
    drop_path_rate: float = 0.1
    depth: int | None = None


@dataclass
class HeadConfig:
    """Projection head (DINO head; iBOT shares it between [CLS] and patch tokens)."""

    out_dim: int = 8192
    patch_out_dim: int = 8192
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = False
    shared_head: bool = True


@dataclass
class LossConfig:
    """Temperatures, centring and term weights (iBOT / DINO defaults)."""

    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30
    center_momentum: float = 0.9
    lambda_cls: float = 1.0
    lambda_patch: float = 1.0
    mim_start_epoch: int = 0


@dataclass
class ReconstructionConfig:
    """Pixel reconstruction of MAE, SimMIM, MST and LUT.

    Attributes:
        decoder_dim, decoder_depth, decoder_heads: MAE's transformer decoder (MAE, LUT).
        norm_pix_loss: MAE's target: each patch's pixels normalised by their own mean and std.
        mask_patch_size: SimMIM's masking unit in pixels (e.g. 32 on a 16 px grid); None = the
            ViT patch size. A multiple of the patch size.
        weight: weight of the pixel loss; None = the method's default (MST 0.6, others 1).
    """

    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True
    mask_patch_size: int | None = None
    weight: float | None = None


@dataclass
class LUTConfig:
    """LUT's broader-context loss on unmasked tokens (Kim et al., ECCV 2024).

    Attributes:
        hidden_dim, out_dim: projector / predictor (Linear-BN-ReLU-Linear) widths.
        weight: weight of the loss; total = L_pixel + weight * L_BC.
    """

    hidden_dim: int = 4096
    out_dim: int = 256
    weight: float = 0.25


@dataclass
class DataConfig:
    """Data set and multi-crop augmentation (``crops`` preset, fields override it).

    Attributes:
        augment_on: where the random augmentations run. ``workers`` (default): every image is
            augmented on its own in the DataLoader workers. ``device``: the workers only decode
            each image to a ``decode_size`` square uint8 tensor and the trainer augments the whole
            batch on the training device (:mod:`attmask.data.batched`), so a few CPU cores can
            feed a GPU.
        decode_size: side of the decoded square with ``augment_on=device`` (shorter side resized
            to it, then centre-cropped); default the larger crop size. Crops are cut from this
            square without antialiasing, so keep it near the crop sizes.
    """

    source: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | float | None = None
    crops: str = "imagenet"
    global_size: int | None = None
    global_scale: tuple[float, float] | None = None
    local_size: int | None = None
    local_scale: tuple[float, float] | None = None
    num_local: int | None = None
    batch_size: int = 64
    num_workers: int = 4
    augment_on: str = "workers"
    decode_size: int | None = None


@dataclass
class OptimConfig:
    """AdamW, schedules, clipping (iBOT defaults; ``lr`` is per 256 images; MAE uses betas (0.9, 0.95))."""

    epochs: int = 100
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    teacher_momentum: float = 0.996
    teacher_momentum_end: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 3.0
    freeze_last_layer_epochs: int = 1
    accumulation_steps: int = 1


@dataclass
class TrainConfig:
    """Run-level settings.

    Attributes:
        compile: ``torch.compile`` the student's and the teacher's backbone with dynamic shapes
            (batch size and crop resolution are symbolic: no recompilation per size). Off by
            default: the first steps pay the compilation, and inductor needs a C++ compiler on CPU.
        reference_design: reproduce the original DINO / iBOT code's costly choices, to measure
            what the default fast path saves (``benchmarks/bench_step.py``): every block computes
            the explicit softmax attention matrix (no fused SDPA), the student's patch head runs
            on all patch tokens (not only the masked ones), gradients are clipped parameter by
            parameter with one host sync each (DINO's ``utils.clip_gradients``: each parameter's
            own norm at most ``optim.clip_grad``, instead of the global norm), the loss is read
            on the host every step, the EMA teacher update is a Python loop over parameters, and
            AdamW runs with its default (not fused) implementation. Precision is fp16 with a
            GradScaler on CUDA and fp32 on CPU, whatever ``precision`` says. Same model, data and
            seed give the same losses as the fast path (fp32, within rounding) as long as the
            global gradient norm stays within ``optim.clip_grad`` (then neither clipping rule
            scales anything; once they clip, the two rules differ, as the original code does).
    """

    method: str = "ibot"
    precision: str = "auto"
    device: str = "auto"
    num_threads: int = 0
    seed: int = 0
    save_every_steps: int = 0
    keep_every_epochs: int = 0
    log_every_steps: int = 10
    max_steps_per_epoch: int = 0
    knn_every_epochs: int = 0
    knn_k: int = 20
    knn_train_samples: int = 10000
    knn_test_samples: int = 2000
    knn_baseline: bool = False
    figures_every_epochs: int = 0
    figure_images: int = 4
    progress: bool = True
    compile: bool = False
    reference_design: bool = False


@dataclass
class Config:
    """The whole pretraining configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    recon: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    lut: LUTConfig = field(default_factory=LUTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce_scalar(value: Any, hint: type, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"config key {key} expects {_type_name(hint)}, got {value!r}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the field's declared type, or raise ``ConfigError``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"config key {key} got {value!r}")
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [value]
        (arg,) = typing.get_args(hint)
        return [_coerce(item, arg, key) for item in items]
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value, value]
        args = typing.get_args(hint)
        if len(items) != len(args):
            raise ConfigError(f"config key {key} expects {len(args)} values, got {value!r}")
        return tuple(_coerce(item, arg, key) for item, arg in zip(items, args))
    return _coerce_scalar(value, hint, key)


def from_dict(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) mapping, checking every key and type."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix or 'root'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]}; valid keys{' under ' + prefix if prefix else ''}: "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-able dict of a config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=c`` into ``(["a", "b"], value)``, the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``values`` with every ``a.b=c`` override applied."""
    merged = yaml.safe_load(yaml.safe_dump(values)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (missing keys keep their defaults) and apply overrides.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key or wrong type.
    """
    values = read_yaml(path, "config file", "configs/") if path is not None else {}
    return from_dict(Config, apply_overrides(values, overrides or []))


def read_yaml(path: str | Path, kind: str, presets: str) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty file: ``{}``).

    Raises:
        ConfigError: missing file (naming ``presets``, where the presets live) or invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {path}; see {presets} for the presets")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} {path} is not valid YAML: {error}".replace("\n", " ")) from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
