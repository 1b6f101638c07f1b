"""Export a backbone to ONNX (dynamic batch, one resolution per export), checked with onnxruntime.

The graph takes ``images (batch, C, S, S)`` (normalised as for the PyTorch model) and returns
``cls_token (batch, D)`` and ``patch_tokens (batch, N, D)`` (final norm). After writing, the file is
run by onnxruntime on a random batch of 2 and compared with PyTorch; the largest absolute
difference is returned (and printed by ``attmask export --format onnx``). Needs the ``onnx`` extra
(``pip install attmask[onnx]``: onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


class _Tokens(nn.Module):
    """The ViT with plain tensor outputs (``ViTOutput`` is not an ONNX value)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return out.cls_token, out.patch_tokens


@dataclass
class OnnxCheck:
    """Where the model went and how closely onnxruntime reproduces PyTorch."""

    path: Path
    size: int
    channels: int
    max_abs_diff: float


def export_onnx(model: nn.Module, out: str | Path, img_size: int) -> OnnxCheck:
    """Write ``out`` (``.onnx``) for ``img_size`` inputs and verify it with onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("ONNX export needs onnx, onnxruntime and onnxscript: pip install 'attmask[onnx]'") from None
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"an ONNX export path must end in .onnx, got {out.name}")
    model = model.eval().cpu()
    patch = model.patch_size
    if img_size < patch or img_size % patch:
        raise ValueError(f"--img-size must be a multiple of the patch size {patch}, got {img_size}")
    wrapper = _Tokens(model).eval()
    example = torch.randn(2, model.in_chans, img_size, img_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        wrapper,
        (example,),
        str(out),
        input_names=["images"],
        output_names=["cls_token", "patch_tokens"],
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    check = torch.randn(3, model.in_chans, img_size, img_size)
    cls_onnx, patches_onnx = session.run(None, {"images": check.numpy()})
    with torch.no_grad():
        cls_torch, patches_torch = wrapper(check)
    diff = max(
        float(np.abs(cls_onnx - cls_torch.numpy()).max()), float(np.abs(patches_onnx - patches_torch.numpy()).max())
    )
    return OnnxCheck(out, img_size, model.in_chans, diff)
