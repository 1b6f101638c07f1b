"""LUT's projector and predictor (Kim et al., ECCV 2024): BYOL's MLP (Grill et al., 2020, Sec. 3.3),
``Linear - BatchNorm1d - ReLU - Linear``."""

from __future__ import annotations

import torch
from torch import nn


class LUTMLP(nn.Module):
    """``(B, in_dim) -> (B, out_dim)`` through one hidden layer with batch norm.

    The projector maps the pooled encoder tokens ``D -> hidden_dim -> out_dim`` (4096, 256);
    the predictor has the same shape on the projector's output ``out_dim -> hidden_dim -> out_dim``.
    BatchNorm makes each row depend on the batch: run it on whole batches only.

    Args:
        in_dim: input width.
        hidden_dim: hidden width.
        out_dim: output width.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features (B, in_dim) -> (B, out_dim)``."""
        return self.layers(features)
