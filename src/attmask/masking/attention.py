"""Attention-guided masking: AttMask-High, AttMask-Low and AttMask-Hint.

Kakogeorgiou et al., "What to Hide from Your Students: Attention-Guided Masked Image
Modeling", ECCV 2022, Sec. 3.3. The teacher's last-block [CLS] attention, averaged over heads
(eq. 6-7), scores each patch token; the mask hides the ``k = floor(N r)`` tokens of highest
(High, eq. 8-9) or lowest (Low) score. Hint first hides the top-k and then reveals a few
tokens drawn from the most attended ones.

All functions are pure: they never modify their inputs and return a new bool ``(B, N)`` tensor
with True = hidden from the student.
"""

from __future__ import annotations

import math

import torch

from attmask.masking.ratio import Ratio, num_masked, ratio_tensor


def scores_from_cls_attention(cls_attention: torch.Tensor) -> torch.Tensor:
    """Head-mean of the [CLS] attention over patch tokens (AttMask eq. 7).

    Args:
        cls_attention: ``(B, heads, N)``, the [CLS] row of the softmax attention with the
            CLS->CLS entry dropped (not renormalised).

    Returns:
        Scores ``(B, N)``.
    """
    if cls_attention.dim() != 3:
        raise ValueError(f"cls_attention must have shape (batch, heads, tokens), got {tuple(cls_attention.shape)}")
    return cls_attention.mean(dim=1)


def token_ranks(scores: torch.Tensor, descending: bool) -> torch.Tensor:
    """Rank of every token within its row (0 = first in the requested order).

    Ties are broken by token index (the lower index ranks first in both orders), which is
    what the reference code did on the CPU.

    Args:
        scores: ``(B, N)``.
        descending: rank the largest score first.

    Returns:
        Int64 ranks ``(B, N)``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (batch, tokens), got {tuple(scores.shape)}")
    batch_size, num_tokens = scores.shape
    order = torch.argsort(scores, dim=1, descending=descending, stable=True)
    positions = torch.arange(num_tokens, device=scores.device).expand(batch_size, num_tokens)
    return torch.empty_like(order).scatter_(1, order, positions)


def _mask_by_rank(scores: torch.Tensor, ratio: Ratio, descending: bool) -> torch.Tensor:
    batch_size, num_tokens = scores.shape
    ranks = token_ranks(scores, descending=descending)
    counts = num_masked(num_tokens, ratio, batch_size).to(scores.device)
    return ranks < counts[:, None]


def attmask_high(scores: torch.Tensor, ratio: Ratio) -> torch.Tensor:
    """AttMask-High: hide the ``floor(N r)`` most attended tokens (eq. 8-9).

    Args:
        scores: ``(B, N)`` attention scores (e.g. :func:`scores_from_cls_attention`).
        ratio: float or per-row ``(B,)`` tensor in ``[0, 1]``.

    Returns:
        Bool mask ``(B, N)``, True = hidden; row ``b`` has exactly ``floor(N r_b)`` True.
    """
    return _mask_by_rank(scores, ratio, descending=True)


def attmask_low(scores: torch.Tensor, ratio: Ratio) -> torch.Tensor:
    """AttMask-Low: hide the ``floor(N r)`` least attended tokens (MST-like).

    Args:
        scores: ``(B, N)`` attention scores.
        ratio: float or per-row ``(B,)`` tensor in ``[0, 1]``.

    Returns:
        Bool mask ``(B, N)``, True = hidden; row ``b`` has exactly ``floor(N r_b)`` True.
    """
    return _mask_by_rank(scores, ratio, descending=False)


def attmask_hint(
    scores: torch.Tensor,
    ratio: Ratio,
    show_ratio: Ratio,
    show_max: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AttMask-Hint: hide the most attended tokens but reveal a few of the top ones.

    Builds the AttMask-High mask for ``ratio``, then un-hides ``m = floor(N * show_ratio)``
    tokens drawn uniformly without replacement from the ``floor(N * show_max)`` most attended.
    When ``show_max <= ratio`` (the paper's regime) exactly ``m`` tokens are revealed, so the
    row hides ``floor(N r) - m``; otherwise draws landing on visible tokens change nothing.
    ``m = 0`` simply reveals nothing (the reference code crashed there).

    Args:
        scores: ``(B, N)`` attention scores.
        ratio: masking ratio r, float or ``(B,)``.
        show_ratio: hint ratio, float or ``(B,)``, at most ``show_max``.
        show_max: ``s_max``, fraction of top tokens the hints are drawn from.
        generator: optional CPU generator for the draw.

    Returns:
        Bool mask ``(B, N)``, True = hidden.
    """
    batch_size, num_tokens = scores.shape
    if not 0.0 <= show_max <= 1.0:
        raise ValueError(f"show_max must lie in [0, 1], got {show_max}")
    shows = ratio_tensor(show_ratio, batch_size, name="show_ratio")
    if (shows > show_max).any():
        raise ValueError(
            f"show_ratio ({shows.max().item():g}) must not exceed show_max ({show_max:g}): "
            "hints are drawn from the top show_max tokens"
        )
    ranks = token_ranks(scores, descending=True)
    hidden = ranks < num_masked(num_tokens, ratio, batch_size).to(scores.device)[:, None]
    num_candidates = math.floor(num_tokens * show_max)
    candidates = ranks < num_candidates
    # Uniform sampling without replacement: the m candidates with the smallest random keys.
    keys = torch.rand(batch_size, num_tokens, generator=generator).to(scores.device)
    keys = keys.masked_fill(~candidates, 2.0)
    num_revealed = num_masked(num_tokens, shows).to(scores.device)
    revealed = token_ranks(keys, descending=False) < num_revealed[:, None]
    return hidden & ~revealed
