"""Few-shot k-NN, retrieval, occlusion robustness and the feature cache, on exact cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attmask.eval.cache import cached_features, file_fingerprint
from attmask.eval.fewshot import disjoint_subsets, few_shot_knn
from attmask.eval.knn import knn_votes, weighted_knn
from attmask.eval.retrieval import retrieval
from attmask.eval.robustness import black_value, occlude, occlusion_accuracy
from attmask.models import VisionTransformer


def _clusters(per_class: int, classes: int = 4, dim: int = 8, noise: float = 0.05, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    centres = torch.eye(dim)[:classes] * 3
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=generator), labels


# ---------------------------------------------------------------- few-shot


def test_disjoint_subsets_are_balanced_and_disjoint() -> None:
    labels = torch.arange(3).repeat(10)  # 10 per class, interleaved
    subsets = disjoint_subsets(labels, 2, 5, 3, torch.Generator().manual_seed(0))
    assert len(subsets) == 5
    assert sorted(torch.cat(subsets).tolist()) == list(range(30))  # disjoint and covering
    for subset in subsets:
        assert torch.bincount(labels[subset], minlength=3).tolist() == [2, 2, 2]


def test_few_shot_perfect_features_and_k_rule() -> None:
    train, train_labels = _clusters(40)
    test, test_labels = _clusters(10, seed=1)
    results = few_shot_knn(train, train_labels, test, test_labels, 4, shots=(1, 5), repeats=3)
    assert results[1].k == 1 and results[5].k == 20  # k = 1 for nu = 1, else 20 (20 = 5 x 4)
    for result in results.values():
        assert result.top1 == [100.0, 100.0, 100.0] and result.mean == 100.0 and result.std == 0.0


def test_few_shot_random_labels_near_chance_and_std() -> None:
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(2000, 16, generator=generator), torch.randn(1000, 16, generator=generator)
    train_labels = torch.randint(5, (2000,), generator=generator)
    test_labels = torch.randint(5, (1000,), generator=generator)
    result = few_shot_knn(train, train_labels, test, test_labels, 5, shots=(10,), repeats=5)[10]
    assert 14 < result.mean < 26 and result.std > 0  # chance = 20%
    expected = torch.tensor(result.top1, dtype=torch.float64)
    assert result.std == pytest.approx(expected.std().item())


def test_few_shot_matches_knn_on_the_subset() -> None:
    train, train_labels = _clusters(30, noise=1.5)
    test, test_labels = _clusters(20, noise=1.5, seed=3)
    result = few_shot_knn(train, train_labels, test, test_labels, 4, shots=(5,), repeats=2, seed=7)[5]
    subsets = disjoint_subsets(train_labels, 5, 2, 4, torch.Generator().manual_seed(7 * 1000 + 5))
    for subset, top1 in zip(subsets, result.top1):
        assert top1 == weighted_knn(train[subset], train_labels[subset], test, test_labels, 4, k=20).top1


def test_few_shot_too_few_images_is_one_clear_error() -> None:
    train, labels = _clusters(6)
    with pytest.raises(ValueError, match="class 0 has 6 training images, fewer than 5 shots x 2"):
        few_shot_knn(train, labels, train, labels, 4, shots=(5,), repeats=2)


# ---------------------------------------------------------------- k-NN votes


def test_knn_votes_argmax_is_the_knn_prediction() -> None:
    train, train_labels = _clusters(20, noise=2.0)
    test, test_labels = _clusters(15, noise=2.0, seed=5)
    votes = knn_votes(train, train_labels, test, 4, k=10)
    accuracy = 100.0 * (votes.argmax(1) == test_labels).float().mean().item()
    assert accuracy == pytest.approx(weighted_knn(train, train_labels, test, test_labels, 4, k=10).top1)


# ---------------------------------------------------------------- retrieval


def test_retrieval_hand_computed() -> None:
    # 1-D directions: a, a', b, b' with a close to b' to produce one miss at k = 1.
    angles = torch.tensor([0.0, 0.5, 0.1, 2.0])
    features = torch.stack([angles.cos(), angles.sin()], dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    result = retrieval(features, labels, ks=(1, 2, 3))
    # nearest neighbours: 0 -> 2 (miss), 1 -> 2 (miss), 2 -> 0 (miss), 3 -> 1 (miss)
    assert result.recall[1] == 0.0
    # k = 2: 0 -> {2, 1} hit, 1 -> {2, 0} hit, 2 -> {0, 1} miss, 3 -> {1, 2} hit
    assert result.recall[2] == 75.0 and result.recall[3] == 100.0
    # AP: q0 ranks (2,1,3): 1/2; q1 (2,0,3): 1/2; q2 (0,1,3): 1/3; q3 (1,2,0): 1/2 -> mean 11/24
    assert result.mean_average_precision == pytest.approx(100 * 11 / 24)


def test_retrieval_excludes_self_even_with_duplicates() -> None:
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 2])  # the duplicate of image 0 has another label
    result = retrieval(features, labels, ks=(1,), chunk_size=1)
    assert result.recall[1] == 50.0  # images 2 and 3 find each other; 0 and 1 only each other


def test_retrieval_perfect_and_chunking() -> None:
    features, labels = _clusters(10)
    for chunk in (3, 1024):
        result = retrieval(features, labels, ks=(1, 4), chunk_size=chunk)
        assert result.recall == {1: 100.0, 4: 100.0} and result.mean_average_precision == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"every k must be in \[1, 39\]"):
        retrieval(features, labels, ks=(40,))


# ---------------------------------------------------------------- occlusion


def test_occlude_paints_exactly_the_masked_patches() -> None:
    images = torch.randn(2, 3, 8, 12)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1] = mask[1, 5] = True  # grid 2 x 3 of 4 px patches
    fill = torch.tensor([7.0, 8.0, 9.0])
    out = occlude(images, mask, 4, fill)
    expected = images.clone()
    expected[0, :, 0:4, 4:8] = fill[:, None, None]
    expected[1, :, 4:8, 8:12] = fill[:, None, None]
    assert torch.equal(out, expected) and not torch.equal(images, out)  # input untouched
    assert torch.allclose(black_value((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), torch.full((3,), -2.0))


def test_occlusion_accuracy_hides_the_most_attended_patches() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2).eval()
    images = torch.randn(6, 3, 8, 8)
    labels = torch.arange(6)
    seen: list[torch.Tensor] = []

    def classify(features: torch.Tensor) -> torch.Tensor:  # remembers what it was given
        seen.append(features)
        return torch.nn.functional.one_hot(labels, 6).float()

    accuracy = occlusion_accuracy(model, classify, [(images, labels)], ratios=(0.0, 0.5))
    assert accuracy == {0.0: 100.0, 0.5: 100.0}
    with torch.no_grad():
        torch.testing.assert_close(seen[0], model(images).cls_token)
        scores = model(images, return_cls_attention=True).cls_attention.mean(1)
        top = scores.topk(2, dim=1).indices
        mask = torch.zeros(6, 4, dtype=torch.bool).scatter_(1, top, True)
        torch.testing.assert_close(seen[1], model(occlude(images, mask, 4, black_value())).cls_token)
    with pytest.raises(ValueError, match=r"ratios must lie in \[0, 1\]"):
        occlusion_accuracy(model, classify, [(images, labels)], ratios=(1.5,))


# ---------------------------------------------------------------- cache


def test_cache_hits_misses_and_keys(tmp_path: Path) -> None:
    calls = []

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return torch.ones(2, 3) * len(calls), torch.zeros(2, dtype=torch.long)

    key = {"data": "digits", "kind": "cls"}
    first = cached_features(tmp_path, key, compute)
    second = cached_features(tmp_path, dict(reversed(list(key.items()))), compute)
    assert (first[2], second[2], len(calls)) == (False, True, 1)
    assert torch.equal(first[0], second[0])
    third = cached_features(tmp_path, {**key, "kind": "gap"}, compute)
    assert not third[2] and len(calls) == 2
    assert cached_features(None, key, compute)[2] is False and len(calls) == 3
    checkpoint = tmp_path / "c.pth"
    checkpoint.write_bytes(b"1")
    before = file_fingerprint(checkpoint)
    checkpoint.write_bytes(b"22")
    assert file_fingerprint(checkpoint) != before


def test_cache_recomputes_a_corrupt_entry(tmp_path: Path) -> None:
    from attmask.eval.cache import cache_path

    key = {"x": 1}
    cache_path(tmp_path, key).write_bytes(b"garbage")
    features, _, hit = cached_features(tmp_path, key, lambda: (torch.zeros(1, 1), torch.zeros(1)))
    assert not hit and cached_features(tmp_path, key, lambda: (torch.ones(1, 1), torch.zeros(1)))[2]
