"""Multi-crop augmentation of DINO / iBOT: 2 global crops and L local crops per image.

Global view 1: random resized crop, flip (p 0.5), colour jitter (0.4, 0.4, 0.2, 0.1; p 0.8),
grayscale (p 0.2), Gaussian blur (p 1.0). Global view 2: the same with blur p 0.1 and
solarisation p 0.2. Local views: smaller crops, blur p 0.5 (Caron et al., 2021, App. B;
iBOT's ``DataAugmentationiBOT``, Zhou et al., 2022). Sizes, scales, probabilities and the blur
strength are configurable; the blur kernel follows the crop size, nothing assumes 224 pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD

_PROBABILITIES = (
    "flip_prob",
    "jitter_prob",
    "grayscale_prob",
    "global1_blur_prob",
    "global2_blur_prob",
    "global2_solarize_prob",
    "local_blur_prob",
)


@dataclass(frozen=True)
class MultiCropConfig:
    """Crop sizes (pixels), area scales, number of local crops, normalisation, photometric
    augmentation (DINO's defaults). Invalid values raise a one-line ValueError."""

    global_size: int = 224
    global_scale: tuple[float, float] = (0.25, 1.0)
    local_size: int = 96
    local_scale: tuple[float, float] = (0.05, 0.25)
    num_local: int = 10
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    global1_blur_prob: float = 1.0
    global2_blur_prob: float = 0.1
    global2_solarize_prob: float = 0.2
    local_blur_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale", "mean", "std", "blur_sigma", "jitter"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))  # YAML lists
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got ({low}, {high})")
        if self.global_size < 1 or self.local_size < 1:
            raise ValueError(f"crop sizes must be positive, got global {self.global_size}, local {self.local_size}")
        if self.num_local < 0:
            raise ValueError(f"num_local must be >= 0, got {self.num_local}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


MULTICROP_PRESETS: dict[str, MultiCropConfig] = {
    "imagenet": MultiCropConfig(),
    "small28": MultiCropConfig(28, (0.4, 1.0), 12, (0.15, 0.4), 6, blur_sigma=(0.1, 0.5)),
    "small32": MultiCropConfig(32, (0.4, 1.0), 16, (0.15, 0.4), 6, blur_sigma=(0.1, 0.5)),
    "tiny": MultiCropConfig(16, (0.5, 1.0), 8, (0.2, 0.5), 2, blur_sigma=(0.1, 0.3)),
}


def blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel of about 10% of a ``size``-pixel crop, at least 3 (23 for 224, 9 for 96),
    and small enough for reflect padding of tiny crops."""
    kernel = max(3, (size // 10) // 2 * 2 + 1)
    return min(kernel, 2 * size - 1)


def _view(
    config: MultiCropConfig, size: int, scale: tuple[float, float], blur: float, solarize: float = 0.0
) -> v2.Compose:
    """One view: crop on uint8 pixels first (cheap), then the photometric steps, then normalise."""
    steps: list[v2.Transform] = [
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, scale=scale, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(p=config.flip_prob),
        v2.RandomApply([v2.ColorJitter(*config.jitter)], p=config.jitter_prob),
        v2.RandomGrayscale(p=config.grayscale_prob),
        v2.RandomApply([v2.GaussianBlur(blur_kernel_size(size), sigma=config.blur_sigma)], p=blur),
    ]
    if solarize > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    return v2.Compose(steps)


class MultiCropAugmentation:
    """``image -> [global_1, global_2, local_1, ..., local_L]``.

    Random draws come from torch's global generator, so ``torch.manual_seed`` fixes them.

    Args:
        config: crop sizes, scales, number of local crops and probabilities.
    """

    def __init__(self, config: MultiCropConfig) -> None:
        self.config = config
        self.global_1 = _view(config, config.global_size, config.global_scale, config.global1_blur_prob)
        self.global_2 = _view(
            config,
            config.global_size,
            config.global_scale,
            config.global2_blur_prob,
            solarize=config.global2_solarize_prob,
        )
        self.local = _view(config, config.local_size, config.local_scale, config.local_blur_prob)

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        """Crops of any PIL image (gray, palette and RGBA become RGB).

        Returns:
            ``2 + num_local`` float tensors: two ``(3, global_size, global_size)`` then
            ``(3, local_size, local_size)``, normalised with ``config.mean`` / ``config.std``.
        """
        image = image.convert("RGB")
        crops = [self.global_1(image), self.global_2(image)]
        crops += [self.local(image) for _ in range(self.config.num_local)]
        return crops


class CropFlipViews:
    """``image -> [view_1, ..., view_V]``: random resized crop + horizontal flip only (MAE, SimMIM,
    LUT), each view drawn independently; no colour augmentation, as MAE (He et al., 2022, Sec. 4).

    Args:
        config: ``global_size``, ``global_scale``, ``flip_prob``, ``mean`` and ``std`` are used.
        num_views: views per image (1 for MAE / SimMIM, 2 for LUT).
    """

    def __init__(self, config: MultiCropConfig, num_views: int = 1) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.config, self.num_views = config, num_views
        self.view = v2.Compose(
            [
                v2.PILToTensor(),
                v2.RandomResizedCrop(
                    config.global_size,
                    scale=config.global_scale,
                    interpolation=InterpolationMode.BICUBIC,
                    antialias=True,
                ),
                v2.RandomHorizontalFlip(p=config.flip_prob),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(config.mean, config.std),
            ]
        )

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        """``num_views`` float tensors ``(3, global_size, global_size)`` of any PIL image."""
        image = image.convert("RGB")
        return [self.view(image) for _ in range(self.num_views)]


def decode_square(size: int) -> v2.Compose:
    """``PIL image -> (3, size, size)`` uint8: RGB, shorter side resized to ``size`` (bicubic,
    antialiased), centre-cropped. The workers' whole job with ``data.augment_on=device``; the
    random augmentations then run batched on the device (:mod:`attmask.data.batched`)."""
    if size < 1:
        raise ValueError(f"decode size must be positive, got {size}")
    return v2.Compose(
        [
            v2.Lambda(_to_rgb),
            v2.PILToTensor(),
            v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
        ]
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB") if isinstance(image, Image.Image) else image


def eval_transform(
    size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD, resize: int | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side, centre-crop, normalise: ``PIL image -> (3, size, size)`` float.

    Args:
        size: output side in pixels.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        resize: shorter side before cropping; default ``round(size * 256 / 224)`` from 64 px up
            (the ImageNet protocol), else ``size`` (small images are not cropped away).
    """
    if size < 1 or (resize is not None and resize < size):
        raise ValueError(f"eval_transform needs size >= 1 and resize >= size, got {size}, {resize}")
    if resize is None:
        resize = round(size * 256 / 224) if size >= 64 else size
    return v2.Compose(
        [
            v2.Lambda(_to_rgb),
            v2.PILToTensor(),
            v2.Resize(resize, interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def crop_flip_transform(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    randaug: bool = False,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """Random resized crop, horizontal flip (and RandAugment): ``PIL image -> (3, size, size)``.

    Random draws come from torch's global generator (seeded by the callers).
    """
    steps: list[v2.Transform] = [
        v2.Lambda(_to_rgb),
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, scale, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if randaug:
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def with_transform(dataset: Any, transform: Callable) -> Any:
    """A shallow copy of ``dataset`` (an ``ImageDataset``) whose ``transform`` is ``transform``."""
    if not hasattr(dataset, "transform"):
        raise ValueError(
            f"{type(dataset).__name__} has no transform attribute; pass a data set from "
            "attmask.data.datasets.build_dataset"
        )
    copied = copy.copy(dataset)
    copied.transform = transform
    return copied
