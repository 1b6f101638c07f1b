"""Visible-token sets of MAE-style encoders and the fixed-count requirement."""

from __future__ import annotations

import pytest
import torch

from attmask.masking import MaskingConfig, build_masking, check_fixed_count, visible_index


def test_visible_index_lists_the_kept_tokens_in_order() -> None:
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert visible_index(mask).tolist() == [[1, 3], [0, 1]]


def test_unequal_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of tokens"):
        visible_index(torch.tensor([[True, False], [False, False]]))


@pytest.mark.parametrize("strategy", ["random", "attmask_high", "attmask_low"])
def test_fixed_count_strategies_hide_the_same_count_per_row(strategy: str) -> None:
    config = MaskingConfig(strategy=strategy, ratio=(0.75, 0.75), probability=1.0)
    check_fixed_count(config, "mae")
    scores = torch.rand(5, 16, generator=torch.Generator().manual_seed(1))
    mask = build_masking(config)(5, (4, 4), scores, torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [12] * 5
    assert visible_index(mask).shape == (5, 4)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"strategy": "block", "ratio": (0.75, 0.75), "probability": 1.0}, "not 'block'"),
        ({"strategy": "attmask_hint", "ratio": (0.75, 0.75), "probability": 1.0}, "not 'attmask_hint'"),
        ({"strategy": "random", "ratio": (0.1, 0.5), "probability": 1.0}, "single value"),
        ({"strategy": "random", "ratio": (0.75, 0.75), "probability": 0.5}, "probability=1"),
        ({"strategy": "random", "ratio": (1.0, 1.0), "probability": 1.0}, "must be < 1"),
    ],
)
def test_settings_without_a_fixed_count_are_one_line_errors(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_fixed_count(MaskingConfig(**settings), "mae")
