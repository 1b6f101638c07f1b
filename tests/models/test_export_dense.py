"""``attmask export --format mmseg``: the weights load strict into mmsegmentation's ViT layout and compute
the same features.

mmsegmentation (it needs mmcv's compiled ops) cannot be installed here, so the target is written
below from its documented module structure (``mmseg/models/backbones/vit.py``:
``PatchEmbed.projection`` conv, ``TransformerEncoderLayer`` with ``ln1``, ``attn.attn`` =
``nn.MultiheadAttention``, ``ln2``, ``ffn.layers`` = ``Sequential(Sequential(Linear, GELU, Dropout),
Linear, Dropout)``, and ``ln1`` as the final norm).
"""

from __future__ import annotations

import torch
from torch import nn

from attmask.cli.main import main
from attmask.models import build_vit
from attmask.models.export_dense import mmseg_state_dict
from tests.engine.tiny import TINY


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0)), nn.Linear(4 * dim, dim), nn.Dropout(0.0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        x = x + self.attn.attn(y, y, y, need_weights=False)[0]
        return x + self.ffn.layers(self.ln2(x))


class MMSegViT(nn.Module):
    """mmsegmentation's VisionTransformer keys (with_cls_token, final_norm), written from its layout."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, grid: int) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.layers = nn.ModuleList(_Layer(dim, heads) for _ in range(depth))
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.projection(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.ln1(x)


def test_mmseg_layout_loads_strict_and_gives_the_same_tokens() -> None:
    torch.manual_seed(0)
    ours = build_vit("vit_tiny", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3).eval()
    target = MMSegViT(48, 2, 3, 8, 4).eval()
    target.load_state_dict(mmseg_state_dict(ours.state_dict()), strict=True)
    images = torch.randn(2, 3, 32, 32)
    out = ours(images)
    tokens = target(images)
    torch.testing.assert_close(tokens[:, 0], out.cls_token, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens[:, 1:], out.patch_tokens, rtol=1e-5, atol=1e-5)
    resized = mmseg_state_dict(ours.state_dict(), (8, 8), (4, 4))
    assert resized["pos_embed"].shape == (1, 65, 48)
    MMSegViT(48, 2, 3, 8, 8).load_state_dict(resized, strict=True)


def test_export_mmseg_from_the_cli(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *[a for s in (*TINY, "optim.epochs=1") for a in ("--set", s)]]) == 0
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run),
                "--format",
                "mmseg",
                "--img-size",
                "32",
                "--out",
                str(tmp_path / "vit.pth"),
            ]
        )
        == 0
    )
    state = torch.load(tmp_path / "vit.pth", weights_only=True)["state_dict"]
    assert state["pos_embed"].shape == (1, 8 * 8 + 1, 192) and "layers.1.attn.attn.in_proj_weight" in state
    MMSegViT(192, 2, 3, 4, 8).load_state_dict(state, strict=True)
    snippet = (tmp_path / "vit.py").read_text()
    assert "type='VisionTransformer'" in snippet and "embed_dims=192" in snippet and "img_size=(32, 32)" in snippet
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run),
                "--format",
                "mmseg",
                "--img-size",
                "30",
                "--out",
                str(tmp_path / "bad.pth"),
            ]
        )
        == 2
    )
    assert "multiple of the patch size 4" in capsys.readouterr().err
