"""Encoder: the patch head over the selected (masked) tokens gives the rows of the full head."""

from __future__ import annotations

import pytest
import torch

from attmask.heads import DINOHead, MSTDecoder
from attmask.losses import masked_token_index
from attmask.methods import Encoder
from attmask.models import build_vit


def _encoder(separate: bool, use_bn: bool = False) -> Encoder:
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    head = DINOHead(192, 32, hidden_dim=24, bottleneck_dim=8, use_bn=use_bn)
    patch_head = DINOHead(192, 16, hidden_dim=24, bottleneck_dim=8) if separate else None
    return Encoder(backbone, head, patch_head).eval()


@pytest.mark.parametrize("separate", [False, True])
def test_selected_patch_rows_equal_the_full_head_rows(separate: bool) -> None:
    encoder = _encoder(separate)
    views = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    masks = torch.rand(4, 16, generator=torch.Generator().manual_seed(2)) < 0.3
    masks[0] = False  # an image without masked tokens
    locals_ = [torch.randn(2, 3, 8, 8)] * 2
    index = masked_token_index(masks)
    with torch.no_grad():
        full = encoder(views, masks, locals_)
        selected = encoder(views, masks, locals_, patch_index=index)
    assert selected.patch is None and full.selected_patch is None
    assert selected.selected_patch.shape == (int(masks.sum()), 16 if separate else 32)
    torch.testing.assert_close(selected.selected_patch, full.patch[masks], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(selected.cls, full.cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(selected.local_cls, full.local_cls)


def test_selected_patches_need_token_wise_heads() -> None:
    encoder = _encoder(separate=False, use_bn=True)
    masks = torch.ones(2, 16, dtype=torch.bool)
    with pytest.raises(ValueError, match="without BatchNorm"):
        encoder(torch.randn(2, 3, 16, 16), masks, patch_index=masked_token_index(masks))


def test_what_a_forward_fills_is_fixed_by_construction() -> None:
    torch.manual_seed(0)
    views = torch.randn(2, 3, 16, 16)
    backbone = build_vit("vit_tiny", img_size=16, patch_size=4, depth=1)
    head = DINOHead(192, 32, hidden_dim=24, bottleneck_dim=8)
    ibot = Encoder(backbone, head).eval()(views)
    assert ibot.patch.shape == (2, 16, 32) and ibot.reconstruction is None and ibot.cls_attention is None
    dino = Encoder(backbone, head, patch_outputs=False).eval()
    out = dino(views, return_cls_attention=True)
    assert out.patch is None and out.selected_patch is None and out.cls_attention.shape == (2, 3, 16)
    with pytest.raises(ValueError, match="patch_outputs"):
        dino(views, patch_index=torch.tensor([0, 1]))
    mst = Encoder(backbone, head, decoder=MSTDecoder(192, 4), patch_outputs=False).eval()
    assert mst(views, torch.zeros(2, 16, dtype=torch.bool)).reconstruction.shape == (2, 3, 16, 16)
