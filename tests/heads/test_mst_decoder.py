"""MST's image decoder: full-resolution output for even and odd patch sizes, grid checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attmask.heads import MSTDecoder


@pytest.mark.parametrize(("patch_size", "grid", "stages"), [(4, (4, 4), 2), (7, (4, 4), 0), (16, (3, 5), 4)])
def test_restores_the_image_resolution(patch_size: int, grid: tuple[int, int], stages: int) -> None:
    torch.manual_seed(0)
    decoder = MSTDecoder(48, patch_size)
    tokens = torch.randn(2, grid[0] * grid[1], 48, requires_grad=True)
    image = decoder(tokens, grid)
    assert image.shape == (2, 3, grid[0] * patch_size, grid[1] * patch_size)
    upsampling = [m for m in decoder.stages if isinstance(m, nn.ConvTranspose2d)]
    assert len(upsampling) == stages and decoder.project.stride[0] == patch_size // 2**stages
    image.abs().sum().backward()
    assert tokens.grad is not None and torch.isfinite(tokens.grad).all()


def test_channels_halve_down_to_the_floor_and_end_in_in_chans() -> None:
    decoder = MSTDecoder(384, 16, in_chans=1)
    widths = [m.out_channels for m in decoder.stages if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [192, 96, 48, 24] and decoder.project.out_channels == 1
    narrow = MSTDecoder(40, 16).stages
    assert [m.out_channels for m in narrow if isinstance(m, nn.ConvTranspose2d)] == [20, 16, 16, 16]


def test_images_are_decoded_independently() -> None:
    """GroupNorm, no batch statistics: one image's tokens never change another image's output."""
    torch.manual_seed(0)
    decoder = MSTDecoder(32, 4)
    tokens = torch.randn(3, 16, 32)
    base = decoder(tokens, (4, 4))
    changed = tokens.clone()
    changed[1, 5] += 1.0
    out = decoder(changed, (4, 4))
    torch.testing.assert_close(out[[0, 2]], base[[0, 2]])
    assert not torch.allclose(out[1], base[1])


def test_wrong_token_count_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"must be \(B, 16, 32\)"):
        MSTDecoder(32, 4)(torch.randn(1, 15, 32), (4, 4))
