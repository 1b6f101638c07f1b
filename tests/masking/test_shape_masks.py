"""Random and block-wise masks: counts, statistics against the official iBOT data loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attmask.masking import blockwise_mask, num_masked, random_mask, sample_ratios
from tests.conftest import load_reference


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_mask_hides_exactly_k_per_row_with_per_row_ratios() -> None:
    ratios = sample_ratios(400, 0.1, 0.5, _generator(1))
    mask = random_mask(400, (14, 14), ratios, _generator(2))
    assert mask.shape == (400, 196) and mask.dtype == torch.bool
    assert torch.equal(mask.sum(1), num_masked(196, ratios))
    assert len(set(mask.sum(1).tolist())) > 20, "ratios must differ per image"


def test_random_mask_is_uniform_over_positions() -> None:
    mask = random_mask(20000, (7, 7), 0.3, _generator(3))
    frequency = mask.float().mean(0)
    expected = 14 / 49
    assert (frequency - expected).abs().max() < 0.015


def test_random_mask_statistics_match_reference() -> None:
    ref = load_reference("random_masks.npz")
    official = ref["rand_u0.1-0.5_global_masks"].reshape(-1, 196)
    ratios = sample_ratios(1000, 0.1, 0.5, _generator(4))
    ours = random_mask(1000, 14, ratios, _generator(5)).numpy()
    assert abs(ours.mean() - official.mean()) < 0.02
    official_fixed = ref["rand_fixed0.3_global_masks"].reshape(-1, 196).sum(1)
    assert set(official_fixed.tolist()) == {58}
    assert set(random_mask(50, 14, 0.3, _generator(6)).sum(1).tolist()) == {58}


def test_block_mask_statistics_match_reference() -> None:
    ref = load_reference("random_masks.npz")
    official = ref["block_fixed0.3_global_masks"].reshape(-1, 196).sum(1)
    ours = blockwise_mask(1000, (14, 14), 0.3, _generator(7)).sum(1).numpy()
    assert ours.max() == official.max() == 58
    assert abs(ours.mean() / 196 - official.mean() / 196) < 0.006
    assert abs((ours == 58).mean() - (official == 58).mean()) < 0.07
    assert abs(np.percentile(ours, 5) - np.percentile(official, 5)) <= 2


def test_block_mask_per_row_ratios_stay_within_budget() -> None:
    ref = load_reference("random_masks.npz")
    drawn = ref["block_u0.1-0.5_drawn_ratios"][:, :2].reshape(-1)
    official = ref["block_u0.1-0.5_global_masks"].reshape(-1, 196).sum(1)
    ours = blockwise_mask(len(drawn), 14, torch.from_numpy(drawn), _generator(8)).sum(1)
    assert (ours <= num_masked(196, torch.from_numpy(drawn))).all()
    assert abs(ours.float().mean().item() - official.mean()) < 2.5


def test_block_mask_is_made_of_rectangles() -> None:
    """A single-rectangle budget gives an axis-aligned box of aspect ratio in [0.3, 1/0.3]."""
    mask = blockwise_mask(200, (14, 14), 0.1, _generator(9)).reshape(-1, 14, 14)
    for row in mask:
        if not row.any():
            continue
        rows, cols = torch.nonzero(row, as_tuple=True)
        height = rows.max() - rows.min() + 1
        width = cols.max() - cols.min() + 1
        if row.sum() == height * width:  # one rectangle
            assert 0.3 * 0.5 <= (height / width).item() <= 2.0 / 0.3


@pytest.mark.parametrize("function", [random_mask, blockwise_mask])
def test_seeded_generator_is_deterministic(function) -> None:
    first = function(16, (6, 9), 0.4, _generator(10))
    second = function(16, (6, 9), 0.4, _generator(10))
    third = function(16, (6, 9), 0.4, _generator(11))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


@pytest.mark.parametrize("function", [random_mask, blockwise_mask])
def test_bad_ratio_is_a_clear_error(function) -> None:
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        function(2, 4, 1.5)
    with pytest.raises(ValueError, match="shape"):
        function(2, 4, torch.tensor([0.1, 0.2, 0.3]))
