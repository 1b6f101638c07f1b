"""Masking strategies by name, with validated settings and per-image sampling.

A method asks for a strategy by name (``block``, ``random``, ``attmask_high``, ``attmask_low``,
``attmask_hint``, or ``none``) and calls it once per global view. The strategy draws the ratio
``r ~ U(low, high)`` per image, applies the mask with probability ``p`` per image, and, for the
attention strategies, ranks tokens by the teacher's head-mean [CLS] attention (AttMask Sec. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attmask.masking.attention import attmask_high, attmask_hint, attmask_low
from attmask.masking.blockwise import blockwise_mask
from attmask.masking.random import random_mask
from attmask.masking.ratio import Grid, grid_shape, sample_keep_rows, sample_ratios

ATTENTION_STRATEGIES = ("attmask_high", "attmask_low", "attmask_hint")
SHAPE_STRATEGIES = ("block", "random", "none")
STRATEGIES = SHAPE_STRATEGIES + ATTENTION_STRATEGIES


@dataclass
class MaskingConfig:
    """Settings of a masking strategy.

    Attributes:
        strategy: one of ``STRATEGIES``.
        ratio: ``(low, high)`` of the per-image ratio ``r ~ U(low, high)``; equal ends give a
            fixed ratio.
        probability: chance that an image of a view is masked at all (paper: 0.5).
        show_ratio: ``(low, high)`` of the per-image hint ratio (AttMask-Hint only).
        show_max: ``s_max``, hints come from the top ``s_max`` fraction of tokens.
        min_aspect: smallest block aspect ratio (block only).
    """

    strategy: str = "attmask_high"
    ratio: tuple[float, float] = (0.1, 0.5)
    probability: float = 0.5
    show_ratio: tuple[float, float] = (0.01, 0.05)
    show_max: float = 0.1
    min_aspect: float = 0.3

    def __post_init__(self) -> None:
        self.ratio = _pair(self.ratio, "masking.ratio")
        self.show_ratio = _pair(self.show_ratio, "masking.show_ratio")
        validate_masking_config(self)


def _pair(value: object, name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a pair [low, high], got {value!r}") from None
    return (low, high)


def validate_masking_config(config: MaskingConfig) -> None:
    """Raise ``ValueError`` with a one-line fix for any inconsistent setting."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"unknown masking strategy {config.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    for name, (low, high) in (("ratio", config.ratio), ("show_ratio", config.show_ratio)):
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"masking.{name} must satisfy 0 <= low <= high <= 1, got ({low}, {high})")
    if not 0.0 <= config.probability <= 1.0:
        raise ValueError(f"masking.probability must lie in [0, 1], got {config.probability}")
    if not 0.0 <= config.show_max <= 1.0:
        raise ValueError(f"masking.show_max must lie in [0, 1], got {config.show_max}")
    if config.min_aspect <= 0.0 or config.min_aspect > 1.0:
        raise ValueError(f"masking.min_aspect must lie in (0, 1], got {config.min_aspect}")
    if config.strategy == "attmask_hint":
        if config.show_ratio[1] > config.show_max:
            raise ValueError(
                f"masking.show_ratio upper end ({config.show_ratio[1]}) exceeds show_max "
                f"({config.show_max}); lower show_ratio or raise show_max"
            )
        if config.show_ratio[1] >= config.ratio[0]:
            raise ValueError(
                f"masking.show_ratio ({config.show_ratio[1]}) must be below the smallest "
                f"masking ratio ({config.ratio[0]}), or hints would reveal everything hidden"
            )


