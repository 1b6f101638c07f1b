"""LUT's broader-context loss: 2 - 2 cos per row, batch mean, symmetrised over the two views."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.losses import cosine_regression_loss, symmetric_broader_context_loss


def test_cosine_loss_of_hand_computed_rows() -> None:
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert cosine_regression_loss(x, y).item() == pytest.approx(2.0)  # orthogonal: cos 0
    assert cosine_regression_loss(x, 5 * x).item() == pytest.approx(0.0)  # parallel: cos 1, scale-free
    assert cosine_regression_loss(x, -x).item() == pytest.approx(4.0)  # opposite: cos -1
    sixty = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3)]]) * 2.0
    assert cosine_regression_loss(x, sixty).item() == pytest.approx(1.0, abs=1e-6)  # 2 - 2 * 1/2
    # (3, 4) vs (4, 3): cos = 24 / 25, so 2 - 48/25 = 2/25; batch mean with an orthogonal row
    rows = cosine_regression_loss(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[4.0, 3.0], [0.0, 1.0]]))
    assert rows.item() == pytest.approx((2 / 25 + 2.0) / 2, abs=1e-6)


def test_symmetric_loss_pairs_each_prediction_with_the_other_views_target() -> None:
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # q1 = k2 (loss 0) and q2 orthogonal to k1 (loss 2): (0 + 2) / 2
    assert symmetric_broader_context_loss((e2, e2), (e1, e2)).item() == pytest.approx(1.0)
    # matched-view pairs would give 0 here; the crossed pairs give 2 for both directions
    assert symmetric_broader_context_loss((e1, e2), (e1, e2)).item() == pytest.approx(2.0)
    assert symmetric_broader_context_loss((e1, e2), (e2, e1)).item() == pytest.approx(0.0)


def test_gradient_reaches_the_predictions_only() -> None:
    torch.manual_seed(0)
    q1, q2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    k1, k2 = torch.randn(4, 8), torch.randn(4, 8)
    symmetric_broader_context_loss((q1, q2), (k1, k2)).backward()
    assert q1.grad is not None and q2.grad is not None and q1.grad.abs().sum() > 0
    assert k1.grad is None and k2.grad is None
