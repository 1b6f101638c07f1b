"""Masking strategies: pure functions returning bool ``(B, N)`` masks, True = hidden.

``attmask_high`` / ``attmask_low`` / ``attmask_hint`` rank tokens by the teacher's [CLS]
attention (AttMask, ECCV 2022); ``random_mask`` and ``blockwise_mask`` depend only on the
grid; ``coarse_grid`` / ``expand_mask`` / ``pool_scores`` move any of them to SimMIM's
coarser cells. ``build_masking`` picks one by name with per-image ratio and probability sampling.
"""

from attmask.masking.attention import attmask_high, attmask_hint, attmask_low, scores_from_cls_attention, token_ranks
from attmask.masking.blockwise import blockwise_mask
from attmask.masking.coarse import coarse_grid, expand_mask, pool_scores
from attmask.masking.random import random_mask
from attmask.masking.ratio import grid_shape, num_masked, ratio_tensor, sample_keep_rows, sample_ratios
from attmask.masking.registry import (
    ATTENTION_STRATEGIES,
    STRATEGIES,
    MaskingConfig,
    MaskingStrategy,
    build_masking,
    validate_masking_config,
)
from attmask.masking.visible import (
    FIXED_COUNT_STRATEGIES,
    check_fixed_count,
    disjoint_visible_masks,
    paired_visible_count,
    visible_index,
)

__all__ = [
    "FIXED_COUNT_STRATEGIES",
    "check_fixed_count",
    "disjoint_visible_masks",
    "paired_visible_count",
    "visible_index",
    "ATTENTION_STRATEGIES",
    "STRATEGIES",
    "MaskingConfig",
    "MaskingStrategy",
    "attmask_high",
    "attmask_hint",
    "attmask_low",
    "blockwise_mask",
    "build_masking",
    "coarse_grid",
    "expand_mask",
    "grid_shape",
    "num_masked",
    "pool_scores",
    "random_mask",
    "ratio_tensor",
    "sample_keep_rows",
    "sample_ratios",
    "scores_from_cls_attention",
    "token_ranks",
    "validate_masking_config",
]
