"""Block-wise masking (BEiT, Bao et al. 2022, Alg. 1), as used by iBOT.

Rectangles with a log-uniform aspect ratio are added until about ``r * N`` tokens are hidden.
The count never exceeds ``floor(N r)`` and is sometimes lower: a rectangle is accepted only if
it adds at least one token without overshooting the budget, and the loop stops after 10
attempts in a row that add nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from attmask.masking.ratio import Grid, Ratio, grid_shape, ratio_tensor

_MAX_ATTEMPTS = 10


def _add_rectangle(mask: np.ndarray, budget: float, log_aspect: tuple[float, float], rng: np.random.Generator) -> int:
    """Try up to 10 rectangles; paint the first acceptable one and return how many cells it added."""
    height, width = mask.shape
    min_area = (min(height, width) // 3) ** 2
    for _ in range(_MAX_ATTEMPTS):
        target_area = min_area + (budget - min_area) * rng.random()  # may lie below min_area
        aspect = math.exp(rng.uniform(*log_aspect))
        rect_h = int(round(math.sqrt(target_area * aspect)))
        rect_w = int(round(math.sqrt(target_area / aspect)))
        if rect_w >= width or rect_h >= height:
            continue
        top = int(rng.integers(0, height - rect_h + 1))
        left = int(rng.integers(0, width - rect_w + 1))
        window = mask[top : top + rect_h, left : left + rect_w]
        added = rect_h * rect_w - int(window.sum())
        if 0 < added <= budget:
            window[...] = True
            return added
    return 0


def _one_block_mask(
    height: int, width: int, target: float, log_aspect: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    count = 0
    while count < target:
        added = _add_rectangle(mask, target - count, log_aspect, rng)
        if added == 0:
            break
        count += added
    return mask.reshape(-1)


def blockwise_mask(
    batch_size: int,
    grid: Grid,
    ratio: Ratio,
    generator: torch.Generator | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
) -> torch.Tensor:
    """BEiT-style block-wise mask with at most ``floor(N r)`` hidden tokens per row.

    Args:
        batch_size: B.
        grid: patch grid ``n`` or ``(height, width)``.
        ratio: float or per-row ``(B,)`` tensor in ``[0, 1]``.
        generator: optional CPU generator; one 63-bit seed is drawn from it to drive a NumPy
            generator, so results are reproducible under a seeded generator.
        min_aspect: smallest rectangle aspect ratio (height / width).
        max_aspect: largest aspect ratio, default ``1 / min_aspect``.

    Returns:
        Bool mask ``(B, N)`` on the CPU, True = hidden.
    """
    height, width = grid_shape(grid)
    ratios = ratio_tensor(ratio, batch_size)
    if not 0.0 < min_aspect <= (max_aspect or 1.0 / min_aspect):
        raise ValueError(f"aspect range must satisfy 0 < min <= max, got ({min_aspect}, {max_aspect})")
    log_aspect = (math.log(min_aspect), math.log(max_aspect or 1.0 / min_aspect))
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
    rng = np.random.default_rng(seed)
    rows = [_one_block_mask(height, width, float(r) * height * width, log_aspect, rng) for r in ratios.tolist()]
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, height * width, dtype=torch.bool)
