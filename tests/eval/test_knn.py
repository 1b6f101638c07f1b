"""Weighted k-NN: parity with the official eval_knn.py, chunking, sanity cases, validation."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from attmask.eval.knn import KNNResult, knn_sweep, nearest_neighbours, weighted_knn
from tests.conftest import load_reference, reference_json


def _reference_cases() -> list[tuple[int, float]]:
    """The (k, T) pairs of knn.npz, listed here so that collection does not need the file."""
    return [(k, t) for k in (1, 5, 10, 20, 100) for t in (0.07, 0.04)]


def _reference_inputs() -> tuple[dict, list[torch.Tensor], int]:
    arrays = load_reference("knn.npz")
    tensors = [
        torch.from_numpy(arrays[key]) for key in ("train_features", "train_labels", "test_features", "test_labels")
    ]
    return arrays, tensors, int(arrays["num_classes"])


def _random_problem(
    train: int = 120, test: int = 45, dim: int = 12, classes: int = 6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(train, dim, generator=generator),
        torch.randint(classes, (train,), generator=generator),
        torch.randn(test, dim, generator=generator),
        torch.randint(classes, (test,), generator=generator),
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(("k", "temperature"), _reference_cases())
def test_parity_with_official_knn_classifier(k: int, temperature: float, normalize: bool) -> None:
    arrays, inputs, num_classes = _reference_inputs()
    expected = reference_json(arrays, "results_json")[f"k{k}_T{temperature}"]
    chunk = inputs[2].shape[0] // int(arrays["num_chunks"])  # the official chunking
    for chunk_size in (chunk, 1024):
        result = weighted_knn(
            *inputs, num_classes, k=k, temperature=temperature, chunk_size=chunk_size, normalize=normalize
        )
        assert result.top1 == pytest.approx(expected[0], abs=1e-6)
        if k >= 20:  # below, the official top-5 depends on how sort orders tied zero-weight classes
            assert result.top5 == pytest.approx(expected[1], abs=1e-6)
        assert (result.k, result.temperature) == (k, temperature)


def test_reference_json_lists_the_tested_cases() -> None:
    arrays, _, _ = _reference_inputs()
    listed = set(reference_json(arrays, "results_json"))
    assert listed == {f"k{k}_T{t}" for k, t in _reference_cases()}


def test_chunking_does_not_change_the_result() -> None:
    inputs = _random_problem()
    reference = weighted_knn(*inputs, 6, k=10, chunk_size=10000)
    for chunk_size, bank_chunk_size in ((7, None), (10000, 13), (7, 5), (1, 1)):
        assert weighted_knn(*inputs, 6, k=10, chunk_size=chunk_size, bank_chunk_size=bank_chunk_size) == reference


class _MatmulShapes(TorchFunctionMode):
    """Record the output shape of every matrix product."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", "") in ("__matmul__", "matmul", "mm"):
            self.shapes.append(tuple(result.shape))
        return result


def test_similarity_blocks_are_bounded_by_the_chunk_sizes() -> None:
    inputs = _random_problem(train=100, test=30)
    with _MatmulShapes() as recorder:
        weighted_knn(*inputs, 6, k=20, chunk_size=8, bank_chunk_size=16)
    assert recorder.shapes
    assert max(shape[0] for shape in recorder.shapes) <= 8
    assert max(shape[1] for shape in recorder.shapes) <= 16


