"""Typed configuration: dataclasses loaded from YAML, overridden with ``--set a.b=c``.

The sections (model, head, loss, ...) are in :mod:`attmask.config_sections`; this module puts
them together (:class:`Config`), reads and writes them.

Only builders read the config; models, losses and masking functions take plain arguments.
Every key is checked: an unknown key or a value of the wrong type is one clear error naming
the key and the accepted values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from attmask.config_checks import check_values
from attmask.config_sections import (
    DataConfig,
    HeadConfig,
    LossConfig,
    LUTConfig,
    ModelConfig,
    OptimConfig,
    ReconstructionConfig,
    TrainConfig,
)
from attmask.core.typed_yaml import (
    ConfigError,
    apply_overrides,
    drop_removed,
    from_dict,
    parse_override,
    read_yaml,
    to_dict,
)
from attmask.masking import MaskingConfig

FIDELITIES = ("default", "original")

#: Removed keys and where their feature went (old configs hold them false: :func:`drop_removed_keys`).
REMOVED_KEYS = {
    "train.reference_design": "the replica of the original code's costs lives in "
    "benchmarks/reference_design.py, for benchmarks/bench_step.py"
}

__all__ = [
    "FIDELITIES",
    "Config",
    "ConfigError",
    "DataConfig",
    "HeadConfig",
    "LUTConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ReconstructionConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "REMOVED_KEYS",
    "drop_removed_keys",
    "load_config",
    "parse_override",
    "read_yaml",
    "save_config",
    "to_dict",
]


@dataclass
class Config:
    """The whole pretraining configuration."""

    #: The original DINO / iBOT scripts' argument names whose key here is spelled otherwise: an
    #: unknown key names its counterpart (``--set batch_size_per_gpu=64`` -> data.batch_size).
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "batch_size_per_gpu": "data.batch_size",
        "img_size": "data.global_size",
        "local_crops_number": "data.num_local",
        "momentum_teacher": "optim.teacher_momentum",
        "lambda1": "loss.lambda_cls",
        "lambda2": "loss.lambda_patch",
        "pred_ratio": "masking.ratio",
        "pred_ratio_var": "masking.ratio",
        "pred_shape": "masking.strategy",
        "pred_start_epoch": "loss.mim_start_epoch",
        "use_fp16": "train.precision",
        "saveckp_freq": "train.keep_every_epochs",
        "data_path": "data.source",
    }

    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    recon: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    lut: LUTConfig = field(default_factory=LUTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (missing keys keep their defaults) and apply overrides.

    Raises:
        ConfigError: missing file, invalid YAML, unknown key, wrong type, a value out of its
            range (:mod:`attmask.config_checks`) or a removed key set (:func:`drop_removed_keys`).
    """
    values = read_yaml(path, "config file", "configs/") if path is not None else {}
    config = from_dict(Config, drop_removed_keys(apply_overrides(values, overrides or [])))
    check_values(config)
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def drop_removed_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the :data:`REMOVED_KEYS` (false: silently; set: one ``ConfigError``)."""
    return drop_removed(values, REMOVED_KEYS)
