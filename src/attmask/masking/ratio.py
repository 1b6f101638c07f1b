"""Mask ratios and masking probability, per image.

The AttMask paper (Sec. 3.3, "masking ratio") draws the ratio ``r ~ U(a, b)`` and applies
masking with probability ``p`` independently for every image of every global view. The
reference implementation drew one ratio per *batch*; here every helper works per row.

Counts follow the reference exactly: ``k = floor(N * r)`` computed on the float64 product
(Python ``int(N * r)``), so e.g. ``N = 100, r = 0.29`` gives 28, not 29. Pass ratios as Python
floats or float64 tensors to get bit-exact counts; float32 ratios are widened first, which can
move a product that should be an integer just below it.
"""

from __future__ import annotations

import numbers

import torch

Ratio = float | torch.Tensor
Grid = int | tuple[int, int]


def grid_shape(grid: Grid) -> tuple[int, int]:
    """Normalise a patch grid given as ``n`` or ``(height, width)`` to ``(height, width)``.

    Raises:
        ValueError: if a side is not a positive integer.
    """
    sides: list = []
    if isinstance(grid, numbers.Real):  # numpy integers too
        sides = [grid, grid]
    elif isinstance(grid, (tuple, list)):
        sides = list(grid)
    if len(sides) != 2 or not all(isinstance(side, numbers.Real) and side >= 1 and int(side) == side for side in sides):
        raise ValueError(f"patch grid must be positive integers (height, width), got {grid!r}")
    return int(sides[0]), int(sides[1])


def ratio_tensor(ratio: Ratio, batch_size: int, name: str = "ratio") -> torch.Tensor:
    """Broadcast a scalar or per-row ratio to a float64 tensor of shape ``(B,)``.

    Args:
        ratio: float, 0-d tensor or tensor of shape ``(B,)`` with values in ``[0, 1]``.
        batch_size: B.
        name: name used in error messages.

    Returns:
        Float64 tensor ``(B,)`` (a new tensor; the input is never modified).

    Raises:
        ValueError: if a value lies outside ``[0, 1]`` or the shape is not ``(B,)``.
    """
    values = torch.as_tensor(ratio, dtype=torch.float64).detach().cpu()
    if values.dim() == 0:
        values = values.expand(batch_size)
    if values.shape != (batch_size,):
        raise ValueError(
            f"{name} must be a float or a tensor of shape ({batch_size},), got shape {tuple(values.shape)}"
        )
    if torch.isnan(values).any() or (values < 0).any() or (values > 1).any():
        bad = values[torch.isnan(values) | (values < 0) | (values > 1)][0].item()
        raise ValueError(f"{name} must lie in [0, 1], got {bad}; pass a fraction such as 0.3")
    return values.clone()


def num_masked(num_tokens: int, ratio: Ratio, batch_size: int | None = None) -> torch.Tensor:
    """Number of hidden tokens per row, ``k = floor(N * r)`` (AttMask eq. 9).

    Args:
        num_tokens: N, patch tokens per image.
        ratio: float or ``(B,)`` tensor in ``[0, 1]``.
        batch_size: B; checked against a per-row ``ratio`` (default: its length, or 1).

    Returns:
        Int64 tensor ``(B,)`` on the CPU.
    """
    if batch_size is None:
        as_tensor = torch.as_tensor(ratio)
        batch_size = 1 if as_tensor.dim() == 0 else as_tensor.shape[0]
    return torch.floor(ratio_tensor(ratio, batch_size) * num_tokens).to(torch.int64)


def sample_ratios(batch_size: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one ratio per image, ``r ~ U(low, high)``.

    Args:
        batch_size: B.
        low: lower bound, ``0 <= low <= high <= 1``.
        high: upper bound.
        generator: optional CPU generator for reproducibility.

    Returns:
        Float64 tensor ``(B,)``.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"ratio range must satisfy 0 <= low <= high <= 1, got ({low}, {high})")
    uniform = torch.rand(batch_size, dtype=torch.float64, generator=generator)
    return low + (high - low) * uniform


def sample_keep_rows(batch_size: int, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Decide per row whether masking is applied (probability ``p``).

    As in the reference, a row is kept when its uniform draw ``u`` satisfies ``u <= p``.

    Returns:
        Bool tensor ``(B,)``, True = this row is masked.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"masking probability must lie in [0, 1], got {probability}")
    return torch.rand(batch_size, generator=generator) <= probability