class MaskingStrategy:
    """Callable that produces one view's masks from its shape and (optionally) attention.

    ``ratio_per_batch=False`` (default): every row draws its own ratio ``r ~ U(ratio)`` and
    AttMask-Hint its own hint ratio ``s ~ U(show_ratio)``. ``True``: the original code's draws
    (``train.fidelity=original``): one ratio for all rows of a call (``get_pred_ratio()`` once
    per batch) and one hint ratio ``show_max * r'`` with ``r'`` a second, independent draw of the
    masking ratio (equal to ``show_max * r`` when the ratio is fixed).

    Example:
        >>> strategy = build_masking(MaskingConfig(strategy="attmask_high"))
        >>> mask = strategy(batch_size=8, grid=(14, 14), scores=scores, generator=g)
    """

    def __init__(self, config: MaskingConfig, ratio_per_batch: bool = False) -> None:
        validate_masking_config(config)
        self.config = config
        self.ratio_per_batch = ratio_per_batch

    @property
    def requires_attention(self) -> bool:
        """True when the strategy ranks tokens by attention scores."""
        return self.config.strategy in ATTENTION_STRATEGIES

    def __call__(
        self, batch_size: int, grid: Grid, scores: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Masks for one view.

        Args:
            batch_size: B.
            grid: patch grid ``(height, width)``.
            scores: ``(B, N)`` head-mean [CLS] attention; required by attention strategies.
            generator: optional CPU generator; all draws come from it.

        Returns:
            Bool ``(B, N)``, True = hidden, on the device of ``scores`` (CPU otherwise).
        """
        height, width = grid_shape(grid)
        num_tokens = height * width
        config = self.config
        if config.strategy == "none":
            return torch.zeros(batch_size, num_tokens, dtype=torch.bool)
        ratios = self._ratios(batch_size, config.ratio, generator)
        keep = sample_keep_rows(batch_size, config.probability, generator=generator)
        ratios = torch.where(keep, ratios, torch.zeros_like(ratios))
        if self.requires_attention:
            mask = self._attention_mask(ratios, num_tokens, scores, generator)
        elif config.strategy == "random":
            mask = random_mask(batch_size, (height, width), ratios, generator)
        else:
            mask = blockwise_mask(batch_size, (height, width), ratios, generator, min_aspect=config.min_aspect)
        return mask

    def _ratios(self, batch_size: int, bounds: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
        """Ratios ``(B,)`` drawn from ``U(bounds)``: one per row, or one for all rows."""
        if self.ratio_per_batch:
            return sample_ratios(1, *bounds, generator=generator).expand(batch_size).clone()
        return sample_ratios(batch_size, *bounds, generator=generator)

    def _attention_mask(
        self, ratios: torch.Tensor, num_tokens: int, scores: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        batch_size = ratios.shape[0]
        if scores is None:
            raise ValueError(
                f"masking strategy {self.config.strategy!r} needs attention scores; "
                "pass the teacher's head-mean [CLS] attention"
            )
        if tuple(scores.shape) != (batch_size, num_tokens):
            raise ValueError(
                f"attention scores must have shape ({batch_size}, {num_tokens}), got {tuple(scores.shape)}"
            )
        if self.config.strategy == "attmask_low":
            return attmask_low(scores, ratios)
        if self.config.strategy == "attmask_high":
            return attmask_high(scores, ratios)
        if self.ratio_per_batch:
            shows = self.config.show_max * self._ratios(batch_size, self.config.ratio, generator)
        else:
            shows = sample_ratios(batch_size, *self.config.show_ratio, generator=generator)
        return attmask_hint(scores, ratios, shows, self.config.show_max, generator)


def build_masking(config: MaskingConfig | dict | str, ratio_per_batch: bool = False) -> MaskingStrategy:
    """Build a masking strategy from a config, a dict of its fields, or a strategy name
    (``ratio_per_batch``: see :class:`MaskingStrategy`)."""
    if isinstance(config, str):
        config = MaskingConfig(strategy=config)
    elif isinstance(config, dict):
        unknown = set(config) - set(MaskingConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown masking setting(s) {sorted(unknown)}; valid: {sorted(MaskingConfig.__dataclass_fields__)}"
            )
        config = MaskingConfig(**config)
    return MaskingStrategy(config, ratio_per_batch)
