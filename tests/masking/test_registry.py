"""Strategy registry: names, validation, per-image ratios and probabilities."""

from __future__ import annotations

import pytest
import torch

from attmask.masking import STRATEGIES, MaskingConfig, build_masking, num_masked


def _scores(batch: int, tokens: int) -> torch.Tensor:
    return torch.rand(batch, tokens, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_builds_and_masks(name: str) -> None:
    strategy = build_masking({"strategy": name, "probability": 1.0})
    scores = _scores(64, 100) if strategy.requires_attention else None
    mask = strategy(64, (10, 10), scores, torch.Generator().manual_seed(1))
    assert mask.shape == (64, 100) and mask.dtype == torch.bool
    if name == "none":
        assert not mask.any()
    else:
        assert (mask.sum(1) >= 1).all() and (mask.sum(1) <= 50).all()


def test_ratio_is_drawn_per_image_and_probability_per_row() -> None:
    strategy = build_masking(MaskingConfig("attmask_high", ratio=(0.1, 0.5), probability=0.5))
    generator = torch.Generator().manual_seed(2)
    mask = strategy(4000, (14, 14), _scores(4000, 196), generator)
    counts = mask.sum(1)
    masked_rows = counts > 0
    assert abs(masked_rows.float().mean().item() - 0.5) < 0.03
    assert counts[masked_rows].min() >= 19 and counts[masked_rows].max() <= 98
    assert len(set(counts[masked_rows].tolist())) > 50


def test_hint_strategy_reveals_tokens() -> None:
    config = MaskingConfig("attmask_hint", ratio=0.3, probability=1.0, show_ratio=0.05, show_max=0.1)
    scores = _scores(8, 196)
    mask = build_masking(config)(8, 14, scores, torch.Generator().manual_seed(3))
    assert (mask.sum(1) == num_masked(196, 0.3) - num_masked(196, 0.05)).all()


def test_same_generator_seed_same_masks() -> None:
    strategy = build_masking("block")
    first = strategy(8, 14, None, torch.Generator().manual_seed(4))
    second = strategy(8, 14, None, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"strategy": "attmask_top"}, "unknown masking strategy"),
        ({"ratio": (0.1, 1.5)}, "masking.ratio"),
        ({"ratio": (0.5, 0.1)}, "masking.ratio"),
        ({"ratio": "lots"}, "masking.ratio must be a number or a pair"),
        ({"probability": 2.0}, "masking.probability"),
        ({"strategy": "attmask_hint", "ratio": (0.1, 0.5), "show_ratio": (0.05, 0.2)}, "show_max"),
        (
            {"strategy": "attmask_hint", "ratio": (0.04, 0.5), "show_ratio": (0.01, 0.05)},
            "below the smallest masking ratio",
        ),
        ({"mask_ratio": 0.3}, "unknown masking setting"),
    ],
)
def test_bad_settings_are_one_clear_error(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_masking(settings)


def test_attention_strategy_without_scores_is_a_clear_error() -> None:
    strategy = build_masking("attmask_low")
    with pytest.raises(ValueError, match="needs attention scores"):
        strategy(2, 4)
    with pytest.raises(ValueError, match=r"shape \(2, 16\)"):
        strategy(2, 4, torch.rand(2, 15))
