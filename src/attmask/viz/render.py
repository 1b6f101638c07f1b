"""Matplotlib rendering (the only module that imports matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from attmask.viz.attention import HEAD_COLOURS, head_colour_map, threshold_by_mass  # noqa: E402
from attmask.viz.masks import attention_heatmap, overlay_mask, upsample_patches  # noqa: E402


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Lay out (tight, unless the figure has its own layout engine), write ``path`` (parents
    created) and close ``figure``."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


STRATEGY_TITLES = {
    "block": "Block-wise",
    "random": "Random",
    "attmask_high": "AttMask-High",
    "attmask_hint": "AttMask-Hint",
    "attmask_low": "AttMask-Low",
}


def render_mask_grid(
    image: np.ndarray,
    scores: torch.Tensor,
    masks: dict[str, list[torch.Tensor]],
    ratios: list[float],
    patch_size: int,
    title: str,
    path: str | Path,
) -> Path:
    """Draw image, attention map and each strategy's masks, one row per ratio.

    Args:
        image: ``(H, W, 3)`` in ``[0, 1]``.
        scores: ``(N,)`` head-mean [CLS] attention.
        masks: ``{strategy: [(N,) mask per ratio]}``.
        ratios: the ratio of each row.
        patch_size: pixels per patch side.
        title: figure title.
        path: output PNG.

    Returns:
        The written path.
    """
    grid = (image.shape[0] // patch_size, image.shape[1] // patch_size)
    heat = attention_heatmap(scores, grid, patch_size)
    columns = 2 + len(masks)
    figure, axes = plt.subplots(len(ratios), columns, figsize=(2.1 * columns, 2.2 * len(ratios) + 0.6), squeeze=False)
    for row, ratio in enumerate(ratios):
        axes[row, 0].imshow(image)
        axes[row, 1].imshow(image)
        axes[row, 1].imshow(heat, cmap="inferno", alpha=0.6)
        for column, (name, per_ratio) in enumerate(masks.items(), start=2):
            axes[row, column].imshow(overlay_mask(image, per_ratio[row], grid, patch_size))
            if row == 0:
                axes[row, column].set_title(STRATEGY_TITLES.get(name, name), fontsize=9)
            high = masks.get("attmask_high")
            if name == "attmask_hint" and high is not None and torch.equal(per_ratio[row], high[row]):
                axes[row, column].set_xlabel(f"no hint shown: floor({grid[0] * grid[1]} x s) = 0", fontsize=7)
        axes[row, 0].set_ylabel(f"r = {ratio:g}", fontsize=10)
    axes[0, 0].set_title("Image", fontsize=9)
    axes[0, 1].set_title("[CLS] attention", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path, dpi=110)


#: Share of patches outlined on the mean attention map (what AttMask-High hides at ratio 0.3).
TOP_SHARE = 0.3


def render_attention(
    image: np.ndarray, attention: torch.Tensor, patch_size: int, title: str, path: str | Path, mass: float = 0.6
) -> Path:
    """Draw one image's [CLS] attention: mean map, thresholded heads, one map per head.

    Columns: the image; the head-mean attention over it; each head's patches holding the top
    ``mass`` of its attention, in the head's colour (AttMask Fig. A1); then every head's map.

    Args:
        image: ``(H, W, 3)`` in ``[0, 1]``.
        attention: ``(heads, N)`` [CLS] attention of one block.
        patch_size: pixels per patch side.
        title: figure title.
        path: output PNG.
        mass: share of each head's attention kept by the thresholded panel.

    Returns:
        The written path.
    """
    from matplotlib.patches import Patch, Rectangle

    grid = (image.shape[0] // patch_size, image.shape[1] // patch_size)
    heads = attention.shape[0]
    columns = 3 + heads
    figure, axes = plt.subplots(1, columns, figsize=(2.1 * columns, 3.0), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title("Image", fontsize=9)
    mean = attention.mean(0)
    axes[1].imshow(image)
    shown = axes[1].imshow(upsample_patches(mean, grid, patch_size), cmap="viridis", alpha=0.75, vmin=0)
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    top = torch.topk(mean, max(1, int(len(mean) * TOP_SHARE))).indices.tolist()  # what AttMask-High hides at r=0.3
    for index in top:
        row, col = divmod(index, grid[1])
        axes[1].add_patch(
            Rectangle(
                (col * patch_size - 0.5, row * patch_size - 0.5),
                patch_size,
                patch_size,
                fill=False,
                edgecolor="white",
                linewidth=1.2,
            )
        )
    axes[1].set_title(f"mean [CLS] attention\n(white: top {TOP_SHARE:.0%} of patches)", fontsize=8)
    axes[2].imshow(image * 0.5 + 0.25)
    axes[2].imshow(head_colour_map(threshold_by_mass(attention, mass), grid, patch_size))
    axes[2].set_title(f"patches holding {mass:.0%} of\neach head's attention", fontsize=8)
    axes[2].legend(
        handles=[Patch(color=HEAD_COLOURS[h % len(HEAD_COLOURS)], label=f"head {h}") for h in range(heads)],
        fontsize=6,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=min(heads, 3),
        frameon=False,
    )
    scale = float(attention.max())
    for head in range(heads):
        axes[3 + head].imshow(upsample_patches(attention[head], grid, patch_size), cmap="viridis", vmin=0, vmax=scale)
        axes[3 + head].set_title(f"head {head}", fontsize=9)
    figure.colorbar(
        plt.cm.ScalarMappable(plt.Normalize(0, scale), "viridis"), ax=axes[3 + heads - 1], fraction=0.046, pad=0.03
    ).ax.tick_params(labelsize=6)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{title}  (colour: share of the [CLS] query's attention)", fontsize=9)
    return save_figure(figure, path, dpi=110)


def render_image_rows(
    rows: np.ndarray, column_titles: list[str], row_labels: list[str], title: str, path: str | Path
) -> Path:
    """Draw a grid of images: ``rows[i, j]`` in row ``i``, column ``j``, 2 x 2 inches per panel.

    Args:
        rows: ``(R, K, H, W, 3)`` in ``[0, 1]``.
        column_titles: ``K`` titles above the first row.
        row_labels: ``R`` labels left of each row.
        title: figure title.
        path: output PNG (``200 K`` x ``200 R + 60`` pixels).

    Returns:
        The written path.
    """
    count, columns = rows.shape[:2]
    figure, axes = plt.subplots(count, columns, figsize=(2.0 * columns, 2.0 * count + 0.6), squeeze=False)
    for row in range(count):
        for column in range(columns):
            axes[row, column].imshow(rows[row, column], interpolation="nearest")
        axes[row, 0].set_ylabel(row_labels[row], fontsize=8)
    for column, name in enumerate(column_titles):
        axes[0, column].set_title(name, fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path, dpi=100)
