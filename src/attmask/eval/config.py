"""Typed configuration of ``attmask eval``: one dataclass section per protocol, read from YAML plus
``--set section.key=value`` overrides by the machinery of pretraining (:mod:`attmask.core.typed_yaml`).

The library's own settings dataclasses are the sections (:class:`~attmask.eval.session.DataOptions`,
:class:`~attmask.eval.finetune.FinetuneConfig`, :class:`~attmask.eval.linear.LinearProbeConfig`,
:class:`~attmask.eval.davis.PropagationSettings`, ...), so their defaults are the only defaults.
Every unknown key, wrong type or out-of-range value is one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from attmask.core.files import write_atomic
from attmask.core.typed_yaml import (
    ConfigError,
    apply_overrides,
    closest_key,
    dotted_keys,
    from_dict,
    read_yaml,
    to_dict,
)
from attmask.eval.config_checks import CHOICES, check_eval_config
from attmask.eval.davis import PropagationSettings
from attmask.eval.fewshot import DEFAULT_SHOTS
from attmask.eval.finetune import FinetuneConfig
from attmask.eval.linear import LinearProbeConfig
from attmask.eval.retrieval import DEFAULT_KS
from attmask.eval.revisited_run import RevisitedSettings
from attmask.eval.robustness import DEFAULT_RATIOS
from attmask.eval.session import DataOptions

__all__ = [
    "CHOICES",
    "PROTOCOL_SECTIONS",
    "SHARED_SECTIONS",
    "ConfigError",
    "DavisConfig",
    "EvalConfig",
    "FewShotConfig",
    "KnnConfig",
    "LinearEvalConfig",
    "RetrievalConfig",
    "RobustnessConfig",
    "SessionConfig",
    "check_eval_config",
    "load_eval_config",
    "save_eval_config",
    "sections_of",
]


@dataclass
class SessionConfig:
    """Which backbone of the checkpoint is evaluated, and where.

    Attributes:
        student: evaluate the student instead of the teacher (iBOT, DINO, MST checkpoints).
        num_heads: attention heads, when the checkpoint cannot tell (null: from the checkpoint).
        device: auto, cpu, cuda or cuda:N.
        progress: show progress bars.
    """

    student: bool = False
    num_heads: int | None = None
    device: str = "auto"
    progress: bool = True


@dataclass
class KnnConfig:
    """Weighted k-NN (Wu et al. 2018) on frozen features, the train split as the bank.

    Attributes:
        ks: neighbour counts k, one result each (the summary line shows k = 20 when listed).
        temperature: vote temperature T.
        features: feature kind.
    """

    ks: list[int] = field(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = 0.07
    features: str = "cls"


@dataclass
class FewShotConfig:
    """Few-shot k-NN (AttMask Table 5b): banks of nu images per class over disjoint subsets.

    Attributes:
        shots: images per class (nu) of the banks.
        repeats: disjoint subsets per nu (mean +- std over them).
        seed: seed of the subsets.
        features: feature kind.
    """

    shots: list[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    repeats: int = 5
    seed: int = 0
    features: str = "cls"


@dataclass
class RetrievalConfig:
    """Recall@k and mAP of every image of a split against the others.

    Attributes:
        ks: k of Recall@k.
        split: the split searched.
        map: also compute the mean average precision.
        features: feature kind.
    """

    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    split: str = "test"
    map: bool = True
    features: str = "cls"


@dataclass
class RobustnessConfig:
    """Top-1 with the most attended patches blacked out (AttMask Table A2), and on variant folders.

    Attributes:
        ratios: fractions of the most attended patches blacked out.
        k: neighbours of the k-NN classifier.
        temperature: vote temperature of the k-NN classifier.
        classifier: knn (a k-NN bank) or linear (a linear probe fitted on clean training features
            with the linear section's settings, its feature_kind picking the features).
        features: feature kind of the k-NN classifier.
    """

    ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))
    k: int = 20
    temperature: float = 0.07
    classifier: str = "knn"
    features: str = "cls"


@dataclass(frozen=True)
class LinearEvalConfig(LinearProbeConfig):
    """The linear probe of :class:`~attmask.eval.linear.LinearProbeConfig` and where its features come from.

    Attributes:
        mode: fast (cached centre-crop features) or full (crop + flip augmentation every epoch).
    """

    mode: str = "fast"


@dataclass
class DavisConfig(PropagationSettings):
    """DAVIS 2017 label propagation and the sequences it runs on.

    Attributes:
        sequences: sequences to run (null: those of ImageSets/2017/val.txt).
    """

    sequences: list[str] | None = None


@dataclass
class EvalConfig:
    """The whole evaluation configuration: shared sections, then one per protocol."""

    data: DataOptions = field(default_factory=DataOptions)
    session: SessionConfig = field(default_factory=SessionConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    revisited: RevisitedSettings = field(default_factory=RevisitedSettings)
    davis: DavisConfig = field(default_factory=DavisConfig)


#: Sections every protocol reads.
SHARED_SECTIONS = ("data", "session")
#: protocol -> the sections it reads besides the shared ones.
PROTOCOL_SECTIONS: dict[str, tuple[str, ...]] = {
    "knn": ("knn",),
    "fewshot": ("fewshot",),
    "retrieval": ("retrieval",),
    "robustness": ("robustness", "linear"),
    "linear": ("linear",),
    "finetune": ("finetune",),
    "revisited": ("revisited",),
    "davis": ("davis",),
}


def _section(name: str, hint: type, values: Any) -> Any:
    """Section ``name`` built from its mapping; a check of the section's own class (its
    ``__post_init__``) is reported with the section's name."""
    try:
        return from_dict(hint, values, name, EvalConfig)
    except ConfigError as error:
        message = str(error)
        if f"{name}." in message or message.startswith("config section"):
            raise
        raise ConfigError(f"config section {name}: {message}") from None


def load_eval_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> EvalConfig:
    """Read an evaluation YAML (missing keys keep their defaults) and apply ``section.key=value`` overrides.

    Raises:
        ConfigError: missing file, invalid YAML, unknown section or key, wrong type, value out of range.
    """
    values = read_yaml(path, "eval config file", "configs/eval/") if path is not None else {}
    values = apply_overrides(values, list(overrides))
    hints = typing.get_type_hints(EvalConfig)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        guess = closest_key(unknown[0], dotted_keys(EvalConfig))
        raise ConfigError(
            f"unknown config key {unknown[0]}{f' (did you mean {guess}?)' if guess else ''}; "
            "keys are section.key with the sections "
            f"{', '.join(hints)}, e.g. knn.ks=[20]"
        )
    config = EvalConfig(**{name: _section(name, hints[name], section) for name, section in values.items()})
    check_eval_config(config)
    return config


def sections_of(protocol: str) -> tuple[str, ...]:
    """The sections ``protocol`` reads: the shared ones, then its own."""
    return SHARED_SECTIONS + PROTOCOL_SECTIONS[protocol]


class _Dumper(yaml.SafeDumper):
    """Block-style sections, lists on one line (``ks: [10, 20]``)."""


_Dumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)
)


def save_eval_config(config: EvalConfig, path: str | Path, sections: Sequence[str] | None = None) -> None:
    """Write the resolved ``config`` (only ``sections`` when given) as YAML to ``path`` (atomically);
    ``--config path`` reads it back."""
    names = sections if sections is not None else [f.name for f in fields(EvalConfig)]
    values = {name: to_dict(getattr(config, name)) for name in names}
    text = yaml.dump(values, Dumper=_Dumper, sort_keys=False).encode()
    write_atomic(path, lambda stream: stream.write(text))
