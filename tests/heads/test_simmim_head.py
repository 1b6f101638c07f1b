"""SimMIM's linear head: tokens on their grid -> pixels, one patch per token."""

from __future__ import annotations

import pytest
import torch

from attmask.heads import SimMIMHead


def test_shape() -> None:
    head = SimMIMHead(embed_dim=16, patch_size=4, in_chans=3)
    assert head(torch.randn(2, 6, 16), (2, 3)).shape == (2, 3, 8, 12)
    assert SimMIMHead(16, 7, in_chans=1)(torch.randn(1, 4, 16), (2, 2)).shape == (1, 1, 14, 14)


def test_each_token_predicts_only_its_own_patch() -> None:
    torch.manual_seed(0)
    head = SimMIMHead(embed_dim=8, patch_size=2)
    tokens = torch.randn(1, 6, 8)
    changed = tokens.clone()
    changed[0, 4] += 1.0  # token 4 = row 1, col 1 of a 2x3 grid -> pixels [2:4, 2:4]
    difference = (head(changed, (2, 3)) - head(tokens, (2, 3))).abs().sum(dim=1)[0]  # (4, 6)
    inside = torch.zeros(4, 6, dtype=torch.bool)
    inside[2:4, 2:4] = True
    assert (difference[inside] > 0).all() and (difference[~inside] == 0).all()


def test_wrong_grid() -> None:
    with pytest.raises(ValueError, match="5 patch tokens do not fit a 2x3 grid"):
        SimMIMHead(8, 2)(torch.randn(1, 5, 8), (2, 3))
