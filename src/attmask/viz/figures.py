"""Attention and mask figures of a model on a few images (CLI, report and trainer share this)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from attmask.data import image_to_tensor
from attmask.data.datasets import build_dataset
from attmask.masking import scores_from_cls_attention
from attmask.viz.attention import attention_maps
from attmask.viz.masks import strategy_masks
from attmask.viz.render import render_attention, render_mask_grid

FIGURE_KINDS = ("attention", "masks")


def sample_images(source: str, count: int, data_dir: str | None = None) -> list[tuple[str, Image.Image]]:
    """``count`` fixed images of a data set: the first test image of each class, then the next ones.

    Returns:
        ``(name, RGB image)`` pairs; names read ``<source>_<index>[_<class>]``, with characters
        unsafe in file names replaced by ``-`` (``T-shirt/top`` -> ``T-shirt-top``).
    """
    if count < 1:
        raise ValueError(f"the number of images must be >= 1, got {count}")
    dataset = build_dataset(source, "test", None, data_dir)
    targets = dataset.targets.tolist()
    chosen = [targets.index(label) for label in sorted(set(targets))]
    chosen = (chosen + [i for i in range(len(targets)) if i not in set(chosen)])[:count]
    classes = list(getattr(dataset, "classes", []))
    stem = Path(source).name
    names = [f"{stem}_{i}" + (f"_{classes[targets[i]]}" if targets[i] >= 0 and classes else "") for i in chosen]
    return [(re.sub(r"[^A-Za-z0-9_.-]+", "-", name), dataset.image(i)) for name, i in zip(names, chosen)]


@torch.no_grad()
def draw_figures(
    model: torch.nn.Module,
    images: Sequence[tuple[str, Image.Image]],
    size: int,
    out_dir: str | Path,
    label: str,
    kinds: Sequence[str] = FIGURE_KINDS,
    ratios: Sequence[float] = (0.1, 0.3, 0.5),
    block: int = -1,
    seed: int = 0,
    show_ratio: float = 0.03,
    show_max: float = 0.1,
    mass: float = 0.6,
) -> list[Path]:
    """Write ``<name>_attention.png`` and/or ``<name>_masks.png`` for every image.

    Args:
        model: ViT (its train/eval flags are restored afterwards).
        images: ``(name, RGB image)`` pairs.
        size: side of the centre crop fed to the model.
        out_dir: destination folder.
        label: what the model is (goes into every title, e.g. "RANDOMLY INITIALISED").
        kinds: subset of :data:`FIGURE_KINDS`.
        ratios: rows of the mask figure.
        block: block whose [CLS] attention is drawn and ranks the patches.
        seed: seeds the random strategies' masks.
        show_ratio, show_max: AttMask-Hint settings; mass: head threshold of the attention figure.

    Returns:
        The written paths.
    """
    unknown = sorted(set(kinds) - set(FIGURE_KINDS))
    if unknown or not all(0.0 <= r <= 1.0 for r in ratios):
        raise ValueError(f"figure kinds must be in {FIGURE_KINDS} and ratios in [0, 1], got {kinds}, {ratios}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    written = []
    try:
        for name, image in images:
            inputs, pixels = image_to_tensor(image, size)
            device = next(model.parameters()).device
            attention = attention_maps(model, inputs[None].to(device), block)[0].cpu()  # (heads, N)
            picture = pixels.permute(1, 2, 0).numpy()
            where = "last block" if block == -1 else f"block {block}"
            title = f"{name}: {label}, {where}"
            if "attention" in kinds:
                written.append(
                    render_attention(
                        picture, attention, model.patch_size, title, Path(out_dir) / f"{name}_attention.png", mass
                    )
                )
            if "masks" in kinds:
                scores = scores_from_cls_attention(attention[None])[0]
                masks = strategy_masks(
                    scores,
                    model.grid_for(size, size),
                    list(ratios),
                    torch.Generator().manual_seed(seed),
                    show_ratio,
                    show_max,
                )
                written.append(
                    render_mask_grid(
                        picture,
                        scores,
                        masks,
                        list(ratios),
                        model.patch_size,
                        title,
                        Path(out_dir) / f"{name}_masks.png",
                    )
                )
    finally:
        for module, training in modes:
            module.training = training
    return written
