"""patchify / unpatchify / mask_to_pixels: layout and round trip."""

from __future__ import annotations

import pytest
import torch

from attmask.models import mask_to_pixels, patchify, unpatchify


def test_patchify_layout_is_row_major_with_pixels_then_channels() -> None:
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(images, 2)  # 2x3 grid of 2x2 patches
    assert patches.shape == (2, 6, 12)
    # patch 4 = grid row 1, column 1: pixels rows 2-3, columns 2-3; values (p, q, c)-ordered
    expected = torch.stack([images[1, c, 2 + p, 2 + q] for p in range(2) for q in range(2) for c in range(3)])
    assert torch.equal(patches[1, 4], expected)
    assert torch.equal(unpatchify(patches, 2, (2, 3), 3), images)


def test_mask_to_pixels_covers_each_token_square() -> None:
    mask = torch.tensor([[True, False, False, True]])  # 2x2 grid
    pixels = mask_to_pixels(mask, 3, (2, 2))
    assert pixels.shape == (1, 1, 6, 6)
    assert pixels[0, 0, :3, :3].all() and not pixels[0, 0, :3, 3:].any()
    assert pixels[0, 0, 3:, 3:].all() and int(pixels.sum()) == 18


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        patchify(torch.zeros(1, 3, 6, 8), 4)
    with pytest.raises(ValueError, match="do not fit"):
        unpatchify(torch.zeros(1, 5, 12), 2, (2, 2), 3)