def test_perfect_features_give_full_accuracy() -> None:
    generator = torch.Generator().manual_seed(1)
    train_labels = torch.arange(200) % 10
    test_labels = torch.randint(10, (50,), generator=generator)

    def features(labels: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(labels, 10).float()
        return one_hot + 0.05 * torch.randn(labels.shape[0], 10, generator=generator)

    for temperature in (0.07, 0.005):  # 0.005 would overflow exp(sim / T) without the shift
        result = weighted_knn(
            features(train_labels), train_labels, features(test_labels), test_labels, 10, k=20, temperature=temperature
        )
        assert (result.top1, result.top5) == (100.0, 100.0)


def test_random_labels_give_chance_accuracy() -> None:
    generator = torch.Generator().manual_seed(2)
    train = torch.randn(2000, 32, generator=generator)
    test = torch.randn(1000, 32, generator=generator)
    labels = torch.randint(10, (3000,), generator=generator)
    result = weighted_knn(train, labels[:2000], test, labels[2000:], 10, k=20)
    assert abs(result.top1 - 10.0) < 6.0
    assert abs(result.top5 - 50.0) < 10.0


def test_one_neighbour_on_the_training_set_is_exact() -> None:
    features, labels, _, _ = _random_problem(train=80)
    result = weighted_knn(features, labels, features, labels, 6, k=1)
    assert result.top1 == 100.0
    assert result.top5 == 100.0  # classes without a vote are never a hit, so top-5 == top-1 at k=1


def test_top5_never_counts_classes_without_votes() -> None:
    inputs = _random_problem(classes=10, seed=3)
    result = weighted_knn(*inputs, 10, k=1)
    assert result.top5 == result.top1


def test_sweep_equals_individual_calls_and_clamps_k() -> None:
    inputs = _random_problem(train=60)
    sweep = knn_sweep(*inputs, 6, ks=(1, 5, 20, 100), temperature=0.05)
    assert list(sweep) == [1, 5, 20, 100]
    for k in (1, 5, 20):
        assert sweep[k] == weighted_knn(*inputs, 6, k=k, temperature=0.05)
    assert sweep[100].k == 60
    with pytest.warns(UserWarning, match="using k=60"):
        clamped = weighted_knn(*inputs, 6, k=100, temperature=0.05)
    assert clamped == sweep[100] == KNNResult(sweep[100].top1, sweep[100].top5, 60, 0.05)


def test_inputs_are_not_modified() -> None:
    inputs = _random_problem()
    copies = [tensor.clone() for tensor in inputs]
    weighted_knn(*inputs, 6, k=5, chunk_size=7, bank_chunk_size=11)
    knn_sweep(*inputs, 6, ks=(3, 9))
    for tensor, copy in zip(inputs, copies):
        assert torch.equal(tensor, copy)


def test_float64_features_and_int32_labels() -> None:
    train, train_labels, test, test_labels = _random_problem()
    full = weighted_knn(train, train_labels, test, test_labels, 6, k=10)
    other = weighted_knn(train.double(), train_labels.int(), test.double(), test_labels.int(), 6, k=10)
    assert (other.top1, other.top5) == (full.top1, full.top5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    inputs = _random_problem()
    on_gpu = [tensor.cuda() for tensor in inputs]
    assert weighted_knn(*on_gpu, 6, k=10, chunk_size=7, bank_chunk_size=13) == weighted_knn(*inputs, 6, k=10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: {"train_features": x["train_features"][:, :5]}, "feature dims differ"),
        (lambda x: {"train_labels": x["train_labels"][:-1]}, "train_labels must have shape"),
        (lambda x: {"test_labels": x["test_labels"][:, None]}, "test_labels must have shape"),
        (lambda x: {"test_features": x["test_features"][0]}, "test_features must be a non-empty"),
        (
            lambda x: {"train_features": x["train_features"][:0], "train_labels": x["train_labels"][:0]},
            "train_features must be a non-empty",
        ),
        (lambda x: {"test_labels": x["test_labels"].float()}, "integer tensor"),
        (lambda x: {"train_labels": x["train_labels"] + 6}, r"must lie in \[0, 6\)"),
        (lambda x: {"k": 0}, "k must be >= 1"),
        (lambda x: {"temperature": 0.0}, "temperature must be > 0"),
        (lambda x: {"chunk_size": 0}, "chunk sizes must be >= 1"),
        (lambda x: {"bank_chunk_size": 0}, "chunk sizes must be >= 1"),
        (lambda x: {"num_classes": 0}, "num_classes must be >= 1"),
    ],
)
def test_invalid_arguments_raise(change, message: str) -> None:
    train, train_labels, test, test_labels = _random_problem()
    arguments = {
        "train_features": train,
        "train_labels": train_labels,
        "test_features": test,
        "test_labels": test_labels,
        "num_classes": 6,
        "k": 5,
    }
    arguments.update(change(arguments))
    with pytest.raises(ValueError, match=message):
        weighted_knn(**arguments)


def test_sweep_rejects_empty_or_invalid_ks() -> None:
    inputs = _random_problem()
    for ks in ((), (0, 5)):
        with pytest.raises(ValueError, match="ks must be"):
            knn_sweep(*inputs, 6, ks=ks)


def test_nearest_neighbours_match_a_full_sort() -> None:
    train, _, test, _ = _random_problem()
    similarities, indices = nearest_neighbours(train, test, 7, bank_chunk_size=10)
    full = torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    expected, expected_indices = full.sort(dim=1, descending=True)
    torch.testing.assert_close(similarities, expected[:, :7])
    assert torch.equal(indices, expected_indices[:, :7])
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbours(train, test, train.shape[0] + 1)
