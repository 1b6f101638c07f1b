"""Per-image pixel operations on a batch ``(B, C, H, W)`` of floats in [0, 1], for the batched
augmentation of :mod:`attmask.data.batched`: colour jitter, grayscale, Gaussian blur,
solarisation and normalisation, every image with its own random draws from an explicit
``torch.Generator`` (drawn on the generator's device, then moved to the batch's).

They follow torchvision's v2 transforms, differences documented in :mod:`attmask.data.batched`.
Hand-written because torchvision's functional ops take one factor per call (one per batch), not
one per image, and draw from the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def uniform(count: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(count,)`` floats uniform in [low, high), drawn on the generator's device."""
    draws = torch.rand(count, generator=generator, device=generator.device)
    return (low + (high - low) * draws).to(device)


def chance(
    probability: float | torch.Tensor, count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``(count,)`` bool, True with ``probability`` (a float or a ``(count,)`` tensor) per image."""
    return uniform(count, 0.0, 1.0, generator, device) < torch.as_tensor(probability, device=device)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` luma."""
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(x f)`` per image; ``factor`` ``(B,)``."""
    return (images * _per_image(factor)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean luma: ``clamp(f x + (1 - f) mean)``."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    factor = _per_image(factor)
    return (factor * images + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the luma image: ``clamp(f x + (1 - f) gray)``."""
    factor = _per_image(factor)
    return (factor * images + (1 - factor) * grayscale(images)).clamp(0, 1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the YIQ chroma plane by ``2 pi shift`` (``shift`` in [-0.5, 0.5] of a turn, ``(B,)``)."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, device=images.device, dtype=images.dtype)
    cos, sin = torch.cos(2 * math.pi * shift), torch.sin(2 * math.pi * shift)
    rotation = torch.zeros(shift.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0], rotation[:, 1, 1], rotation[:, 2, 2] = 1.0, cos, cos
    rotation[:, 1, 2], rotation[:, 2, 1] = -sin, sin
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3) acting on RGB
    return torch.einsum("bij,bjhw->bihw", matrix, images).clamp(0, 1)


def color_jitter(
    images: torch.Tensor, strength: tuple[float, float, float, float], probability: float, generator: torch.Generator
) -> torch.Tensor:
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)`` per image, random order per image.

    Factors are uniform in ``[max(0, 1 - b), 1 + b]`` (same for c, s), the hue shift in ``[-h, h]``.
    Images not drawn (probability ``1 - p``) are returned unchanged.
    """
    B, device = images.shape[0], images.device
    brightness, contrast, saturation, hue = strength
    operations = [
        (adjust_brightness, uniform(B, max(0.0, 1 - brightness), 1 + brightness, generator, device)),
        (adjust_contrast, uniform(B, max(0.0, 1 - contrast), 1 + contrast, generator, device)),
        (adjust_saturation, uniform(B, max(0.0, 1 - saturation), 1 + saturation, generator, device)),
        (adjust_hue, uniform(B, -hue, hue, generator, device)),
    ]
    order = torch.argsort(uniform(4 * B, 0, 1, generator, device).view(B, 4), dim=1)  # (B, 4) a permutation each
    apply = chance(probability, B, generator, device)
    for slot in range(4):
        for index, (operation, factor) in enumerate(operations):
            chosen = _per_image(apply & (order[:, slot] == index))
            images = torch.where(chosen, operation(images, factor), images)
    return images


def random_grayscale(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Replace, with ``probability`` per image, all three channels by the luma."""
    chosen = _per_image(chance(probability, images.shape[0], generator, images.device))
    return torch.where(chosen, grayscale(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur, sigma ``(B,)`` per image, reflect padding (torchvision's border).

    One grouped convolution per direction: channel ``c`` of image ``b`` is group ``b C + c``.
    """
    B, C, H, W = images.shape
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * (offsets / sigma.to(images.dtype).view(B, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(C, dim=0)  # (B C, K)
    half = kernel_size // 2
    x = F.pad(images.reshape(1, B * C, H, W), (half, half, half, half), mode="reflect")
    x = F.conv2d(x, kernel.view(B * C, 1, 1, kernel_size), groups=B * C)
    x = F.conv2d(x, kernel.view(B * C, 1, kernel_size, 1), groups=B * C)
    return x.view(B, C, H, W)


def random_gaussian_blur(
    images: torch.Tensor,
    sigma: tuple[float, float],
    kernel_size: int,
    probability: float | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Blur with ``probability`` per image (float or ``(B,)``), sigma uniform in ``sigma``."""
    B, device = images.shape[0], images.device
    sigmas = uniform(B, *sigma, generator, device)
    chosen = _per_image(chance(probability, B, generator, device))
    return torch.where(chosen, gaussian_blur(images, sigmas, kernel_size), images)


def solarize(images: torch.Tensor, chosen: torch.Tensor, threshold: float = 128 / 255) -> torch.Tensor:
    """Invert pixels ``>= threshold`` (``1 - x``) of the images where ``chosen`` ``(B,)``."""
    inverted = torch.where(images >= threshold, 1 - images, images)
    return torch.where(_per_image(chosen), inverted, images)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
