"""Random masking (SimMIM / MAE style): exactly ``floor(N r)`` uniformly chosen tokens per row."""

from __future__ import annotations

import torch

from attmask.masking.attention import token_ranks
from attmask.masking.ratio import Grid, Ratio, grid_shape, num_masked


def random_mask(batch_size: int, grid: Grid, ratio: Ratio, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hide ``floor(N r)`` tokens per row, chosen uniformly without replacement.

    Args:
        batch_size: B.
        grid: patch grid ``n`` or ``(height, width)``; N = height * width.
        ratio: float or per-row ``(B,)`` tensor in ``[0, 1]``.
        generator: optional CPU generator.

    Returns:
        Bool mask ``(B, N)`` on the CPU, True = hidden.
    """
    height, width = grid_shape(grid)
    num_tokens = height * width
    counts = num_masked(num_tokens, ratio, batch_size)
    keys = torch.rand(batch_size, num_tokens, generator=generator)
    return token_ranks(keys, descending=False) < counts[:, None]
