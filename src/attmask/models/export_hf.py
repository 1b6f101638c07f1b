"""Export a backbone as a Hugging Face Hub folder that timm loads: ``config.json`` + ``model.safetensors``.

Written by timm itself (``timm.models.save_for_hf``) from a timm ``VisionTransformer`` holding the
exported weights, so ``timm.create_model("local-dir:FOLDER", pretrained=True)`` (offline) or, once the
folder is pushed, ``timm.create_model("hf-hub:USER/NAME", pretrained=True)`` rebuilds it. The
preprocessing recorded is this project's (ImageNet mean and std, bicubic), not timm's defaults for
the architecture name. Backbones with a convolutional stem are refused: ``config.json`` cannot name
the stem's class, so timm could not rebuild them (use the default safetensors + JSON export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf

from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD
from attmask.models.convert import to_timm_state_dict
from attmask.models.export import export_info


def export_hf(model: torch.nn.Module, kwargs: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/config.json`` and ``out_dir/model.safetensors``; returns ``out_dir``."""
    info = export_info(kwargs)
    if "embed_layer" in info:
        raise ValueError(
            "a backbone with a convolutional stem cannot be rebuilt by timm from config.json; "
            "use the default export (safetensors + JSON naming the stem class)"
        )
    timm_kwargs = info["timm_kwargs"]
    target = timm.create_model(info["timm_model"], pretrained=False, **timm_kwargs)
    target.load_state_dict(to_timm_state_dict(model.state_dict()), strict=True)
    size = int(timm_kwargs["img_size"])
    preprocessing = {
        "tag": "attmask",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bicubic",
        "input_size": [int(timm_kwargs.get("in_chans", 3)), size, size],
        "license": "see the source run",
    }
    out_dir = Path(out_dir)
    save_for_hf(
        target,
        str(out_dir),
        model_config={"pretrained_cfg": preprocessing},
        model_args=timm_kwargs,
        safe_serialization=True,
    )
    return out_dir
