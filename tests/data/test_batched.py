"""Batched device-side augmentation: shapes, hand-made cases, independence, torchvision parity."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision import transforms
from torchvision.transforms.v2 import functional as TF

from attmask.data import MULTICROP_PRESETS
from attmask.data.augment import decode_square
from attmask.data.batched import BatchedCropFlip, BatchedMultiCrop, crop_boxes, resized_crop
from attmask.data.batched_ops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    gaussian_blur,
    normalize,
    random_gaussian_blur,
    random_grayscale,
    solarize,
)
from attmask.data.collate import collate_images

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def generator(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def images_uint8(count: int = 6, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def pixels(count: int = 6, size: int = 24, seed: int = 0) -> torch.Tensor:
    return images_uint8(count, size, seed).float() / 255


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["tiny", "small28"])
def test_multicrop_gives_the_crops_of_multicropaugmentation(preset: str, device: str) -> None:
    config = MULTICROP_PRESETS[preset]
    crops = BatchedMultiCrop(config)(images_uint8(5, config.global_size).to(device), generator(0, device))
    expected = [config.global_size] * 2 + [config.local_size] * config.num_local
    assert [tuple(crop.shape) for crop in crops] == [(5, 3, size, size) for size in expected]
    assert all(crop.dtype == torch.float32 and crop.device.type == device for crop in crops)
    assert all(torch.isfinite(crop).all() for crop in crops)


def test_cropflip_gives_num_views_global_crops() -> None:
    config = MULTICROP_PRESETS["small28"]
    views = BatchedCropFlip(config, num_views=2)(images_uint8(4, 28), generator())
    assert [tuple(view.shape) for view in views] == [(4, 3, 28, 28)] * 2
    assert not torch.equal(views[0], views[1])
    with pytest.raises(ValueError, match="num_views"):
        BatchedCropFlip(config, num_views=0)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_full_scale_crop_is_the_identity_or_the_exact_flip(flip_prob: float) -> None:
    config = dataclasses.replace(
        MULTICROP_PRESETS["tiny"],
        global_size=24,
        global_scale=(1.0, 1.0),
        flip_prob=flip_prob,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    images = images_uint8()
    (view,) = BatchedCropFlip(config)(images, generator())
    expected = images.float() / 255
    torch.testing.assert_close(view, expected.flip(-1) if flip_prob else expected, rtol=0, atol=1e-5)


def test_a_known_box_reproduces_the_sub_image() -> None:
    images = pixels()
    boxes = torch.tensor([[3.0, 5.0, 10.0, 10.0]]).repeat(6, 1)
    no_flip = torch.zeros(6, dtype=torch.bool)
    same_size = resized_crop(images, boxes, 10, no_flip)
    torch.testing.assert_close(same_size, images[:, :, 3:13, 5:15], rtol=0, atol=1e-5)
    flipped = resized_crop(images, boxes, 10, ~no_flip)
    torch.testing.assert_close(flipped, images[:, :, 3:13, 5:15].flip(-1), rtol=0, atol=1e-5)
    # 2x upsampling = bilinear interpolation of the sub-image (its border pixels also see the neighbours)
    upsampled = resized_crop(images, boxes, 20, no_flip)
    reference = torch.nn.functional.interpolate(images[:, :, 3:13, 5:15], size=20, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], rtol=0, atol=1e-5)


def test_boxes_are_independent_per_image_inside_the_image_and_seeded() -> None:
    boxes = crop_boxes(64, 24, 32, (0.1, 1.0), generator(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 24).all() and (left + w <= 32).all()
    assert (h > 0).all() and (w > 0).all() and torch.equal(boxes, boxes.round())
    assert len({tuple(box) for box in boxes.tolist()}) > 50  # different images, different boxes
    assert torch.equal(boxes, crop_boxes(64, 24, 32, (0.1, 1.0), generator(0)))
    assert not torch.equal(boxes, crop_boxes(64, 24, 32, (0.1, 1.0), generator(1)))


def test_same_seed_same_crops_and_every_image_augmented_on_its_own() -> None:
    config = MULTICROP_PRESETS["small28"]
    augmentation = BatchedMultiCrop(config)
    same_image = images_uint8(1, 28).repeat(8, 1, 1, 1)
    first, again = augmentation(same_image, generator(3)), augmentation(same_image, generator(3))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    for crop in first:  # one image, 8 copies: every copy gets its own crop and colours
        assert len({crop[i].sum().item() for i in range(8)}) == 8
    assert not torch.equal(first[0], augmentation(same_image, generator(4))[0])


def test_crop_area_and_ratio_follow_torchvisions_randomresizedcrop() -> None:
    draws, scale, ratio = 4000, (0.05, 0.6), (3 / 4, 4 / 3)
    torch.manual_seed(0)
    image = torch.zeros(3, 40, 40)
    reference = torch.tensor(
        [transforms.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(draws)],
        dtype=torch.float32,
    )
    ours = crop_boxes(draws, 40, 40, scale, generator(0))
    for boxes in (reference, ours):
        assert (boxes[:, 2] * boxes[:, 3] <= 1600).all()
    area_ref, area_ours = (b[:, 2] * b[:, 3] / 1600 for b in (reference, ours))
    assert abs(area_ours.mean() - area_ref.mean()) < 0.01  # both about (0.05 + 0.6) / 2
    assert abs(area_ours.std() - area_ref.std()) < 0.01
    aspect_ref, aspect_ours = (torch.log(b[:, 3] / b[:, 2]) for b in (reference, ours))
    assert abs(aspect_ours.mean() - aspect_ref.mean()) < 0.01
    centre_ref, centre_ours = ((b[:, 1] + b[:, 3] / 2) / 40 for b in (reference, ours))
    assert abs(centre_ours.mean() - centre_ref.mean()) < 0.01


def test_jitter_factor_one_or_probability_zero_is_the_identity() -> None:
    images, ones = pixels(), torch.ones(6)
    for operation in (adjust_brightness, adjust_contrast, adjust_saturation):
        assert torch.equal(operation(images, ones), images)
    torch.testing.assert_close(adjust_hue(images, torch.zeros(6)), images, rtol=0, atol=1e-6)
    torch.testing.assert_close(color_jitter(images, (0.0, 0.0, 0.0, 0.0), 1.0, generator()), images, rtol=0, atol=1e-6)
    assert torch.equal(color_jitter(images, (0.4, 0.4, 0.2, 0.1), 0.0, generator()), images)
    jittered = color_jitter(images, (0.4, 0.4, 0.2, 0.1), 1.0, generator())
    assert not torch.allclose(jittered, images) and 0 <= jittered.min() and jittered.max() <= 1


def test_jitter_matches_torchvision_for_brightness_contrast_saturation() -> None:
    images, factors = pixels(), torch.linspace(0.5, 1.5, 6)
    for ours, theirs in (
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
    ):
        expected = torch.stack([theirs(image, float(f)) for image, f in zip(images, factors)])
        torch.testing.assert_close(ours(images, factors), expected, rtol=0, atol=1e-4)  # float rounding


def test_hue_keeps_gray_pixels_and_a_full_turn_is_the_identity() -> None:
    gray = pixels()[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(adjust_hue(gray, torch.full((6,), 0.3)), gray, rtol=0, atol=1e-5)
    images = pixels()
    torch.testing.assert_close(
        adjust_hue(adjust_hue(images * 0.2 + 0.4, torch.full((6,), 0.1)), torch.full((6,), -0.1)),
        images * 0.2 + 0.4,
        rtol=0,
        atol=1e-5,
    )


def test_grayscale_has_equal_channels() -> None:
    gray = random_grayscale(pixels(), 1.0, generator())
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    expected = TF.rgb_to_grayscale(pixels(), num_output_channels=3)
    torch.testing.assert_close(gray, expected, rtol=0, atol=1e-5)
    assert torch.equal(random_grayscale(pixels(), 0.0, generator()), pixels())


def test_blur_matches_torchvision_per_image_sigma() -> None:
    images, sigmas = pixels(), torch.tensor([0.1, 0.3, 0.7, 1.0, 1.5, 2.0])
    expected = torch.stack([TF.gaussian_blur(image, [5, 5], [float(s), float(s)]) for image, s in zip(images, sigmas)])
    torch.testing.assert_close(gaussian_blur(images, sigmas, 5), expected, rtol=0, atol=1e-5)


def test_blur_with_tiny_sigma_is_the_identity_and_keeps_a_constant_image() -> None:
    images = pixels()
    torch.testing.assert_close(gaussian_blur(images, torch.full((6,), 1e-3), 5), images, rtol=0, atol=1e-6)
    constant = torch.full((6, 3, 16, 16), 0.37)
    blurred = random_gaussian_blur(constant, (0.5, 2.0), 7, 1.0, generator())
    torch.testing.assert_close(blurred, constant, rtol=0, atol=1e-6)
    assert torch.equal(random_gaussian_blur(images, (0.5, 2.0), 7, 0.0, generator()), images)


def test_solarize_inverts_bright_pixels_of_chosen_images() -> None:
    images = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(1, 1, 1, 5).repeat(2, 3, 1, 1)
    out = solarize(images, torch.tensor([True, False]))
    assert torch.equal(out[0, 0, 0], torch.tensor([0.0, 0.25, 0.5, 0.25, 0.0]))
    assert torch.equal(out[1], images[1])


def test_normalize_matches_the_configured_statistics() -> None:
    out = normalize(torch.full((2, 3, 4, 4), 0.5), (0.5, 0.25, 0.0), (0.5, 0.25, 0.5))
    assert torch.equal(out[:, :, 0, 0], torch.tensor([[0.0, 1.0, 1.0]] * 2))


def test_decode_square_and_collate_give_a_uint8_batch() -> None:
    from PIL import Image

    decode = decode_square(16)
    wide = Image.fromarray(images_uint8(1, 40)[0, :, :20].permute(1, 2, 0).numpy())  # (20, 40) RGB
    gray = Image.new("L", (30, 30), 128)
    images, labels = collate_images([(decode(wide), 1), (decode(gray), 2)])
    assert images.dtype == torch.uint8 and tuple(images.shape) == (2, 3, 16, 16)
    assert labels.tolist() == [1, 2] and (images[1] == 128).all()
    with pytest.raises(ValueError, match="empty"):
        collate_images([])
