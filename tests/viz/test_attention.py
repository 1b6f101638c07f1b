"""Attention-figure helpers: maps per head, mass thresholding, head colour overlay."""

from __future__ import annotations

import itertools

import pytest
import torch

from attmask.models import VisionTransformer
from attmask.viz.attention import HEAD_COLOURS, attention_maps, head_colour_map, threshold_by_mass


def test_attention_maps_are_the_cls_rows_of_each_block() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=4).eval()
    images = torch.randn(2, 3, 16, 16)
    for block in (0, -1):
        maps = attention_maps(model, images, block)
        assert maps.shape == (2, 4, 16) and maps.dtype == torch.float32
        # rows of a softmax over 1 + N tokens minus the CLS->CLS entry: in (0, 1]
        assert bool(((maps.sum(-1) > 0) & (maps.sum(-1) <= 1 + 1e-6)).all())
    assert not torch.allclose(attention_maps(model, images, 0), attention_maps(model, images, -1))


def _brute_force(weights: list[float], mass: float) -> set[int]:
    """Smallest subset reaching the mass; among those, the one with the largest total."""
    total = sum(weights)
    for size in range(1, len(weights) + 1):
        best = max(itertools.combinations(range(len(weights)), size), key=lambda c: sum(weights[i] for i in c))
        if sum(weights[i] for i in best) >= mass * total - 1e-12:
            return set(best)
    return set(range(len(weights)))


@pytest.mark.parametrize("seed", range(20))
def test_threshold_keeps_the_fewest_patches_holding_the_mass(seed: int) -> None:
    weights = torch.rand(9, generator=torch.Generator().manual_seed(seed)) ** 3
    for mass in (0.1, 0.6, 0.9, 1.0):
        kept = threshold_by_mass(weights, mass)
        assert kept.dtype == torch.bool
        assert weights[kept].sum() >= mass * weights.sum() - 1e-6
        assert set(torch.nonzero(kept).flatten().tolist()) == _brute_force(weights.tolist(), mass)


def test_threshold_batched_exact_and_validation() -> None:
    attention = torch.tensor([[[0.5, 0.1, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]]])
    kept = threshold_by_mass(attention, 0.6)
    assert kept.tolist() == [[[True, False, True, False], [True, True, True, False]]]
    with pytest.raises(ValueError, match=r"mass must be in \(0, 1\]"):
        threshold_by_mass(attention, 0.0)


def test_head_colour_map() -> None:
    kept = torch.tensor([[True, False, False, True], [True, False, True, False]])
    rgba = head_colour_map(kept, (2, 2), 3)
    assert rgba.shape == (6, 6, 4)
    assert rgba[0, 0, :3].tolist() == pytest.approx(((HEAD_COLOURS[0] + HEAD_COLOURS[1]) / 2).tolist())
    assert rgba[0, 4, 3] == 0.0  # patch 1 kept by no head: transparent
    assert rgba[4, 0, :3].tolist() == pytest.approx(HEAD_COLOURS[1].tolist())  # patch 2: head 1 only
    assert rgba[5, 5, :3].tolist() == pytest.approx(HEAD_COLOURS[0].tolist())
    assert rgba[5, 5, 3] == pytest.approx(0.6)
