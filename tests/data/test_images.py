"""Single-image loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attmask.data import image_to_tensor, load_image


def test_gray_image_becomes_rgb_and_is_centre_cropped(tmp_path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 60), 200, dtype=np.uint8)).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    normalised, pixels = image_to_tensor(image, 32)
    assert normalised.shape == pixels.shape == (3, 32, 32)
    torch.testing.assert_close(pixels, torch.full((3, 32, 32), 200 / 255))


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(bad)
