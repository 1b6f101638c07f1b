"""LUT's broader-context loss (Kim et al., "Learning with Unmasked Tokens Drives Stronger Vision
Learners", ECCV 2024): the student's pooled visible tokens of one view regress the EMA teacher's
pooled full-view tokens of the other view, BYOL-style (Grill et al., 2020, eq. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b (2 - 2 cos(q_b, k_b))``: BYOL's normalised MSE ``||q/|q| - k/|k|||^2``.

    Args:
        prediction: ``(B, K)`` student predictions q.
        target: ``(B, K)`` teacher targets k (pass them detached: the loss stops no gradient).

    Returns:
        Scalar in ``[0, 4]``: 0 for parallel rows, 2 for orthogonal rows, 4 for opposite rows.
    """
    cosine = F.cosine_similarity(prediction.float(), target.float(), dim=-1)  # (B,)
    return (2.0 - 2.0 * cosine).mean()


def symmetric_broader_context_loss(
    predictions: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """LUT's L_BC, symmetrised over the two views.

    ``L_BC = 1/2 [ mean_b (2 - 2 cos(q1_b, k2_b)) + mean_b (2 - 2 cos(q2_b, k1_b)) ]``: view 1's
    prediction regresses view 2's target and vice versa; the two directions and the batch are
    averaged (so L_BC lies in ``[0, 4]`` like one direction).

    Args:
        predictions: ``(q1, q2)``, each ``(B, K)``: the student's predictor outputs per view.
        targets: ``(k1, k2)``, each ``(B, K)``: the teacher's projector outputs per view.
    """
    (q1, q2), (k1, k2) = predictions, targets
    return 0.5 * (cosine_regression_loss(q1, k2) + cosine_regression_loss(q2, k1))
