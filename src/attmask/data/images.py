"""Reading single images with clear errors, and turning them into model inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16-bit, 32-bit integer and float gray


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open an image file as 8-bit RGB (gray and palette images become 3-channel).

    16-bit and 32-bit gray images are scaled to 8 bits (``to_8bit``), not clipped at 255 as PIL's
    ``convert("RGB")`` does. An image with more than ``max_pixels`` pixels (default: PIL's
    ``Image.MAX_IMAGE_PIXELS``) is refused before it is decoded, like PIL's decompression-bomb
    guard, whose error is also turned into this one-line ``ValueError``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable image, or is too large.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} (check the path)")
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as image:
            if limit and image.width * image.height > limit:
                raise ValueError(
                    f"image {path} has {image.width}x{image.height} pixels, more than the limit of "
                    f"{limit} (data.max_image_pixels): not decoded (a possible decompression bomb)"
                )
            return to_8bit(image).convert("RGB")
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"image {path} is too large to decode safely: {error} (data.max_image_pixels; PIL "
            "refuses twice its Image.MAX_IMAGE_PIXELS)"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}; is it a valid image file?") from None


def to_8bit(image: Image.Image) -> Image.Image:
    """An 8-bit version of a wide gray image (other modes are returned as they are).

    16-bit modes are divided by 257 (65535 -> 255). 32-bit integer images are read as 16-bit when
    their values fit (PIL opens 16-bit PNGs as ``I``), else scaled by their maximum; float images
    in [0, 1] are multiplied by 255, others scaled by their maximum.
    """
    if image.mode not in _WIDE_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode == "F":
        scale = 255.0 if top <= 1.0 else 255.0 / max(top, 1e-12)
    elif image.mode.startswith("I;16") or top <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


def image_to_tensor(
    image: Image.Image, size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the shorter side to ``size``, centre-crop ``size x size`` and normalise by ``mean`` / ``std``.

    Returns:
        ``(normalised (3, size, size) float tensor, displayable (3, size, size) in [0, 1])``.
    """
    pixels = v2.Compose(
        [v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True)]
    )(image)
    return v2.functional.normalize(pixels, list(mean), list(std)), pixels
