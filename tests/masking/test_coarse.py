"""SimMIM's coarse masking cells: grid, mask expansion and score pooling, checked by hand."""

from __future__ import annotations

import pytest
import torch

from attmask.masking import attmask_high, coarse_grid, expand_mask, pool_scores


def test_coarse_grid() -> None:
    assert coarse_grid((4, 4), 2) == (2, 2)
    assert coarse_grid(4, 1) == (4, 4)
    assert coarse_grid((2, 6), 2) == (1, 3)


@pytest.mark.parametrize(("grid", "factor"), [((4, 4), 3), ((4, 6), 4), ((4, 4), 0)])
def test_coarse_grid_refuses_what_does_not_divide(grid: tuple[int, int], factor: int) -> None:
    with pytest.raises(ValueError, match="recon.mask_patch_size") as error:
        coarse_grid(grid, factor)
    assert "\n" not in str(error.value)


def test_expand_mask_on_a_4x4_grid() -> None:
    cells = torch.tensor([[True, False, False, True]])  # 2x2 cells of 2x2 tokens
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool).reshape(1, 16)
    assert torch.equal(expand_mask(cells, (2, 2), 2), expected)
    assert torch.equal(expand_mask(cells, (2, 2), 1), cells), "factor 1 is the identity"


def test_expand_mask_non_square() -> None:
    cells = torch.tensor([[False, True, False]])  # 1x3 cells -> 2x6 tokens
    expected = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=torch.bool).reshape(1, 12)
    assert torch.equal(expand_mask(cells, (1, 3), 2), expected)


def test_pool_scores_on_a_4x4_grid() -> None:
    scores = torch.arange(16.0).reshape(1, 16)  # token t has score t
    # cells: {0,1,4,5} {2,3,6,7} {8,9,12,13} {10,11,14,15}
    expected = torch.tensor([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    assert torch.equal(pool_scores(scores, (4, 4), 2), expected.float())


def test_pool_is_the_adjoint_of_expand() -> None:
    cells = torch.rand(3, 6) > 0.5
    tokens = expand_mask(cells, (2, 3), 2).float()
    assert torch.equal(pool_scores(tokens, (4, 6), 2), 4 * cells.float())


def test_attmask_high_on_pooled_scores_hides_the_most_attended_cell() -> None:
    scores = torch.zeros(1, 16)
    scores[0, 0] = 0.3  # the single highest token sits in cell 0 (sum 0.3) ...
    scores[0, [10, 11, 14, 15]] = 0.2  # ... but cell 3 holds the most attention (sum 0.8)
    cells = attmask_high(pool_scores(scores, (4, 4), 2), 0.25)  # one of four cells
    assert cells.tolist() == [[False, False, False, True]]
    assert expand_mask(cells, (2, 2), 2).nonzero()[:, 1].tolist() == [10, 11, 14, 15]


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="does not fit a 2x2 coarse grid"):
        expand_mask(torch.zeros(1, 5, dtype=torch.bool), (2, 2), 2)
    with pytest.raises(ValueError, match="do not fit a 4x4 grid"):
        pool_scores(torch.zeros(1, 12), (4, 4), 2)
