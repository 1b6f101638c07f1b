"""Visible-token sets for encoders that drop hidden tokens (MAE, LUT).

Dropping tokens needs the same count of hidden tokens in every row, so only strategies that
hide exactly ``floor(N r)`` tokens with one fixed ratio on every image qualify: ``random``,
``attmask_high`` and ``attmask_low``, with ``ratio`` a single value and ``probability`` 1.
Block-wise masking (approximate counts) and AttMask-Hint (a random number of revealed tokens)
do not.
"""

from __future__ import annotations

import torch

from attmask.masking.ratio import num_masked
from attmask.masking.registry import MaskingConfig

FIXED_COUNT_STRATEGIES = ("random", "attmask_high", "attmask_low")


def check_fixed_count(config: MaskingConfig, method: str) -> None:
    """Raise a one-line ``ValueError`` unless ``config`` hides the same number of tokens per image."""
    if config.strategy not in FIXED_COUNT_STRATEGIES:
        raise ValueError(
            f"{method} drops hidden tokens and needs the same count per image: use "
            f"masking.strategy one of {', '.join(FIXED_COUNT_STRATEGIES)}, "
            f"not {config.strategy!r}"
        )
    if config.ratio[0] != config.ratio[1] or config.probability != 1.0:
        raise ValueError(
            f"{method} needs one masking ratio for every image: set masking.ratio to a "
            f"single value (e.g. 0.75) and masking.probability=1, got ratio {list(config.ratio)} "
            f"and probability {config.probability}"
        )
    if config.ratio[0] >= 1.0:
        raise ValueError(f"{method} needs at least one visible token: masking.ratio must be < 1")


def visible_index(mask: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, V)`` of the visible tokens of a mask ``(B, N)`` (True = hidden), ascending.

    Raises:
        ValueError: rows hide different numbers of tokens.
    """
    counts = (~mask).sum(dim=1)
    if counts.numel() and bool((counts != counts[0]).any()):
        raise ValueError(f"every row must keep the same number of tokens, got {sorted(set(counts.tolist()))}")
    keep = int(counts[0]) if counts.numel() else 0
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    order = torch.where(mask, positions + mask.shape[1], positions).argsort(dim=1)  # visible first
    return order[:, :keep]


def paired_visible_count(num_tokens: int, ratio: float) -> int:
    """V, the visible tokens of each of LUT's two views: ``N - floor(N r)``.

    Raises:
        ValueError: (one line) ``2 V > N``, so two disjoint visible sets do not fit in one image.
    """
    keep = num_tokens - int(num_masked(num_tokens, ratio)[0])
    if 2 * keep > num_tokens:
        raise ValueError(
            f"lut needs two disjoint visible sets of {keep} tokens each in {num_tokens} "
            f"tokens (2V <= N): raise masking.ratio to at least 0.5, got {ratio}"
        )
    return keep


def disjoint_visible_masks(
    batch_size: int, num_tokens: int, ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """LUT's masks of two views of each image: one random shuffle, disjoint visible sets.

    Each image draws one permutation of its N positions; with ``V = N - floor(N r)`` visible
    tokens per view, view 1 keeps the shuffled positions ``[0, V)`` and view 2 keeps ``[V, 2V)``
    (Kim et al., ECCV 2024). Positions index each view's own patch grid.

    Args:
        batch_size: B.
        num_tokens: N, patch tokens per view.
        ratio: masking ratio r, one value for every image.
        generator: optional CPU generator; the only source of randomness.

    Returns:
        ``(mask_1, mask_2)``, bool ``(B, N)`` each on the CPU, True = hidden, V False per row and
        no position visible in both.

    Raises:
        ValueError: ``2 V > N`` (see :func:`paired_visible_count`).
    """
    keep = paired_visible_count(num_tokens, ratio)
    order = torch.rand(batch_size, num_tokens, generator=generator).argsort(dim=1)  # (B, N) shuffle
    hidden = torch.ones(batch_size, num_tokens, dtype=torch.bool)
    first = hidden.scatter(1, order[:, :keep], False)
    second = hidden.scatter(1, order[:, keep : 2 * keep], False)
    return first, second
