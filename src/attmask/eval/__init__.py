"""Evaluation of frozen backbones: feature extraction and weighted k-NN.

Import from the submodules, e.g. ``from attmask.eval.knn import weighted_knn``; the names below
are re-exported for convenience.
"""

from attmask.eval.features import FEATURE_KINDS, batch_features, extract_features
from attmask.eval.knn import DEFAULT_BANK_CHUNK_SIZE, KNNResult, knn_sweep, nearest_neighbours, weighted_knn

__all__ = [
    "DEFAULT_BANK_CHUNK_SIZE",
    "FEATURE_KINDS",
    "KNNResult",
    "batch_features",
    "extract_features",
    "knn_sweep",
    "nearest_neighbours",
    "weighted_knn",
]
