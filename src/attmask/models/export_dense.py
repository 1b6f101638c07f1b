"""Export a backbone for dense tasks: mmsegmentation's ``VisionTransformer`` key layout (the paper's
Table 6 segmentation setting: UperNet on ADE20K with a ViT backbone).

The renaming is the one mmsegmentation documents in ``tools/model_converters/vit2mmseg.py``
(timm -> mmseg): ``patch_embed.proj`` -> ``patch_embed.projection``; ``blocks.i`` -> ``layers.i``
with ``norm1/norm2`` -> ``ln1/ln2``, ``attn.qkv`` -> ``attn.attn.in_proj_{weight,bias}`` (PyTorch's
``nn.MultiheadAttention`` packing, which is the same q, k, v order), ``attn.proj`` ->
``attn.attn.out_proj``, ``mlp.fc1`` -> ``ffn.layers.0.0``, ``mlp.fc2`` -> ``ffn.layers.1``; the final
``norm`` -> ``ln1`` (``final_norm=True``). The position table is resampled (bicubic, timm's
``resample_abs_pos_embed``) to the grid of the fine-tuning crop. The weights are saved as
``{"state_dict": ...}`` for mmengine's ``CheckpointLoader``, beside a config snippet.
A convolutional stem has no mmseg counterpart and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed

from attmask.core.files import write_atomic

_RENAMES = (
    ("patch_embed.proj.", "patch_embed.projection."),
    (".norm1.", ".ln1."),
    (".norm2.", ".ln2."),
    (".attn.qkv.weight", ".attn.attn.in_proj_weight"),
    (".attn.qkv.bias", ".attn.attn.in_proj_bias"),
    (".attn.proj.", ".attn.attn.out_proj."),
    (".mlp.fc1.", ".ffn.layers.0.0."),
    (".mlp.fc2.", ".ffn.layers.1."),
)


def mmseg_state_dict(
    state: dict[str, torch.Tensor], grid: tuple[int, int] | None = None, old_grid: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """This project's (timm-named) ViT state dict in mmseg's key layout, the position table resized
    from ``old_grid`` to ``grid`` if both are given."""
    if any(key.startswith("patch_embed.stem") for key in state):
        raise ValueError(
            "a backbone with a convolutional stem (model.stem_channels) has no mmsegmentation "
            "counterpart; export it with the default format for timm instead"
        )
    result = {}
    for key, value in state.items():
        if key == "mask_token":
            continue
        name = "ln1." + key.removeprefix("norm.") if key.startswith("norm.") else key
        name = name.replace("blocks.", "layers.", 1) if name.startswith("blocks.") else name
        for old, new in _RENAMES:
            name = name.replace(old, new)
        result[name] = value.detach().cpu().contiguous()
    if grid is not None and old_grid is not None and tuple(grid) != tuple(old_grid):
        result["pos_embed"] = resample_abs_pos_embed(
            result["pos_embed"], new_size=list(grid), old_size=list(old_grid), num_prefix_tokens=1
        )
    return result


def mmseg_config(kwargs: dict[str, Any], img_size: int, weights: str) -> str:
    """A config fragment for mmsegmentation's ``VisionTransformer`` backbone with these weights."""
    return (
        "# mmsegmentation backbone written by `attmask export --format mmseg`\n"
        "model = dict(\n"
        "    backbone=dict(\n"
        f"        type='VisionTransformer', img_size=({img_size}, {img_size}), patch_size={kwargs['patch_size']},\n"
        f"        in_channels={kwargs.get('in_chans', 3)}, embed_dims={kwargs['embed_dim']}, "
        f"num_layers={kwargs['depth']}, num_heads={kwargs['num_heads']},\n"
        f"        mlp_ratio={kwargs.get('mlp_ratio', 4.0)}, qkv_bias={kwargs.get('qkv_bias', True)}, "
        "final_norm=True, with_cls_token=True,\n"
        "        norm_cfg=dict(type='LN', eps=1e-6), interpolate_mode='bicubic',\n"
        f"        init_cfg=dict(type='Pretrained', checkpoint='{weights}')))\n"
    )


def export_mmseg(model: torch.nn.Module, kwargs: dict[str, Any], out: str | Path, img_size: int) -> tuple[Path, Path]:
    """Write ``out`` (``.pth``, ``{"state_dict": mmseg keys}``) and ``out`` with suffix ``.py`` (config)."""
    out = Path(out)
    if out.suffix != ".pth":
        raise ValueError(f"an mmseg export path must end in .pth, got {out.name}")
    patch = int(kwargs["patch_size"])
    if img_size < patch or img_size % patch:
        raise ValueError(f"--img-size must be a multiple of the patch size {patch}, got {img_size}")
    old_grid = tuple(int(g) for g in model.grid_size)
    state = mmseg_state_dict(model.state_dict(), (img_size // patch, img_size // patch), old_grid)
    write_atomic(out, lambda stream: torch.save({"state_dict": state}, stream))
    snippet = out.with_suffix(".py")
    text = mmseg_config(kwargs, img_size, str(out)).encode()
    write_atomic(snippet, lambda stream: stream.write(text))
    return out, snippet
