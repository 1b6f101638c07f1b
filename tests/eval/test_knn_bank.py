"""Bank chunking of the weighted k-NN on half-precision banks (as the k-NN benchmark stores them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attmask.eval.knn import nearest_neighbours, weighted_knn


def _half_problem(train: int = 300, test: int = 40, dim: int = 16, classes: int = 5):
    generator = torch.Generator().manual_seed(3)
    centres = torch.randn(classes, dim, generator=generator)
    train_labels = torch.randint(classes, (train,), generator=generator)
    test_labels = torch.randint(classes, (test,), generator=generator)
    train_features = (centres[train_labels] + 1.5 * torch.randn(train, dim, generator=generator)).half()
    test_features = (centres[test_labels] + 1.5 * torch.randn(test, dim, generator=generator)).half()
    return train_features, train_labels, test_features, test_labels


def test_bank_chunked_equals_unchunked_on_a_float16_bank() -> None:
    inputs = _half_problem()
    unchunked = weighted_knn(*inputs, 5, k=10, chunk_size=1000, bank_chunk_size=300)
    for chunk_size, bank_chunk_size in ((7, 1), (40, 17), (13, 64), (40, 299)):
        assert weighted_knn(*inputs, 5, k=10, chunk_size=chunk_size, bank_chunk_size=bank_chunk_size) == unchunked
    assert 20.0 < unchunked.top1 <= 100.0  # clustered features: well above chance (20%)


def test_bank_chunked_neighbours_are_the_brute_force_top_k_of_a_float16_bank() -> None:
    train, _, queries, _ = _half_problem()
    full = F.normalize(queries.float(), dim=1) @ F.normalize(train.float(), dim=1).T  # (Q, M)
    expected_values, expected_indices = full.topk(12, dim=1)
    values, indices = nearest_neighbours(train, queries, 12, bank_chunk_size=23)
    assert values.dtype == torch.float32 and indices.shape == (40, 12)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=1e-6)
    torch.testing.assert_close(full.gather(1, indices), expected_values, rtol=0, atol=1e-6)
    assert train.dtype == torch.float16  # the bank was read, not converted in place
