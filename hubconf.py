"""torch.hub entry points: ``torch.hub.load(REPO_DIR, "attmask_vit", source="local", checkpoint=PATH)``.

``attmask_vit`` loads the backbone of any checkpoint the project reads (its run folders and
checkpoints, original DINO / iBOT / AttMask checkpoints, timm state dicts, exports); ``vit_tiny``,
``vit_small`` and ``vit_base`` build the preset architectures (randomly initialised, or from
``checkpoint``). Every model is in eval mode and returns ``ViTOutput`` (``cls_token``,
``patch_tokens``).
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "timm", "safetensors"]

try:  # installed (pip install -e .) or not: the package lives in src/
    import attmask  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def attmask_vit(checkpoint: str, student: bool = False, num_heads: int | None = None):
    """The evaluated backbone (teacher for iBOT / DINO / MST) of ``checkpoint``, or the student."""
    from attmask.models.checkpoints import load_backbone

    return load_backbone(checkpoint, "student" if student else None, num_heads).model


def _preset(name: str, checkpoint: str | None, **kwargs):
    from attmask.models import build_vit
    from attmask.models.registry import VIT_ARCHITECTURES

    if checkpoint is None:
        return build_vit(name, **kwargs).eval()
    from attmask.models.checkpoints import load_backbone

    width = VIT_ARCHITECTURES[name]["embed_dim"]
    return load_backbone(checkpoint, expect={"embed_dim": width}).model


def vit_tiny(checkpoint: str | None = None, **kwargs):
    """ViT-Tiny (width 192, 3 heads); ``kwargs`` override constructor arguments when no checkpoint is given."""
    return _preset("vit_tiny", checkpoint, **kwargs)


def vit_small(checkpoint: str | None = None, **kwargs):
    """ViT-Small (width 384, 6 heads), the AttMask paper's backbone."""
    return _preset("vit_small", checkpoint, **kwargs)


def vit_base(checkpoint: str | None = None, **kwargs):
    """ViT-Base (width 768, 12 heads)."""
    return _preset("vit_base", checkpoint, **kwargs)
