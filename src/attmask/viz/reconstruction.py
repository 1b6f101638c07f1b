"""Reconstruction figures of pixel methods (MAE Fig. 2): original, masked input, reconstruction.

``reconstruct_images`` runs a method on a few images, ``reconstruction_panels`` turns the result
into arrays (tests check them) and ``draw_reconstructions`` writes the PNG via ``viz.render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attmask.data import image_to_tensor
from attmask.data.augment import MultiCropConfig
from attmask.methods.base import Reconstruction
from attmask.viz.masks import denormalize, overlay_mask
from attmask.viz.render import render_image_rows

COLUMNS = ("original", "masked input", "reconstruction")


@torch.no_grad()
def reconstruct_images(
    method: torch.nn.Module,
    images: Sequence[tuple[str, Image.Image]],
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int = 0,
) -> Reconstruction:
    """Centre crops of ``images`` masked and reconstructed by ``method`` (eval mode), on CPU.

    Args:
        method: a :class:`~attmask.methods.PretrainingMethod`; its train/eval flags and its
            masking generator are restored afterwards.
        images: ``(name, RGB image)`` pairs.
        size: crop side (the method's global crop size).
        mean, std: the normalisation the method was trained with.
        seed: seeds the masks (the same seed gives the same masks every epoch).

    Raises:
        ValueError: the method does not reconstruct pixels (one line).
    """
    inputs = torch.stack([image_to_tensor(image, size, mean, std)[0] for _, image in images])
    device = next(method.parameters()).device
    modes = [(m, m.training) for m in method.modules()]
    state = method.generator.get_state()
    method.eval()
    method.generator.manual_seed(seed)
    try:
        result = method.reconstruct(inputs.to(device))
    finally:
        method.generator.set_state(state)
        for module, training in modes:
            module.training = training
    return Reconstruction(result.images.cpu(), result.masks.cpu(), result.reconstruction.cpu(), result.patch_size)


def reconstruction_panels(
    reconstruction: Reconstruction, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """The figure's panels: per image, the original, the masked input and the reconstruction.

    Images are de-normalised with ``mean`` / ``std`` and clipped to ``[0, 1]``; in the masked
    input every pixel of a hidden patch is exactly ``viz.masks.HIDDEN_GREY``. When the original is
    gray (equal channels), the reconstruction is drawn gray too (its channel mean): the model's
    small per-channel differences, amplified by the per-channel std, would tint it.

    Returns:
        ``(B, 3, H, W, 3)`` float32 in ``[0, 1]``, columns in :data:`COLUMNS` order.
    """
    patch = reconstruction.patch_size
    height, width = reconstruction.images.shape[-2:]
    grid = (height // patch, width // patch)
    rows = []
    for image, mask, output in zip(reconstruction.images, reconstruction.masks, reconstruction.reconstruction):
        original = denormalize(image, mean, std)
        restored = denormalize(output, mean, std)
        if np.allclose(original, original[..., :1], atol=1e-3):  # a gray image
            restored = np.repeat(restored.mean(axis=-1, keepdims=True), restored.shape[-1], axis=-1)
        rows.append([original, overlay_mask(original, mask, grid, patch), restored])
    return np.asarray(rows, dtype=np.float32)


def draw_reconstructions(
    reconstruction: Reconstruction,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    path: str | Path,
    title: str,
    names: Sequence[str] | None = None,
) -> Path:
    """Write one row per image (original, masked input, reconstruction) to the PNG ``path``.

    Args:
        reconstruction: what ``PretrainingMethod.reconstruct`` returned.
        mean, std: the inputs' normalisation.
        path: output PNG.
        title: figure title (say which model and how much was masked).
        names: a label per row (default: the masked share of each image).

    Returns:
        The written path.
    """
    hidden = reconstruction.masks.float().mean(1).tolist()
    labels = [f"{name}\n" if names else "" for name in (names or hidden)]
    labels = [f"{label}{share:.0%} hidden" for label, share in zip(labels, hidden)]
    return render_image_rows(reconstruction_panels(reconstruction, mean, std), list(COLUMNS), labels, title, path)


def reconstruction_figure(
    method: torch.nn.Module,
    images: Sequence[tuple[str, Image.Image]],
    crops: MultiCropConfig,
    path: str | Path,
    title: str,
    seed: int = 0,
) -> Path:
    """Reconstruct ``images`` (``(name, RGB image)`` pairs) with a pixel ``method`` at the crop
    size and normalisation of ``crops``, masks seeded by ``seed``, and write the figure to ``path``."""
    result = reconstruct_images(method, images, crops.global_size, crops.mean, crops.std, seed)
    return draw_reconstructions(result, crops.mean, crops.std, path, title, [name for name, _ in images])
