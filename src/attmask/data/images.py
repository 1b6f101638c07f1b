"""Reading single images with clear errors, and turning them into model inputs."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB (gray and palette images become 3-channel).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path} (check the path)")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}; is it a valid image file?") from None


def image_to_tensor(
    image: Image.Image, size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the shorter side to ``size``, centre-crop ``size x size`` and normalise by ``mean`` / ``std``.

    Returns:
        ``(normalised (3, size, size) float tensor, displayable (3, size, size) in [0, 1])``.
    """
    pixels = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )(image)
    return v2.functional.normalize(pixels, list(mean), list(std)), pixels
