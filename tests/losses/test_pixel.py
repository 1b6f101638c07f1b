"""MAE and SimMIM pixel losses against hand-computed values."""

from __future__ import annotations

import torch

from attmask.losses import mae_loss, masked_l1_loss, normalized_patches


def test_normalized_patches_use_each_patch_mean_and_unbiased_std() -> None:
    patches = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])  # patch 0: mean 2, var 2; patch 1: constant
    out = normalized_patches(patches, eps=0.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([-1.0, 1.0]) / 2**0.5)
    assert torch.isnan(out[0, 1]).all(), "eps=0 on a constant patch divides by 0; the default eps avoids it"
    assert torch.isfinite(normalized_patches(patches)).all()


def test_mae_loss_averages_over_hidden_patches_only() -> None:
    prediction = torch.tensor([[[1.0, 1.0], [0.0, 2.0], [5.0, 5.0]]])
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    # patch 0: mean(1, 1) = 1; patch 1: mean(0, 4) = 2; patch 2 visible -> (1 + 2) / 2
    torch.testing.assert_close(mae_loss(prediction, target, mask), torch.tensor(1.5))
    assert float(mae_loss(prediction, target, torch.zeros(1, 3, dtype=torch.bool))) == 0.0


def test_masked_l1_counts_hidden_pixels_and_divides_by_channels() -> None:
    images = torch.zeros(1, 2, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.0, 8.0]]]])
    pixel_mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # hidden pixels (0,0) and (1,1): |1| + |4| + |-1| + |8| = 14 over 2 pixels and 2 channels
    expected = 14.0 / (2.0 + 1e-5) / 2
    torch.testing.assert_close(masked_l1_loss(prediction, images, pixel_mask), torch.tensor(expected))
