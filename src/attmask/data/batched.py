"""Batched augmentation on the training device (``data.augment_on=device``).

The loader's workers only decode each image to a square ``(3, S, S)`` uint8 tensor; pure tensor
ops (crops here; colour, blur and solarisation in :mod:`attmask.data.batched_ops`) then augment
a whole ``(B, 3, S, S)`` batch at once on any device, every image with its own random draws from
an explicit ``torch.Generator`` (draws are made on the generator's device, then moved to the
batch's). They follow torchvision's v2 transforms used by :mod:`attmask.data.augment` (DINO /
iBOT multi-crop, Caron et al., 2021, App. B) with these documented differences:

* random resized crop + flip of all images is one bilinear ``F.grid_sample`` with per-image
  affine grids, cropping the decoded ``S x S`` square (not the original image) and without
  antialiasing (``S`` is close to the crop sizes, so there is little to alias);
* colour jitter runs on floats in [0, 1] (torchvision rounds to uint8 between steps); the four
  operations are applied in a random order per image, as torchvision does; hue is a rotation of
  the chroma plane in YIQ space by ``2 pi h`` (torchvision shifts the HSV hue by ``h``: the same
  idea, but YIQ keeps the luma where HSV keeps the maximum channel);
* solarisation inverts pixels >= 128 / 255 of the float image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from attmask.data.augment import MultiCropConfig, blur_kernel_size
from attmask.data.batched_ops import (
    chance,
    color_jitter,
    normalize,
    random_gaussian_blur,
    random_grayscale,
    solarize,
    uniform,
)

RATIO = (3.0 / 4.0, 4.0 / 3.0)

#: ``(images (B, 3, S, S) uint8, generator) -> [crop_0 (B, 3, s_0, s_0) float, ...]``
BatchAugmentation = Callable[[torch.Tensor, torch.Generator], list[torch.Tensor]]


def crop_boxes(
    count: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = RATIO,
    attempts: int = 10,
) -> torch.Tensor:
    """Random resized crop boxes ``(count, 4)`` as ``(top, left, h, w)`` integer-valued floats.

    torchvision's ``RandomResizedCrop.get_params`` per image, batched: area fraction uniform in
    ``scale``, log-uniform aspect ratio in ``ratio``, rounded sides; the first of ``attempts``
    boxes that fits is kept, else the centre crop of the clamped ratio. Returned on the
    generator's device.
    """
    device = generator.device
    area = height * width * uniform(count * attempts, *scale, generator, device).view(count, attempts)
    log_ratio = uniform(count * attempts, math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = torch.exp(log_ratio).view(count, attempts)
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)  # the first fitting attempt (0 if none)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    top = torch.floor(uniform(count, 0.0, 1.0, generator, device) * (height - h + 1))
    left = torch.floor(uniform(count, 0.0, 1.0, generator, device) * (width - w + 1))
    fallback_w, fallback_h = float(width), float(height)  # torchvision's central crop
    if width / height < ratio[0]:
        fallback_h = float(round(width / ratio[0]))
    elif width / height > ratio[1]:
        fallback_w = float(round(height * ratio[1]))
    fallback = torch.tensor(
        [(height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w], device=device
    )
    boxes = torch.stack([top, left, h, w], dim=1)
    return torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor) -> torch.Tensor:
    """Crop every image's box, resize it to ``size x size`` (bilinear) and mirror where ``flip``.

    Args:
        images: ``(B, C, H, W)`` float.
        boxes: ``(B, 4)`` as ``(top, left, h, w)`` in pixels.
        size: output side.
        flip: ``(B,)`` bool, horizontal flip.

    Returns:
        ``(B, C, size, size)``: output pixel centre ``u`` samples input ``left + (u + 0.5) w / size - 0.5``.
    """
    B, C, H, W = images.shape
    boxes = boxes.to(images.device, images.dtype)
    top, left, h, w = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(images.device, images.dtype)
    theta = torch.zeros(B, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sign * w / W, (2 * left + w) / W - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / H, (2 * top + h) / H - 1
    grid = F.affine_grid(theta, [B, C, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``; floating images are assumed in [0, 1] already."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _crop_flip(
    pixels: torch.Tensor,
    views: int,
    size: int,
    scale: tuple[float, float],
    flip_prob: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """``views`` independent crops of each image: ``(views B, C, size, size)``, view-major."""
    repeated = pixels.repeat(views, 1, 1, 1)
    count, _, height, width = repeated.shape
    boxes = crop_boxes(count, height, width, scale, generator)
    flip = chance(flip_prob, count, generator, pixels.device)
    return resized_crop(repeated, boxes, size, flip)


class BatchedMultiCrop:
    """``images (B, 3, S, S) -> [global_1, global_2, local_1, ..., local_L]`` on the batch's device.

    The crops and probabilities of :class:`attmask.data.augment.MultiCropAugmentation`: both
    global crops in one pass (blur ``global1_blur_prob`` / ``global2_blur_prob``, solarisation
    only on the second), all local crops in another.

    Args:
        config: crop sizes, scales, number of local crops and probabilities.
    """

    def __init__(self, config: MultiCropConfig) -> None:
        self.config = config

    def _views(
        self,
        pixels: torch.Tensor,
        size: int,
        scale: tuple[float, float],
        blur: list[float],
        solarize_prob: list[float],
        generator: torch.Generator,
    ) -> list[torch.Tensor]:
        config, B, device = self.config, pixels.shape[0], pixels.device
        crops = _crop_flip(pixels, len(blur), size, scale, config.flip_prob, generator)
        crops = color_jitter(crops, config.jitter, config.jitter_prob, generator)
        crops = random_grayscale(crops, config.grayscale_prob, generator)
        blur_prob = torch.tensor(blur, device=device).repeat_interleave(B)
        crops = random_gaussian_blur(crops, config.blur_sigma, blur_kernel_size(size), blur_prob, generator)
        if max(solarize_prob) > 0:
            solarize_chance = torch.tensor(solarize_prob, device=device).repeat_interleave(B)
            crops = solarize(crops, chance(solarize_chance, crops.shape[0], generator, device))
        return list(normalize(crops, config.mean, config.std).split(B))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """``2 + num_local`` float32 tensors: two ``(B, 3, global_size, global_size)``, then
        ``(B, 3, local_size, local_size)``, normalised with ``config.mean`` / ``config.std``."""
        config, pixels = self.config, to_unit_float(images)
        crops = self._views(
            pixels,
            config.global_size,
            config.global_scale,
            [config.global1_blur_prob, config.global2_blur_prob],
            [0.0, config.global2_solarize_prob],
            generator,
        )
        if config.num_local:
            crops += self._views(
                pixels,
                config.local_size,
                config.local_scale,
                [config.local_blur_prob] * config.num_local,
                [0.0] * config.num_local,
                generator,
            )
        return crops


class BatchedCropFlip:
    """``images (B, 3, S, S) -> [view_1, ..., view_V]``: crop + flip only, as
    :class:`attmask.data.augment.CropFlipViews` (MAE, SimMIM, LUT).

    Args:
        config: ``global_size``, ``global_scale``, ``flip_prob``, ``mean`` and ``std`` are used.
        num_views: views per image.
    """

    def __init__(self, config: MultiCropConfig, num_views: int = 1) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.config, self.num_views = config, num_views

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """``num_views`` float32 tensors ``(B, 3, global_size, global_size)``, normalised."""
        config = self.config
        crops = _crop_flip(
            to_unit_float(images), self.num_views, config.global_size, config.global_scale, config.flip_prob, generator
        )
        return list(normalize(crops, config.mean, config.std).split(images.shape[0]))
