"""``attmask eval revisited``: retrieval on the revisited Oxford / Paris layout with multi-scale features.

Layout (the official one, also for your own data): ``ROOT/gnd_<dataset>.pkl`` (``imlist``, ``qimlist``
and ``gnd``: per query its ``bbx`` and the ``easy`` / ``hard`` / ``junk`` database indices) and
``ROOT/jpg/<name>.jpg`` for every name in both lists. As in DINO's ``eval_image_retrieval.py``:
every image is shrunk to at most ``max_side`` pixels a side (aspect kept), queries are first cropped
to their box, and the feature is the [CLS] token averaged over scales 1, 1/sqrt(2) and 1/2 (bilinear
resizes) and L2-normalised; the database is ranked by cosine similarity. Here sides are also cut
down to a multiple of the patch size, which this ViT requires (DINO's patch convolution drops
the remainder the same way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD, load_image
from attmask.eval.revisited import PROTOCOLS, compute_map, load_ground_truth, protocol_sets

DEFAULT_SCALES = (1.0, 1 / math.sqrt(2), 0.5)


def retrieval_image(path: Path, max_side: int, box: Sequence[float] | None = None) -> torch.Tensor:
    """``(1, 3, H, W)`` normalised image: cropped to ``box`` (x1, y1, x2, y2) if given, shrunk to
    at most ``max_side`` a side."""
    image = load_image(path)
    if box is not None:
        image = image.crop(tuple(int(round(v)) for v in box))
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    pixels = v2.functional.to_dtype(v2.functional.pil_to_tensor(image), torch.float32, scale=True)
    return v2.functional.normalize(pixels, list(IMAGENET_MEAN), list(IMAGENET_STD)).unsqueeze(0)


def _patch_multiple(images: torch.Tensor, patch: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    return images[..., : max(height // patch, 1) * patch, : max(width // patch, 1) * patch]


@torch.no_grad()
def multiscale_feature(
    model: torch.nn.Module, image: torch.Tensor, scales: Sequence[float] = DEFAULT_SCALES
) -> torch.Tensor:
    """L2-normalised mean of the [CLS] tokens ``(D,)`` of ``image`` ``(1, 3, H, W)`` at each scale."""
    patch = model.patch_size
    total = None
    for scale in scales:
        scaled = image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
        scaled = (
            F.interpolate(
                scaled,
                size=(max(scaled.shape[-2], patch), max(scaled.shape[-1], patch)),
                mode="bilinear",
                align_corners=False,
            )
            if min(scaled.shape[-2:]) < patch
            else scaled
        )
        token = model(_patch_multiple(scaled, patch)).cls_token[0].float()
        total = token if total is None else total + token
    return F.normalize(total / len(scales), dim=0)


def _features(
    model: torch.nn.Module,
    paths: list[Path],
    boxes: list | None,
    max_side: int,
    scales: Sequence[float],
    device: torch.device,
) -> torch.Tensor:
    rows = [
        multiscale_feature(
            model, retrieval_image(path, max_side, None if boxes is None else boxes[i]).to(device), scales
        ).cpu()
        for i, path in enumerate(paths)
    ]
    return torch.stack(rows)


def find_dataset(root: Path, dataset: str | None) -> str:
    """``dataset`` or the name of the single ``gnd_<name>.pkl`` in ``root``."""
    if dataset:
        return dataset
    found = sorted(p.stem.removeprefix("gnd_") for p in root.glob("gnd_*.pkl"))
    if len(found) != 1:
        raise ValueError(
            f"{root} holds {len(found)} gnd_<dataset>.pkl files ({', '.join(found) or 'none'}); "
            "set revisited.dataset (e.g. --set revisited.dataset=roxford5k)"
        )
    return found[0]


@dataclass
class RevisitedSettings:
    """Revisited Oxford / Paris retrieval (DINO's ``eval_image_retrieval.py`` settings).

    Attributes:
        dataset: roxford5k, rparis6k, ... (null: the one gnd_<dataset>.pkl in the data root).
        max_side: images shrunk to at most this many pixels a side.
        scales: feature scales, averaged.
        ks: k of mP@k.
    """

    dataset: str | None = None
    max_side: int = 224
    scales: list[float] = field(default_factory=lambda: list(DEFAULT_SCALES))
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])


def revisited_retrieval(
    model: torch.nn.Module,
    root: str | Path,
    settings: RevisitedSettings | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """mAP and mP@k (percent) under the Easy, Medium and Hard protocols for the dataset in ``root``."""
    root, device, settings = Path(root), device or torch.device("cpu"), settings or RevisitedSettings()
    name = find_dataset(root, settings.dataset)
    truth = load_ground_truth(root / f"gnd_{name}.pkl")
    images, max_side, scales, ks = root / "jpg", settings.max_side, settings.scales, settings.ks
    database = _features(model, [images / f"{n}.jpg" for n in truth["imlist"]], None, max_side, scales, device)
    queries = _features(
        model,
        [images / f"{n}.jpg" for n in truth["qimlist"]],
        [entry.get("bbx") for entry in truth["gnd"]],
        max_side,
        scales,
        device,
    )
    ranks = np.argsort(-(queries @ database.T).numpy(), axis=1, kind="stable").T  # (db, Q), best first
    result: dict[str, Any] = {
        "dataset": name,
        "num_database": len(database),
        "num_queries": len(queries),
        "max_side": max_side,
        "scales": list(scales),
        "ks": list(ks),
    }
    for protocol in PROTOCOLS:
        scores = compute_map(ranks, *protocol_sets(truth["gnd"], protocol), ks)
        result[f"map_{protocol}"] = 100 * scores.map
        result[f"mpr_{protocol}"] = [100 * v for v in scores.mpr]
    return result
