"""Pixel reconstruction losses of MAE (He et al., 2022), SimMIM (Xie et al., 2022) and MST (Li et al., 2021)."""

from __future__ import annotations

import torch


def normalized_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's ``norm_pix_loss`` target: each patch ``(..., P)`` minus its mean over its P pixel
    values, divided by ``sqrt(var + eps)`` (unbiased variance, as MAE's ``.var``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def mae_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the pixels of the hidden patches (MAE ``forward_loss``).

    ``L = sum_i m_i * mean_j (pred_ij - target_ij)^2 / sum_i m_i`` over all patches i of the batch.

    Args:
        prediction: ``(B, N, P)`` predicted patches.
        target: ``(B, N, P)`` (normalised) true patches.
        mask: bool ``(B, N)``, True = hidden (only these count).

    Returns:
        Scalar loss (0 when nothing is hidden).
    """
    per_patch = (prediction.float() - target.float()).pow(2).mean(dim=-1)  # (B, N)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum().clamp(min=1.0)


def masked_l1_loss(prediction: torch.Tensor, images: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss: L1 over the hidden pixels, ``sum |x - y| * M / (sum M + 1e-5) / C``.

    Args:
        prediction: ``(B, C, H, W)`` reconstruction.
        images: ``(B, C, H, W)`` input images (normalised).
        pixel_mask: ``(B, 1, H, W)`` bool or float, 1 = hidden pixel.

    Returns:
        Scalar: mean absolute error per hidden pixel and channel.
    """
    weights = pixel_mask.to(torch.float32)
    error = (prediction.float() - images.float()).abs() * weights
    return error.sum() / (weights.sum() + 1e-5) / images.shape[1]


def image_l1_loss(prediction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """MST's restoration loss: mean absolute error over every pixel and channel of the images,
    masked and visible patches alike (``mean |x - y|``), computed in float32.

    Args:
        prediction: ``(B, C, H, W)`` restored images.
        images: ``(B, C, H, W)`` input images (normalised).

    Returns:
        Scalar loss.
    """
    if prediction.shape != images.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and images {tuple(images.shape)} differ")
    return (prediction.float() - images.float()).abs().mean()
