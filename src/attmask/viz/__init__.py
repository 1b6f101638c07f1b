"""Figures. Array helpers here are matplotlib-free; ``viz.render`` is the only matplotlib user."""

from attmask.viz.masks import (
    FIGURE_STRATEGIES,
    attention_heatmap,
    denormalize,
    overlay_mask,
    strategy_masks,
    upsample_patches,
)

__all__ = [
    "FIGURE_STRATEGIES",
    "attention_heatmap",
    "denormalize",
    "overlay_mask",
    "strategy_masks",
    "upsample_patches",
]
