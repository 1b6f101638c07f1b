"""Property tests over every grid from 2x2 to 32x32 and arbitrary ratios."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attmask.masking import attmask_high, attmask_hint, attmask_low, blockwise_mask, random_mask

sides = st.integers(min_value=2, max_value=32)
ratios = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _scores(batch: int, tokens: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, tokens, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=60, deadline=None)
@given(height=sides, width=sides, ratio=ratios, seed=seeds)
def test_high_and_low_hide_exactly_k(height: int, width: int, ratio: float, seed: int) -> None:
    tokens = height * width
    scores = _scores(3, tokens, seed)
    original = scores.clone()
    high, low = attmask_high(scores, ratio), attmask_low(scores, ratio)
    k = int(tokens * ratio)
    assert (high.sum(1) == k).all() and (low.sum(1) == k).all()
    assert torch.equal(scores, original), "inputs must not be mutated"
    if 0 < k < tokens:
        hidden_min = torch.where(high, scores, torch.inf).min(1).values
        visible_max = torch.where(high, -torch.inf, scores).max(1).values
        assert (hidden_min >= visible_max).all(), "High hides the largest scores"
    if 2 * k <= tokens:
        assert not (high & low).any()


@settings(max_examples=60, deadline=None)
@given(
    height=sides,
    width=sides,
    ratio=st.floats(min_value=0.1, max_value=1.0),
    show_fraction=st.floats(min_value=0.0, max_value=1.0),
    show_max=st.floats(min_value=0.0, max_value=0.1),
    seed=seeds,
)
def test_hint_reveals_m_of_the_top_tokens(
    height: int, width: int, ratio: float, show_fraction: float, show_max: float, seed: int
) -> None:
    tokens = height * width
    scores = _scores(4, tokens, seed)
    show_ratio = show_fraction * show_max
    generator = torch.Generator().manual_seed(seed)
    mask = attmask_hint(scores, ratio, show_ratio, show_max, generator)
    high = attmask_high(scores, ratio)
    revealed = high & ~mask
    top = attmask_high(scores, show_max)
    assert not (mask & revealed).any(), "revealed and hidden sets are disjoint"
    assert not (mask & ~high).any()
    assert not (revealed & ~top).any()
    expected = int(tokens * show_ratio)
    if math.floor(tokens * show_max) <= int(tokens * ratio):
        assert (revealed.sum(1) == expected).all()
        assert (mask.sum(1) == int(tokens * ratio) - expected).all()
    again = attmask_hint(scores, ratio, show_ratio, show_max, torch.Generator().manual_seed(seed))
    assert torch.equal(mask, again), "seeded generator gives the same mask"


@settings(max_examples=60, deadline=None)
@given(height=sides, width=sides, ratio=ratios, seed=seeds)
def test_random_and_block_counts(height: int, width: int, ratio: float, seed: int) -> None:
    tokens = height * width
    k = int(tokens * ratio)
    generator = torch.Generator().manual_seed(seed)
    rand = random_mask(3, (height, width), ratio, generator)
    block = blockwise_mask(3, (height, width), ratio, generator)
    assert rand.shape == block.shape == (3, tokens)
    assert (rand.sum(1) == k).all()
    assert (block.sum(1) <= k).all()
    again = blockwise_mask(3, (height, width), ratio, torch.Generator().manual_seed(seed + 1))
    assert again.shape == block.shape


def test_every_grid_from_2x2_to_32x32() -> None:
    """Exhaustive over all 961 grid shapes: exact counts, block within budget, no mutation."""
    generator = torch.Generator().manual_seed(0)
    for height in range(2, 33):
        for width in range(2, 33):
            tokens = height * width
            ratios = torch.tensor([0.0, 0.1, 0.37, 0.5, 1.0], dtype=torch.float64)
            counts = torch.floor(ratios * tokens).long()
            scores = torch.rand(5, tokens, generator=generator)
            original = scores.clone()
            assert torch.equal(attmask_high(scores, ratios).sum(1), counts)
            assert torch.equal(attmask_low(scores, ratios).sum(1), counts)
            assert torch.equal(random_mask(5, (height, width), ratios, generator).sum(1), counts)
            hint = attmask_hint(scores, ratios, 0.05, 0.1, generator)
            assert (hint.sum(1) <= counts).all()
            block = blockwise_mask(5, (height, width), ratios, generator)
            assert (block.sum(1) <= counts).all() and block.shape == (5, tokens)
            assert torch.equal(scores, original)
