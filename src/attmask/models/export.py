"""Export a backbone as a timm-layout ``.safetensors`` file plus a JSON description.

The JSON names a timm model and the keyword arguments that make its shapes match, so

    >>> model = timm.create_model(info["timm_model"], pretrained=False, **info["timm_kwargs"])
    >>> model.load_state_dict(safetensors.torch.load_file(path), strict=True)

gives the same features as the exported backbone (``num_classes=0``: no classifier).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

import attmask
from attmask.core.files import write_atomic
from attmask.models.convert import to_timm_state_dict

#: timm model names by width; the kwargs override everything else, so any width works.
_TIMM_NAMES = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224"}
EXPORT_FORMAT = "attmask-export"


def export_info(kwargs: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON written beside the weights: timm model name, kwargs and provenance.

    A backbone with a convolutional stem also names its ``embed_layer``: timm builds it with
    ``embed_layer=functools.partial(ConvStemPatchEmbed, stem_channels=c)`` added to the kwargs.
    """
    timm_kwargs = {**kwargs, "num_classes": 0}
    timm_kwargs.pop("drop_path_rate", None)
    stem_channels = timm_kwargs.pop("stem_channels", 0)
    info = {
        "format": EXPORT_FORMAT,
        "timm_model": _TIMM_NAMES.get(int(kwargs["embed_dim"]), "vit_base_patch16_224"),
        "timm_kwargs": timm_kwargs,
        "source": source or {},
        "attmask_version": attmask.__version__,
    }
    if stem_channels:
        info["embed_layer"] = {"class": "attmask.models.conv_stem.ConvStemPatchEmbed", "stem_channels": stem_channels}
    return info


def export_backbone(
    model: torch.nn.Module, kwargs: dict[str, Any], out: str | Path, source: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``out`` (``.safetensors``, timm keys) and ``out`` with suffix ``.json``.

    Args:
        model: this project's :class:`~attmask.models.VisionTransformer`.
        kwargs: its constructor arguments (e.g. :attr:`LoadedBackbone.kwargs`).
        out: destination ending in ``.safetensors``.
        source: provenance recorded in the JSON (checkpoint path, teacher/student, ...).

    Returns:
        ``(weights path, json path)``.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export path must end in .safetensors, got {out.name}")
    state = {k: v.detach().cpu().contiguous() for k, v in to_timm_state_dict(model.state_dict()).items()}
    data = safetensors_bytes(state, metadata={"format": EXPORT_FORMAT})
    write_atomic(out, lambda stream: stream.write(data))
    sidecar = out.with_suffix(".json")
    info = (json.dumps(export_info(kwargs, source), indent=2) + "\n").encode()
    write_atomic(sidecar, lambda stream: stream.write(info))
    return out, sidecar
