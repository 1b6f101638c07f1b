"""Multi-crop augmentation, evaluation transform and multi-crop batching."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from torch.utils.data import DataLoader

from attmask.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MULTICROP_PRESETS,
    MultiCropAugmentation,
    MultiCropConfig,
    build_dataset,
    collate_multicrop,
    eval_transform,
)
from attmask.data.augment import blur_kernel_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.fromarray(skimage_data.chelsea())  # (300, 451) RGB photo, not square


@pytest.fixture(scope="module")
def gray() -> Image.Image:
    return Image.fromarray(skimage_data.camera()[::4, ::2])  # (128, 256) mode "L"


@pytest.mark.parametrize("preset", sorted(MULTICROP_PRESETS))
def test_every_preset_gives_two_globals_and_the_locals(preset: str, cat: Image.Image, gray: Image.Image) -> None:
    config = MULTICROP_PRESETS[preset]
    augmentation = MultiCropAugmentation(config)
    for image in (cat, gray):
        crops = augmentation(image)
        assert len(crops) == 2 + config.num_local
        expected = [config.global_size] * 2 + [config.local_size] * config.num_local
        assert [tuple(crop.shape) for crop in crops] == [(3, size, size) for size in expected]
        assert all(crop.dtype == torch.float32 and torch.isfinite(crop).all() for crop in crops)


def test_crops_differ_and_seed_fixes_them(cat: Image.Image) -> None:
    augmentation = MultiCropAugmentation(MULTICROP_PRESETS["small32"])
    torch.manual_seed(0)
    first = augmentation(cat)
    torch.manual_seed(0)
    again = augmentation(cat)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first[0], first[1])
    assert all(not torch.equal(first[2], local) for local in first[3:])
    torch.manual_seed(1)
    assert not torch.equal(augmentation(cat)[0], first[0])


def test_normalisation_uses_the_config_mean_and_std() -> None:
    config = dataclasses.replace(
        MULTICROP_PRESETS["tiny"],
        jitter_prob=0.0,
        grayscale_prob=0.0,
        global2_solarize_prob=0.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    flat = Image.new("RGB", (20, 30), (191, 191, 191))  # blur and crops keep a constant image
    for crop in MultiCropAugmentation(config)(flat):
        torch.testing.assert_close(crop, torch.full_like(crop, (191 / 255 - 0.5) / 0.25), atol=1e-5, rtol=0)


def test_no_local_crops() -> None:
    config = dataclasses.replace(MULTICROP_PRESETS["tiny"], num_local=0)
    assert len(MultiCropAugmentation(config)(Image.new("L", (10, 10)))) == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"global_scale": (0.0, 1.0)},
        {"local_scale": (0.5, 1.2)},
        {"local_scale": (0.5, 0.2)},
        {"global_size": 0},
        {"local_size": -8},
        {"num_local": -1},
        {"flip_prob": 1.5},
        {"blur_sigma": (0.0, 1.0)},
        {"std": (0.2, 0.0, 0.2)},
    ],
)
def test_invalid_config_raises_one_line(changes: dict) -> None:
    with pytest.raises(ValueError) as error:
        dataclasses.replace(MULTICROP_PRESETS["tiny"], **changes)
    assert "\n" not in str(error.value)


def test_config_accepts_lists_and_keeps_dino_defaults() -> None:
    config = MultiCropConfig(global_scale=[0.3, 1.0])  # type: ignore[arg-type]  # as read from YAML
    assert config.global_scale == (0.3, 1.0)
    assert (config.global_size, config.local_size, config.num_local) == (224, 96, 10)
    assert (config.flip_prob, config.jitter_prob, config.grayscale_prob) == (0.5, 0.8, 0.2)
    assert (config.global1_blur_prob, config.global2_blur_prob, config.local_blur_prob) == (1.0, 0.1, 0.5)
    assert config.global2_solarize_prob == 0.2 and config.jitter == (0.4, 0.4, 0.2, 0.1)
    small = MULTICROP_PRESETS["small28"]
    assert (small.global_size, small.global_scale, small.local_size, small.local_scale, small.num_local) == (
        28,
        (0.4, 1.0),
        12,
        (0.15, 0.4),
        6,
    )


def test_blur_kernel_follows_the_crop_size() -> None:
    assert [blur_kernel_size(size) for size in (224, 96, 32, 28, 8, 2, 1)] == [23, 9, 3, 3, 3, 3, 1]


def test_eval_transform_sizes_and_values(cat: Image.Image) -> None:
    assert eval_transform(224)(cat).shape == (3, 224, 224)
    assert eval_transform(28)(Image.new("L", (8, 8), 128)).shape == (3, 28, 28)
    assert eval_transform(32, resize=40)(cat).shape == (3, 32, 32)
    pixels = eval_transform(16)(Image.new("RGB", (16, 24), (255, 0, 128)))
    expected = (torch.tensor([255, 0, 128]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixels[:, 8, 8], expected)
    with pytest.raises(ValueError, match="resize >= size"):
        eval_transform(32, resize=16)


def test_collate_multicrop_stacks_each_crop_position() -> None:
    augmentation = MultiCropAugmentation(MULTICROP_PRESETS["tiny"])
    dataset = build_dataset("digits", "test", transform=augmentation)
    crops, labels = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_multicrop)))
    assert [tuple(crop.shape) for crop in crops] == [(3, 3, 16, 16)] * 2 + [(3, 3, 8, 8)] * 2
    assert labels.dtype == torch.int64 and labels.tolist() == dataset.targets[:3].tolist()
    with pytest.raises(ValueError, match="same number of crops"):
        collate_multicrop([([torch.zeros(3, 4, 4)], 0), ([torch.zeros(3, 4, 4)] * 2, 1)])
    with pytest.raises(ValueError, match="empty batch"):
        collate_multicrop([])
