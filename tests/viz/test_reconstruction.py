"""Reconstruction figures: panel arrays, MAE's reconstruction of a real (tiny) run, trainer figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attmask.engine.data import crop_config
from attmask.engine.restore import load_method
from attmask.methods.base import Reconstruction
from attmask.models import patchify
from attmask.viz.figures import sample_images
from attmask.viz.masks import HIDDEN_GREY, denormalize
from attmask.viz.reconstruction import draw_reconstructions, reconstruct_images, reconstruction_panels
from tests.engine.tiny import TINY_MAE, monitored_trainer, tiny_config


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory) -> Path:
    """A tiny MAE run that drew its figures after both epochs."""
    run = tmp_path_factory.mktemp("mae") / "run"
    monitored_trainer(tiny_config(*TINY_MAE, "train.figures_every_epochs=1", "train.figure_images=2"), run).fit()
    return run


def test_denormalize_inverts_the_normalisation_and_clips() -> None:
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    image = torch.tensor([[[0.0, 1.0]], [[-1.0, 4.0]], [[0.25, -1.0]]])  # (3, 1, 2)
    expected = np.array([[[0.5, 0.0, 0.5], [1.0, 1.0, 0.0]]], dtype=np.float32)
    np.testing.assert_allclose(denormalize(image, mean, std), expected)


def test_masked_panel_is_grey_exactly_at_hidden_patches() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 12, generator=generator) * 0.4  # never HIDDEN_GREY
    masks = torch.tensor(
        [
            [True, False, False, False, True, True],  # 2 x 3 grid of 4 px patches
            [False, True, True, False, False, False],
        ]
    )
    result = Reconstruction(images, masks, 1.0 - images, 4)
    panels = reconstruction_panels(result, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert panels.shape == (2, 3, 8, 12, 3)
    hidden = masks.reshape(2, 2, 3).repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()  # (2, 8, 12)
    original, masked, output = panels[:, 0], panels[:, 1], panels[:, 2]
    np.testing.assert_allclose(original, images.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(output, 1.0 - original, atol=1e-6)
    assert (masked[hidden] == HIDDEN_GREY).all()
    assert np.array_equal(masked[~hidden], original[~hidden])
    assert hidden[0, :4, :4].all() and not hidden[0, :4, 4:8].any()  # top-left hidden in image 0


def test_mae_keeps_visible_pixels_and_draws_the_masks(mae_run: Path, tmp_path: Path) -> None:
    method, config = load_method(mae_run)
    assert type(method).__name__ == "MAE" and not method.training
    crops = crop_config(config.data)
    images = sample_images("digits", 3)
    result = reconstruct_images(method, images, crops.global_size, crops.mean, crops.std, seed=1)
    patch = result.patch_size
    assert result.images.shape == result.reconstruction.shape == (3, 3, crops.global_size, crops.global_size)
    grid = crops.global_size // patch
    assert result.masks.shape == (3, grid * grid)
    assert (result.masks.sum(1) == int(grid * grid * 0.75)).all()
    visible = ~result.masks
    original, rebuilt = patchify(result.images, patch), patchify(result.reconstruction, patch)
    assert torch.equal(rebuilt[visible], original[visible])
    assert not torch.allclose(rebuilt[result.masks], original[result.masks])  # a tiny model, not a copy
    # same seed, same masks; the method's own generator is left as it was
    state = method.generator.get_state()
    again = reconstruct_images(method, images, crops.global_size, crops.mean, crops.std, seed=1)
    assert torch.equal(again.masks, result.masks) and torch.equal(method.generator.get_state(), state)

    panels = reconstruction_panels(result, crops.mean, crops.std)
    hidden = result.masks.reshape(3, grid, grid).repeat_interleave(patch, 1).repeat_interleave(patch, 2).numpy()
    assert (panels[:, 1][hidden] == HIDDEN_GREY).all()
    assert np.array_equal(panels[:, 1][~hidden], panels[:, 0][~hidden])
    np.testing.assert_allclose(panels[:, 2][~hidden], panels[:, 0][~hidden], atol=1e-6)
    path = draw_reconstructions(result, crops.mean, crops.std, tmp_path / "r.png", "tiny MAE")
    with Image.open(path) as figure:
        assert figure.size == (600, 660)  # 3 columns x 3 rows of 200 px, 60 px for the title


def test_trainer_draws_reconstructions_of_a_pixel_method(mae_run: Path) -> None:
    for epoch in ("epoch_0001", "epoch_0002"):
        names = sorted(p.name for p in (mae_run / "figures" / epoch).glob("*.png"))
        assert "reconstruction.png" in names and "digits_0_0_attention.png" in names
        with Image.open(mae_run / "figures" / epoch / "reconstruction.png") as figure:
            assert figure.size == (600, 460)  # 2 images


def test_load_method_refuses_other_files(tmp_path: Path) -> None:
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 4)}}, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="is not an attmask pretraining checkpoint; reconstruction figures"):
        load_method(tmp_path / "plain.pth")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_method(tmp_path / "missing.pth")


def test_reconstruction_of_a_gray_image_is_drawn_gray() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    gray = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8)
    images = (gray - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    tinted = images.clone()
    tinted[:, 2] += 0.5  # the model's blue channel a little off
    panels = reconstruction_panels(Reconstruction(images, torch.zeros(1, 4, dtype=torch.bool), tinted, 4), mean, std)
    output = panels[0, 2]
    assert np.allclose(output, output[..., :1])  # no tint: every channel equal
    colour = torch.rand(1, 3, 8, 8)  # a colour original keeps the reconstruction's colours
    panels = reconstruction_panels(
        Reconstruction(colour, torch.zeros(1, 4, dtype=torch.bool), colour, 4), (0.0,) * 3, (1.0,) * 3
    )
    np.testing.assert_allclose(panels[0, 2], colour[0].permute(1, 2, 0).numpy(), atol=1e-6)
