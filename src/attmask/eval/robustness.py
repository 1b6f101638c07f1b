"""Robustness to occlusion of the most attended patches (AttMask paper, Table A2).

A classifier fitted on clean features (k-NN bank or linear probe) classifies validation images
whose ``floor(r N)`` most attended patches are blacked out, for r in 0/10/30/50/70%. The
attention is the head-mean last-block [CLS] attention of a chosen model (by default the
evaluated one) on the clean image, i.e. the AttMask-High mask drawn on the pixels. A model that
relies on a few salient patches degrades fast; one that spreads its evidence degrades slowly.
The same evaluator run at ratio 0 on several folders gives the IN-9 style background test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from attmask.data.augment import IMAGENET_MEAN, IMAGENET_STD
from attmask.eval.features import batch_features
from attmask.masking import attmask_high, scores_from_cls_attention

DEFAULT_RATIOS = (0.0, 0.1, 0.3, 0.5, 0.7)
#: ``features (B, F) -> class scores (B, C)``.
Classifier = Callable[[Tensor], Tensor]


def black_value(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """The normalised value of a black pixel per channel, ``(C,)``: ``(0 - mean) / std``."""
    return -torch.tensor(mean) / torch.tensor(std)


def attention_scores(model: nn.Module, images: Tensor) -> Tensor:
    """Head-mean last-block [CLS] attention over patches, ``(B, N)`` (AttMask eq. 7)."""
    return scores_from_cls_attention(model(images, return_cls_attention=True).cls_attention)


def occlude(images: Tensor, mask: Tensor, patch_size: int, fill: Tensor) -> Tensor:
    """Paint the hidden patches of ``images`` with ``fill`` (a new tensor).

    Args:
        images: ``(B, C, H, W)``.
        mask: bool ``(B, N)``, N = (H / p) (W / p) in row-major order, True = occlude.
        patch_size: ``p``.
        fill: ``(C,)`` value per channel.

    Returns:
        ``(B, C, H, W)``: pixel ``(y, x)`` equals ``fill`` iff its patch is masked.
    """
    height, width = images.shape[-2] // patch_size, images.shape[-1] // patch_size
    if mask.shape != (images.shape[0], height * width):
        raise ValueError(f"mask must be (B, {height * width}) for this image size, got {tuple(mask.shape)}")
    grid = mask.reshape(-1, 1, height, width).to(images.dtype)
    pixels = grid.repeat_interleave(patch_size, -2).repeat_interleave(patch_size, -1).bool()
    return torch.where(pixels, fill.to(images)[None, :, None, None], images)


@torch.no_grad()
def occlusion_accuracy(
    backbone: nn.Module,
    classify: Classifier,
    loader: Iterable[tuple[Tensor, Tensor]],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    attention_model: nn.Module | None = None,
    kind: str = "cls",
    device: torch.device | str = "cpu",
    fill: Tensor | None = None,
    progress: bool = False,
) -> dict[float, float]:
    """Top-1 (percent) of ``classify`` on images with their most attended patches occluded.

    Args:
        backbone: ViT whose features are classified (eval mode is set and restored).
        classify: ``features (B, F) -> scores (B, C)`` fitted on clean training features.
        loader: ``(images (B, C, H, W) normalised, labels (B,))``.
        ratios: fractions of patches to occlude, each in ``[0, 1]``.
        attention_model: source of the attention (same patch grid); default ``backbone``.
        kind: feature kind (see :func:`attmask.eval.features.batch_features`).
        device: where the models run.
        fill: per-channel value of occluded pixels; default black (:func:`black_value`).

    Returns:
        ``{ratio: top-1 percent}``.
    """
    if not ratios or min(ratios) < 0 or max(ratios) > 1:
        raise ValueError(f"ratios must lie in [0, 1], got {tuple(ratios)}")
    source = attention_model or backbone
    fill = black_value() if fill is None else fill
    modes = [(m, m.training) for m in (*backbone.modules(), *source.modules())]
    backbone.eval(), source.eval()
    correct = {float(r): 0 for r in ratios}
    total = 0
    try:
        for images, labels in tqdm(loader, desc="occlusion", disable=not progress):
            images, labels = images.to(device), torch.as_tensor(labels).to(device)
            scores = attention_scores(source, images)  # (B, N)
            for ratio in correct:
                hidden = occlude(images, attmask_high(scores, ratio), source.patch_size, fill)
                predicted = classify(batch_features(backbone, hidden, kind).float()).argmax(dim=1)
                correct[ratio] += int((predicted == labels).sum())
            total += labels.numel()
    finally:
        for module, training in modes:
            module.training = training
    if total == 0:
        raise ValueError("the loader yielded no images")
    return {ratio: 100.0 * hits / total for ratio, hits in correct.items()}
