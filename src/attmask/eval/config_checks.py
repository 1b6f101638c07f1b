"""The ranges and choices of ``attmask eval``'s configuration keys, checked after loading: every
value outside them is one :class:`~attmask.core.typed_yaml.ConfigError` naming the key and what it
accepts (the machinery of pretraining's :mod:`attmask.config_checks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attmask.config_checks import SUBSET_RULES, Rule, check_one_subset, check_rules
from attmask.eval.classifier import POOLS
from attmask.eval.features import FEATURE_KINDS

#: Keys that name a choice and their accepted values.
CHOICES: dict[str, tuple[str, ...]] = {
    "knn.features": FEATURE_KINDS,
    "fewshot.features": FEATURE_KINDS,
    "retrieval.features": FEATURE_KINDS,
    "retrieval.split": ("train", "test"),
    "robustness.features": FEATURE_KINDS,
    "robustness.classifier": ("knn", "linear"),
    "linear.mode": ("fast", "full"),
    "finetune.pool": POOLS,
}


def _counts(values: Sequence[float]) -> bool:
    return len(values) > 0 and all(v >= 1 for v in values)


#: (dotted key, accepted(value), the accepted range in words). None values (defaults) are skipped.
RULES: tuple[Rule, ...] = (
    *SUBSET_RULES,
    ("data.img_size", lambda v: v >= 1, ">= 1 pixels (or null for the model's)"),
    ("data.batch_size", lambda v: v >= 1, ">= 1"),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("session.num_heads", lambda v: v >= 1, ">= 1 (or null for the checkpoint's)"),
    ("knn.ks", _counts, "one or more counts >= 1, e.g. [10, 20]"),
    ("knn.temperature", lambda v: v > 0, "> 0"),
    ("fewshot.shots", _counts, "one or more counts >= 1, e.g. [1, 5]"),
    ("fewshot.repeats", lambda v: v >= 1, ">= 1"),
    ("retrieval.ks", _counts, "one or more counts >= 1, e.g. [1, 2, 4, 8]"),
    (
        "robustness.ratios",
        lambda v: len(v) > 0 and all(0 <= r <= 1 for r in v),
        "one or more fractions in [0, 1], e.g. [0, 0.5]",
    ),
    ("robustness.k", lambda v: v >= 1, ">= 1"),
    ("robustness.temperature", lambda v: v > 0, "> 0"),
    ("revisited.max_side", lambda v: v >= 1, ">= 1 pixels"),
    ("revisited.scales", lambda v: len(v) > 0 and all(s > 0 for s in v), "one or more scales > 0"),
    ("revisited.ks", _counts, "one or more counts >= 1, e.g. [1, 5, 10]"),
    ("davis.scale", lambda v: v >= 1, ">= 1 pixels"),
    ("davis.n_last", lambda v: v >= 1, ">= 1 frames"),
    ("davis.radius", lambda v: v >= 0, ">= 0 patches (0 = the whole frame)"),
    ("davis.topk", lambda v: v >= 1, ">= 1"),
    ("davis.temperature", lambda v: v > 0, "> 0"),
)


def check_eval_config(config: Any) -> None:
    """Raise one ``ConfigError`` for the first value of ``config`` (an
    :class:`~attmask.eval.config.EvalConfig`, which imports this module) outside its choices or its
    range (the rules are checked by the pretraining configuration's
    :func:`~attmask.config_checks.check_rules`)."""
    choices = [(key, lambda v, accepted=accepted: v in accepted, f"one of {', '.join(accepted)}")
               for key, accepted in CHOICES.items()]  # fmt: skip
    check_rules(config, choices)
    check_rules(config, RULES)
    check_one_subset(config.data)
