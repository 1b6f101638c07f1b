"""Figure helpers: numeric checks, plus one real rendered figure."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from attmask.viz import FIGURE_STRATEGIES, attention_heatmap, overlay_mask, strategy_masks
from attmask.viz.masks import HIDDEN_GREY


def test_overlay_greys_exactly_the_masked_patches() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.6, 1.0, size=(24, 32, 3)).astype(np.float32)  # never equals grey
    mask = torch.zeros(3 * 4, dtype=torch.bool)
    mask[[0, 5, 11]] = True
    out = overlay_mask(image, mask, (3, 4), 8)
    grey = np.all(out == HIDDEN_GREY, axis=-1)
    expected = np.zeros((24, 32), dtype=bool)
    for index in (0, 5, 11):
        row, col = divmod(index, 4)
        expected[row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = True
    np.testing.assert_array_equal(grey, expected)
    np.testing.assert_array_equal(out[~expected], image[~expected])
    assert not np.all(image == HIDDEN_GREY, axis=-1).any(), "input untouched"


def test_heatmap_is_normalised_and_follows_patches() -> None:
    scores = torch.tensor([[0.1, 0.3, 0.2, 0.4], [0.1, 0.2, 0.1, 0.0]])  # (heads, N)
    heat = attention_heatmap(scores, (2, 2), 3)
    assert heat.shape == (6, 6) and heat.min() == 0.0 and heat.max() == 1.0
    mean = scores.mean(0)
    assert heat[0, 3] == heat[2, 5]  # same patch
    assert np.argmax(heat[::3, ::3].reshape(-1)) == int(mean.argmax())


def test_strategy_masks_cover_every_strategy_and_ratio() -> None:
    scores = torch.rand(196, generator=torch.Generator().manual_seed(0))
    masks = strategy_masks(scores, (14, 14), [0.1, 0.5], torch.Generator().manual_seed(1))
    assert tuple(masks) == FIGURE_STRATEGIES
    assert masks["attmask_high"][1].sum() == 98 and masks["random"][0].sum() == 19
    assert scores[masks["attmask_high"][0]].min() > scores[masks["attmask_low"][0]].max()


def test_render_mask_grid_writes_a_real_figure(tmp_path) -> None:
    from attmask.viz.render import render_mask_grid

    image = np.random.default_rng(1).uniform(size=(64, 64, 3))
    scores = torch.rand(16)
    masks = strategy_masks(scores, (4, 4), [0.25, 0.5], torch.Generator().manual_seed(2))
    path = render_mask_grid(image, scores, masks, [0.25, 0.5], 16, "test", tmp_path / "grid.png")
    with Image.open(path) as figure:
        width, height = figure.size
    assert width > 1.5 * height > 300, (width, height)  # 7 columns by 2 rows


def test_mask_figure_says_when_hint_reveals_nothing(tmp_path, monkeypatch) -> None:
    import attmask.viz.render as render

    figures = []
    monkeypatch.setattr(render, "save_figure", lambda figure, path, dpi=110: figures.append(figure) or path)
    scores = torch.rand(16)
    image = np.zeros((16, 16, 3), dtype=np.float32)
    small = strategy_masks(scores, (4, 4), [0.3], torch.Generator().manual_seed(0))  # floor(16 x 0.03) = 0
    render.render_mask_grid(image, scores, small, [0.3], 4, "t", tmp_path / "a.png")
    labels = [axis.get_xlabel() for axis in figures[-1].axes]
    assert "no hint shown: floor(16 x s) = 0" in labels
    large = strategy_masks(torch.rand(196), (14, 14), [0.3], torch.Generator().manual_seed(0))  # 5 revealed
    render.render_mask_grid(
        np.zeros((56, 56, 3), np.float32), torch.rand(196), large, [0.3], 4, "t", tmp_path / "b.png"
    )
    assert not any("no hint" in axis.get_xlabel() for axis in figures[-1].axes)
