"""Image retrieval on a labelled set: Recall@k and mean average precision.

Every image is a query against all the others (itself excluded by index, so exact duplicates
still count as neighbours), ranked by cosine similarity, as in the fine-grained retrieval
protocol of the AttMask paper (Table 8, after Song et al. 2016). Recall@k is the percentage of
queries with at least one image of their class among their ``k`` nearest neighbours; mAP
averages, over queries, the precision at each rank holding a same-class image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attmask.eval.knn import nearest_neighbours

DEFAULT_KS = (1, 2, 4, 8)


@dataclass
class RetrievalResult:
    """Recall@k (percent, by k) and mAP (percent, None when not computed)."""

    recall: dict[int, float]
    mean_average_precision: float | None
    num_queries: int


def _drop_self(similarities: Tensor, indices: Tensor, query_ids: Tensor) -> Tensor:
    """Neighbour indices ``(b, k)`` without each query itself (from a top-(k+1) search)."""
    is_self = indices == query_ids[:, None]  # (b, k + 1)
    # rows where the query is not among its k + 1 (ties with duplicates): drop the last column
    is_self[~is_self.any(dim=1), -1] = True
    return indices[~is_self].reshape(indices.shape[0], indices.shape[1] - 1)


def _average_precision(features: Tensor, labels: Tensor, start: int, stop: int) -> Tensor:
    """Sum of average precisions of queries ``start..stop`` over the full ranking."""
    queries = features[start:stop]
    similarities = queries @ features.T  # (b, M)
    rows = torch.arange(stop - start)
    similarities[rows, rows + start] = -float("inf")  # exclude self
    order = similarities.argsort(dim=1, descending=True)[:, :-1]  # (b, M - 1)
    relevant = (labels[order] == labels[start:stop, None]).double()  # (b, M - 1)
    hits = relevant.cumsum(dim=1)
    ranks = torch.arange(1, relevant.shape[1] + 1, dtype=torch.float64)
    precision_sum = (relevant * hits / ranks).sum(dim=1)
    count = relevant.sum(dim=1)
    return torch.where(count > 0, precision_sum / count.clamp_min(1), torch.zeros_like(count)).sum()


def retrieval(
    features: Tensor, labels: Tensor, ks: Sequence[int] = DEFAULT_KS, with_map: bool = True, chunk_size: int = 1024
) -> RetrievalResult:
    """Recall@k (and mAP) of every image against the rest of the set.

    Args:
        features: ``(M, D)``, ``M >= 2``.
        labels: ``(M,)`` integer labels.
        ks: the k of Recall@k, each in ``[1, M - 1]``.
        with_map: also compute mAP (sorts a ``chunk_size x M`` block at a time).
        chunk_size: queries per step.

    Returns:
        :class:`RetrievalResult`.
    """
    count = features.shape[0]
    if features.dim() != 2 or count < 2 or labels.shape != (count,):
        raise ValueError(
            f"need (M >= 2, D) features and (M,) labels, got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if not ks or min(ks) < 1 or max(ks) > count - 1:
        raise ValueError(f"every k must be in [1, {count - 1}], got {tuple(ks)}")
    normed = F.normalize(features.float(), dim=1)
    hits = {int(k): 0 for k in ks}
    precision_total = torch.zeros((), dtype=torch.float64)
    for start in range(0, count, chunk_size):
        stop = min(start + chunk_size, count)
        ids = torch.arange(start, stop, device=features.device)
        similarities, indices = nearest_neighbours(normed, normed[start:stop], max(ks) + 1, normalize=False)
        same = labels[_drop_self(similarities, indices, ids)] == labels[start:stop, None]
        for k in hits:
            hits[k] += int(same[:, :k].any(dim=1).sum())
        if with_map:
            precision_total += _average_precision(normed, labels, start, stop).cpu()
    recall = {k: 100.0 * value / count for k, value in hits.items()}
    mean_ap = 100.0 * precision_total.item() / count if with_map else None
    return RetrievalResult(recall, mean_ap, count)
