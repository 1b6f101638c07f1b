"""Visible-token sets for encoders that drop hidden tokens (MAE, LUT).

Dropping tokens needs the same count of hidden tokens in every row, so only strategies that
hide exactly ``floor(N r)`` tokens with one fixed ratio on every image qualify: ``random``,
``attmask_high`` and ``attmask_low``, with ``ratio`` a single value and ``probability`` 1.
Block-wise masking (approximate counts) and AttMask-Hint (a random number of revealed tokens)
do not.
"""

from __future__ import annotations

import torch

from attmask.masking.registry import MaskingConfig

FIXED_COUNT_STRATEGIES = ("random", "attmask_high", "attmask_low")


def check_fixed_count(config: MaskingConfig, method: str) -> None:
    """Raise a one-line ``ValueError`` unless ``config`` hides the same number of tokens per image."""
    if config.strategy not in FIXED_COUNT_STRATEGIES:
        raise ValueError(f"{method} drops hidden tokens and needs the same count per image: use "
                         f"masking.strategy one of {', '.join(FIXED_COUNT_STRATEGIES)}, "
                         f"not {config.strategy!r}")
    if config.ratio[0] != config.ratio[1] or config.probability != 1.0:
        raise ValueError(f"{method} needs one masking ratio for every image: set masking.ratio to a "
                         f"single value (e.g. 0.75) and masking.probability=1, got ratio {list(config.ratio)} "
                         f"and probability {config.probability}")
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
