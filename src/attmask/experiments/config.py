"""Settings of the masking ablation (the cells they expand to: :mod:`attmask.experiments.plan`).

An *arm* is one masking setting of AttMask Table 1: the strategy and its ratio range. Every
other setting (model, optimiser, epochs, masking probability, seed list) is shared, so arms
differ only in which tokens the student does not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attmask.config import ConfigError, apply_overrides, from_dict, read_yaml
from attmask.config_checks import Rule, check_rules
from attmask.core.repository import find_file

#: The arms of AttMask Table 1: ``name -> (label, masking strategy, ratio range)``.
ARMS: dict[str, tuple[str, str, tuple[float, float]]] = {
    "none": ("No masking", "none", (0.1, 0.5)),
    "block": ("Block-wise 10-50%", "block", (0.1, 0.5)),
    "random": ("Random 10-50%", "random", (0.1, 0.5)),
    "random75": ("Random 75%", "random", (0.75, 0.75)),
    "attmask_low": ("AttMask-Low", "attmask_low", (0.1, 0.5)),
    "attmask_hint": ("AttMask-Hint", "attmask_hint", (0.1, 0.5)),
    "attmask_high": ("AttMask-High", "attmask_high", (0.1, 0.5)),
}


@dataclass
class PretrainSpec:
    """The pretraining run of every cell.

    Attributes:
        config: pretraining preset (YAML), relative to the experiment file, the working
            folder or the repository.
        overrides: ``section.key=value`` applied to the preset for every cell.
    """

    config: str = "configs/fashion_mnist_ibot_attmask_tiny.yaml"
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvalSpec:
    """Evaluation of every pretrained teacher on frozen [CLS] features.

    Attributes:
        train_per_class: images per class of the train split in the k-NN bank / linear
            training set (0 = all).
        knn_k: neighbours of the weighted k-NN.
        temperature: k-NN vote temperature.
        shots: few-shot bank sizes nu (images per class).
        fewshot_repeats: disjoint subsets per nu.
        linear_epochs: epochs of the linear probe on standardised features.
        linear_lr: its learning rate per 256 samples (SGD, cosine).
        batch_size: images per feature-extraction batch.
        num_workers: loader processes for the extraction.
    """

    train_per_class: int = 1000
    knn_k: int = 20
    temperature: float = 0.07
    shots: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    fewshot_repeats: int = 5
    linear_epochs: int = 100
    linear_lr: float = 0.1
    batch_size: int = 256
    num_workers: int = 1
    features: list[str] = field(default_factory=lambda: ["cls"])


#: (dotted key, accepted(value), the accepted range in words) of the evaluation settings, checked
#: when the experiment is read: a value the evaluation would refuse fails before hours of pretraining.
EVAL_RULES: tuple[Rule, ...] = (
    ("eval.train_per_class", lambda v: v >= 0, ">= 0 images per class (0 = all)"),
    ("eval.knn_k", lambda v: v >= 1, ">= 1"),
    ("eval.temperature", lambda v: v > 0, "> 0"),
    ("eval.shots", lambda v: all(nu >= 1 for nu in v), "counts >= 1 of images per class, e.g. [1, 5]"),
    ("eval.fewshot_repeats", lambda v: v >= 1, ">= 1"),
    ("eval.linear_epochs", lambda v: v >= 1, ">= 1"),
    ("eval.linear_lr", lambda v: v > 0, "> 0"),
    ("eval.batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.num_workers", lambda v: v >= 0, ">= 0"),
)


@dataclass
class TableSpec:
    """An extra table: arms pretrained under changed settings (DINO instead of iBOT, a finer
    patch grid), with its own seeds and random-init rows. No arms: the table is not run.

    Attributes:
        arms: arm names (keys of :data:`ARMS`).
        seeds: seeds of this table.
        baseline: arm the paired differences are taken against ("" for none).
        overrides: pretraining overrides of every cell of this table (after the shared ones).
        title: the table's heading in ``results.md``.
    """

    arms: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str = ""
    overrides: list[str] = field(default_factory=list)
    title: str = ""


#: Extra tables of :class:`ExperimentConfig`: ``field name -> cell-name prefix``.
TABLES = {"dino": "dino", "fine_grid": "grid"}


@dataclass
class ExperimentConfig:
    """The whole ablation.

    Attributes:
        pretrain: the shared pretraining recipe.
        arms: arm names (keys of :data:`ARMS`) of the main table.
        seeds: seeds of the main table (mean +- std over them).
        curve_arms: arms drawn in the k-NN-vs-epoch figure (AttMask Fig. 4).
        fractions: training-set fractions of the data sweep (AttMask Table 2), per class of the
            data set; the main table's own fraction (``data.subset`` of the preset) is reused.
        fraction_arms: arms of the data sweep.
        fraction_seeds: how many of ``seeds`` (the first ones) the data sweep uses.
        eval: evaluation settings (``eval.features``: the first kind is the headline, e.g.
            ``[cls, gap]`` adds k-NN and linear columns on the mean patch token).
        baseline: arm of the main table the paired differences are taken against (none when
            it is not among ``arms``).
        dino: AttMask Table 3: arms pretrained with DINO (``train.method=dino`` in its overrides).
        fine_grid: arms on a finer patch grid (AttMask-Hint needs one to reveal any token).
        pixels: evaluate the raw pixels (the flattened, normalised images) with the same
            protocol, as a reference row of every table: a feature worth less than that row is
            worth less than its input.
    """

    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    curve_arms: list[str] = field(default_factory=lambda: ["block", "attmask_high"])
    fractions: list[float] = field(default_factory=list)
    fraction_arms: list[str] = field(default_factory=lambda: ["block", "attmask_high"])
    fraction_seeds: int = 1
    eval: EvalSpec = field(default_factory=EvalSpec)
    baseline: str = "block"
    dino: TableSpec = field(default_factory=TableSpec)
    fine_grid: TableSpec = field(default_factory=TableSpec)
    pixels: bool = True

    def __post_init__(self) -> None:
        lists = {key: getattr(self, key) for key in ("arms", "curve_arms", "fraction_arms")}
        lists.update({f"{name}.arms": getattr(self, name).arms for name in TABLES})
        for key, names in lists.items():
            unknown = [name for name in names if name not in ARMS]
            if unknown:
                raise ConfigError(f"unknown arm {unknown[0]!r} in {key}; choose from {', '.join(ARMS)}")
        if self.baseline and self.baseline not in ARMS:  # not among the arms: no paired columns
            raise ConfigError(f"unknown arm {self.baseline!r} in baseline; choose from {', '.join(ARMS)}")
        for name in TABLES:
            arms, baseline = getattr(self, name).arms, getattr(self, name).baseline
            if baseline and arms and baseline not in arms:
                raise ConfigError(f"{name}.baseline {baseline!r} is not one of its arms ({', '.join(arms)})")
        bad_kinds = [kind for kind in self.eval.features if kind not in ("cls", "gap", "cls+gap")]
        if bad_kinds or not self.eval.features:
            raise ConfigError(f"eval.features takes cls, gap or cls+gap, got {self.eval.features}")
        if not self.arms or not self.seeds:
            raise ConfigError("the experiment needs at least one arm and one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {self.seeds}")
        for name in TABLES:
            seeds = getattr(self, name).seeds
            if len(set(seeds)) != len(seeds) or not seeds:
                raise ConfigError(f"{name}.seeds must be distinct and not empty, got {seeds}")
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ConfigError(f"fractions must lie in (0, 1], got {bad[0]}")
        if self.fraction_seeds < 1:
            raise ConfigError(f"fraction_seeds must be >= 1, got {self.fraction_seeds}")
        check_rules(self, EVAL_RULES)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, Path]:
    """Read an experiment YAML and apply ``a.b=c`` overrides.

    Returns:
        ``(config, the resolved pretraining preset path)``.

    Raises:
        ConfigError: missing file, bad YAML, unknown key, bad value, missing preset.
    """
    values = read_yaml(path, "experiment file", "configs/experiments/")
    config = from_dict(ExperimentConfig, apply_overrides(values, overrides or []))
    return config, resolve_preset(config.pretrain.config, Path(path).parent)


def resolve_preset(name: str, beside: Path) -> Path:
    """The pretraining preset ``name``: absolute, next to the experiment file, in the working
    folder, or in the repository holding this package; else a one-line ConfigError."""
    found = find_file(name, beside)
    if found is not None:
        return found.resolve()
    raise ConfigError(
        f"pretraining preset {name} not found (looked beside {beside}, in the working folder "
        "and in the repository); set pretrain.config to an existing YAML file"
    )


def arm_notes(
    arms: list[str], num_tokens: int, show_ratio: tuple[float, float], hint_on_finer_grid: bool = False
) -> list[str]:
    """Notes about AttMask-Hint on a grid too small for hints.

    AttMask-Hint reveals ``floor(N * s)`` tokens with ``s ~ U(show_ratio)``: on a small grid that
    is 0 for every draw, and the arm is exactly AttMask-High. Among ``arms`` it is flagged; left
    out while ``hint_on_finer_grid`` (a table on a finer grid runs it), the omission is explained.
    """
    if int(num_tokens * show_ratio[1]) > 0:
        return []
    zero = f"floor({num_tokens} x s) = 0 tokens for every s <= {show_ratio[1]:g} on this {num_tokens}-patch grid"
    if "attmask_hint" in arms:
        return [
            f"AttMask-Hint reveals {zero}, so it is exactly AttMask-High (same masks, same random "
            "draws, same numbers); a finer grid (smaller patches) is needed to test hints."
        ]
    if hint_on_finer_grid:
        return [
            f"AttMask-Hint is not run on this grid (here or in the DINO table): it would reveal {zero}, "
            "so it would be exactly AttMask-High (same masks, same random draws). It is compared with "
            "AttMask-High on the finer grid of its own table."
        ]
    return []
