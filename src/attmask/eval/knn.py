"""Weighted k-nearest-neighbour classification of frozen features.

The non-parametric classifier of Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination" (CVPR 2018, Sec. 3.4), as run by DINO's ``eval_knn.py`` (Caron et al.,
2021) and AttMask / iBOT for their k-NN numbers: cosine similarity between L2-normalised
features, the ``k`` most similar training samples vote for their label with weight
``exp(sim / T)``, and classes are ranked by their summed weight.

Memory is bounded: test features are processed ``chunk_size`` rows at a time and the training
bank ``bank_chunk_size`` rows at a time, keeping a running top-k, so no similarity matrix larger
than ``chunk_size x bank_chunk_size`` exists (a 1.28M x 384 ImageNet bank works on one GPU).
Features are normalised chunk by chunk, so no normalised copy of the bank is kept either.

Two choices differ from the official code; neither changes top-1:
    * Weights are computed as ``exp((sim - sim_max) / T)`` with ``sim_max`` the query's best
      similarity. This scales every class score of a query by the same positive constant, so the
      ranking is unchanged, but small temperatures or unnormalised features cannot overflow.
    * A class that none of the ``k`` neighbours voted for is never a top-5 hit. The official code
      fills the top 5 with zero-weight classes in the (implementation-defined) order ``sort``
      leaves ties, and counts them when the label happens to land there.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: Rows of the training bank compared with a test chunk at once (1024 x 32768 fp32 = 128 MiB).
DEFAULT_BANK_CHUNK_SIZE = 32768


@dataclass
class KNNResult:
    """Accuracy of a weighted k-NN classifier.

    Attributes:
        top1: top-1 accuracy in percent.
        top5: top-``min(5, num_classes)`` accuracy in percent.
        k: number of neighbours actually used (the requested k, clamped to the bank size).
        temperature: the voting temperature ``T``.
    """

    top1: float
    top5: float
    k: int
    temperature: float


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    temperature: float,
    chunk_size: int,
    bank_chunk_size: int | None,
) -> None:
    """Raise ValueError on inconsistent shapes, empty inputs or invalid settings."""
    for name, features in (("train_features", train_features), ("test_features", test_features)):
        if features.dim() != 2 or features.shape[0] == 0 or features.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty (samples, dim) tensor, got shape {tuple(features.shape)}")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature dims differ: train {train_features.shape[1]}, test {test_features.shape[1]}")
    if train_features.device != test_features.device:
        raise ValueError(
            f"train features on {train_features.device}, test features on "
            f"{test_features.device}; put both on one device"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, labels, features in (("train", train_labels, train_features), ("test", test_labels, test_features)):
        if labels.shape != (features.shape[0],):
            raise ValueError(f"{name}_labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"{name}_labels must be an integer tensor, got {labels.dtype}")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"{name}_labels must lie in [0, {num_classes}), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1 or (bank_chunk_size is not None and bank_chunk_size < 1):
        raise ValueError(f"chunk sizes must be >= 1, got chunk_size={chunk_size}, bank_chunk_size={bank_chunk_size}")


def _prepare(features: Tensor, normalize: bool) -> Tensor:
    """A float (at least fp32) copy of ``(n, D)`` features, L2-normalised per row if asked."""
    features = features.to(torch.promote_types(features.dtype, torch.float32))
    return F.normalize(features, dim=1) if normalize else features


def nearest_neighbours(
    train_features: Tensor,
    queries: Tensor,
    k: int,
    bank_chunk_size: int = DEFAULT_BANK_CHUNK_SIZE,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """The ``k`` most similar bank rows of every query, scanning the bank in slices.

    Keeps a running top-k over slices of ``bank_chunk_size`` rows, so no matrix larger than
    ``Q x bank_chunk_size`` is built. Inputs are not modified.

    Args:
        train_features: ``(M, D)`` bank, ``1 <= k <= M``.
        queries: ``(Q, D)`` on the bank's device.
        k: neighbours per query.
        bank_chunk_size: bank rows compared at once.
        normalize: cosine similarity (True) or raw dot product (False).

    Returns:
        ``(similarities (Q, k), indices (Q, k))`` into the bank, most similar first.
    """
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(f"k must be in [1, {train_features.shape[0]}], got {k}")
    queries = _prepare(queries, normalize)
    best_similarities = best_indices = None
    for start in range(0, train_features.shape[0], bank_chunk_size):
        bank = _prepare(train_features[start : start + bank_chunk_size], normalize)
        similarities = queries @ bank.T  # (Q, m)
        values, indices = similarities.topk(min(k, bank.shape[0]), dim=1)
        indices = indices + start
        if best_similarities is not None:
            values = torch.cat([best_similarities, values], dim=1)
            indices = torch.cat([best_indices, indices], dim=1)
            values, order = values.topk(min(k, values.shape[1]), dim=1)
            indices = indices.gather(1, order)
        best_similarities, best_indices = values, indices
    return best_similarities, best_indices


def _hits(
    similarities: Tensor, neighbour_labels: Tensor, targets: Tensor, num_classes: int, temperature: float
) -> Tensor:
    """Top-1 and top-5 hits of one test chunk (Wu et al. 2018, Sec. 3.4 weighted voting).

    Args:
        similarities: ``(b, k)`` similarities, most similar first.
        neighbour_labels: ``(b, k)`` int64 labels of those neighbours.
        targets: ``(b,)`` true labels.

    Returns:
        int64 ``(2,)``: number of top-1 and top-5 hits.
    """
    weights = ((similarities - similarities[:, :1]) / temperature).exp()  # (b, k), max = 1
    votes = torch.zeros(targets.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    votes.scatter_add_(1, neighbour_labels, weights)  # (b, C)
    counts = torch.zeros_like(votes).scatter_add_(1, neighbour_labels, torch.ones_like(weights))
    _, ranked = votes.topk(min(5, num_classes), dim=1)  # (b, top)
    correct = (ranked == targets[:, None]) & (counts.gather(1, ranked) > 0)
    return torch.stack([correct[:, 0].sum(), correct.any(dim=1).sum()])


def knn_votes(
    train_features: Tensor,
    train_labels: Tensor,
    queries: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    bank_chunk_size: int = DEFAULT_BANK_CHUNK_SIZE,
) -> Tensor:
    """Class scores of the weighted k-NN vote (Wu et al. 2018, Sec. 3.4) for some queries.

    Args:
        train_features: ``(M, D)`` bank.
        train_labels: ``(M,)`` integer labels.
        queries: ``(Q, D)`` on the bank's device.
        num_classes: ``C``.
        k: neighbours (clamped to ``M``).
        temperature: ``T`` of the weights ``exp(sim / T)``.

    Returns:
        ``(Q, C)`` summed weights (each row scaled so that its best neighbour weighs 1); the
        argmax is the k-NN prediction.
    """
    similarities, indices = nearest_neighbours(
        train_features, queries, min(k, train_features.shape[0]), bank_chunk_size
    )
    weights = ((similarities - similarities[:, :1]) / temperature).exp()
    votes = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return votes.scatter_add_(1, train_labels.to(indices.device)[indices].long(), weights)


def _evaluate(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    ks: dict[int, int],
    temperature: float,
    chunk_size: int,
    bank_chunk_size: int,
    normalize: bool,
) -> dict[int, KNNResult]:
    """Score every ``requested k -> used k`` of ``ks`` from one top-max(k) search."""
    device = train_features.device
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    largest = max(ks.values())
    hits = {requested: torch.zeros(2, dtype=torch.long, device=device) for requested in ks}
    for start in range(0, test_features.shape[0], chunk_size):
        queries = test_features[start : start + chunk_size]  # (b, D)
        targets = test_labels[start : start + chunk_size]  # (b,)
        similarities, indices = nearest_neighbours(train_features, queries, largest, bank_chunk_size, normalize)
        neighbour_labels = train_labels[indices].long()  # (b, largest)
        for requested, used in ks.items():
            hits[requested] += _hits(
                similarities[:, :used], neighbour_labels[:, :used], targets, num_classes, temperature
            )
    total = test_features.shape[0]
    return {
        requested: KNNResult(
            top1=hits[requested][0].item() * 100.0 / total,
            top5=hits[requested][1].item() * 100.0 / total,
            k=used,
            temperature=temperature,
        )
        for requested, used in ks.items()
    }


def weighted_knn(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    normalize: bool = True,
    *,
    bank_chunk_size: int | None = None,
) -> KNNResult:
    """Weighted k-NN accuracy (Wu et al. 2018, Sec. 3.4; DINO ``eval_knn.knn_classifier``).

    Args:
        train_features: ``(M, D)`` bank features (any float dtype, CPU or CUDA).
        train_labels: ``(M,)`` integer labels in ``[0, num_classes)``.
        test_features: ``(Q, D)`` query features, same device as the bank.
        test_labels: ``(Q,)`` integer labels in ``[0, num_classes)``.
        num_classes: number of classes ``C``.
        k: neighbours per query. A k above ``M`` is clamped to ``M`` with a warning; the
            result's ``k`` says which k was used.
        temperature: ``T`` in the vote weight ``exp(sim / T)``.
        chunk_size: test rows per step.
        normalize: L2-normalise features first (cosine similarity); False uses raw dot products.
        bank_chunk_size: bank rows per step (default :data:`DEFAULT_BANK_CHUNK_SIZE`).

    Returns:
        :class:`KNNResult` with top-1 and top-``min(5, C)`` accuracy in percent.

    Raises:
        ValueError: shape or device mismatch, empty inputs, labels out of range, ``k < 1``,
            ``temperature <= 0`` or a chunk size below 1.
    """
    _check_inputs(
        train_features, train_labels, test_features, test_labels, num_classes, temperature, chunk_size, bank_chunk_size
    )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    used = min(k, train_features.shape[0])
    if used < k:
        warnings.warn(f"k={k} exceeds the {used} training samples; using k={used}", stacklevel=2)
    return _evaluate(
        train_features,
        train_labels,
        test_features,
        test_labels,
        num_classes,
        {k: used},
        temperature,
        chunk_size,
        bank_chunk_size or DEFAULT_BANK_CHUNK_SIZE,
        normalize,
    )[k]


def knn_sweep(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    *,
    chunk_size: int = 1024,
    normalize: bool = True,
    bank_chunk_size: int | None = None,
) -> dict[int, KNNResult]:
    """:func:`weighted_knn` for several k from one similarity / top-max(k) search.

    DINO reports k in {10, 20, 100, 200}. Each k above the bank size ``M`` is clamped to ``M``
    silently; ``result[k].k`` is the k used. Arguments as in :func:`weighted_knn`.

    Returns:
        ``{requested k: KNNResult}`` in the order of ``ks``.

    Raises:
        ValueError: as :func:`weighted_knn`, or ``ks`` empty.
    """
    _check_inputs(
        train_features, train_labels, test_features, test_labels, num_classes, temperature, chunk_size, bank_chunk_size
    )
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of integers >= 1, got {tuple(ks)}")
    used = {int(k): min(int(k), train_features.shape[0]) for k in ks}
    return _evaluate(
        train_features,
        train_labels,
        test_features,
        test_labels,
        num_classes,
        used,
        temperature,
        chunk_size,
        bank_chunk_size or DEFAULT_BANK_CHUNK_SIZE,
        normalize,
    )
