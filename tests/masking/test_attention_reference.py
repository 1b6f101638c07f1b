"""Parity of AttMask-High/Low/Hint with the official AttMask code (../shared/reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attmask.masking import (
    attmask_high,
    attmask_hint,
    attmask_low,
    num_masked,
    sample_keep_rows,
    scores_from_cls_attention,
)
from tests.conftest import load_reference, reference_json

GRIDS = ("14x14", "8x8", "7x7")


@pytest.mark.parametrize("mode", ["high", "low"])
@pytest.mark.parametrize("grid", GRIDS)
def test_exact_masks_match_reference(mode: str, grid: str) -> None:
    ref = load_reference(f"attmask_{mode}.npz")
    scores = torch.from_numpy(ref[f"attention_{grid}"])
    function = attmask_high if mode == "high" else attmask_low
    for index, ratio in enumerate(ref[f"ratios_{grid}"].tolist()):
        mask = function(scores, ratio)
        assert mask.dtype == torch.bool
        np.testing.assert_array_equal(mask.numpy(), ref[f"masks_{grid}"][index])
        expected = int(ref[f"num_masked_{grid}"][index])
        assert num_masked(scores.shape[1], ratio).item() == expected
        assert (mask.sum(1) == expected).all()


@pytest.mark.parametrize("grid", GRIDS)
def test_scores_are_head_mean_of_cls_rows(grid: str) -> None:
    ref = load_reference("attmask_high.npz")
    cls_attention = torch.from_numpy(ref[f"cls_rows_{grid}"])[:, :, 1:]
    scores = scores_from_cls_attention(cls_attention)
    np.testing.assert_allclose(scores.numpy(), ref[f"attention_{grid}"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", ["high", "low"])
def test_masking_probability_is_per_row(mode: str) -> None:
    ref = load_reference(f"attmask_{mode}.npz")
    generator = torch.Generator().manual_seed(int(ref["prob_case_torch_seed"]))
    scores = torch.from_numpy(ref["prob_case_attention"])
    function = attmask_high if mode == "high" else attmask_low
    full = function(scores, float(ref["prob_case_ratio"]))
    keep = sample_keep_rows(full.shape[0], float(ref["prob_case_masking_prob"]), generator)  # the library's draw
    mask = full & keep[:, None]
    np.testing.assert_array_equal(mask.numpy(), ref["prob_case_masks"])
    kept = mask.any(dim=1).numpy()
    np.testing.assert_array_equal(kept, ref["prob_case_row_kept"])


def test_hint_invariants_match_reference() -> None:
    ref = load_reference("attmask_hint.npz")
    checked = 0
    for case in reference_json(ref, "cases_json"):  # type: ignore[union-attr]
        scores = torch.from_numpy(ref[f"attention_{case['grid']}"])
        generator = torch.Generator().manual_seed(1000 + case["case"])
        mask = attmask_hint(scores, case["masking_ratio"], case["show_ratio"], case["show_max"], generator)
        high = attmask_high(scores, case["masking_ratio"])
        revealed = high & ~mask
        assert not (mask & ~high).any(), "hint must never hide a token outside the High set"
        if case["official_raises_runtime_error"]:
            assert torch.equal(mask, high), "zero hints must mean 'reveal nothing'"
            continue
        i = case["case"]
        np.testing.assert_array_equal(high.numpy(), ref[f"case{i}_high_masks"])
        top = torch.from_numpy(ref[f"case{i}_top_show_masks"])
        assert not (revealed & ~top).any(), "revealed tokens must lie in the top s_max set"
        assert (revealed.sum(1) <= case["n_reveal"]).all()
        if case["show_max"] <= case["masking_ratio"]:
            assert revealed.sum(1).tolist() == case["revealed_per_row"]
            assert mask.sum(1).tolist() == case["masked_per_row"]
        checked += 1
    assert checked == 19


def test_hint_reveal_count_distribution_when_candidates_exceed_high_set() -> None:
    """For s_max > r, revealed ~ hypergeometric(m draws, |high| successes, c candidates)."""
    ref = load_reference("attmask_hint.npz")
    case = next(c for c in reference_json(ref, "cases_json") if c["case"] == 13)  # type: ignore
    scores = torch.from_numpy(ref["attention_28x28"])
    generator = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(100):
        mask = attmask_hint(scores, 0.1, 0.1, 0.2, generator)
        counts.append((attmask_high(scores, 0.1) & ~mask).sum(1).float())
    observed = torch.cat(counts).mean().item()
    expected = case["n_reveal"] * case["n_high"] / case["n_top_show"]  # 78 * 78 / 156 = 39
    assert abs(observed - expected) < 0.5
    official = np.asarray(case["revealed_per_row"], dtype=float).mean()
    assert abs(official - expected) < 4.0


def test_hint_probability_case_keeps_dropped_rows_empty() -> None:
    ref = load_reference("attmask_hint.npz")
    masking_prob, ratio, show_ratio, show_max = ref["prob_case_params"].tolist()
    scores = torch.from_numpy(ref["attention_14x14"]).repeat(int(ref["prob_case_attention_repeats"]), 1)
    generator = torch.Generator().manual_seed(int(ref["prob_case_torch_seed"]))
    keep = sample_keep_rows(scores.shape[0], masking_prob, generator)
    np.testing.assert_array_equal(keep.numpy(), ref["prob_case_row_kept"])
    ratios = torch.where(keep, torch.tensor(ratio, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    mask = attmask_hint(scores, ratios, show_ratio, show_max, generator)
    official = torch.from_numpy(ref["prob_case_masks"])
    assert torch.equal(mask.any(1), official.any(1))
    assert torch.equal(mask.sum(1), official.sum(1))
    assert not (mask & ~attmask_high(scores, ratio)).any()
