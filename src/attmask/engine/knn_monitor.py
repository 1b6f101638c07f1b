"""Online weighted k-NN accuracy of a backbone during pretraining (DINO's monitor)."""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from attmask.config import Config
from attmask.data.datasets import build_dataset
from attmask.data.augment import eval_transform
from attmask.data.resumable import EpochSampler
from attmask.data.splits import hold_out
from attmask.engine.distributed import is_distributed
from attmask.eval.features import extract_features
from attmask.eval.knn import weighted_knn


def _first_random(dataset: Dataset, limit: int, seed: int) -> Dataset:
    """A fixed random subset of at most ``limit`` images (the whole set when limit <= 0)."""
    if limit <= 0 or limit >= len(dataset):  # type: ignore[arg-type]
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return Subset(dataset, order[:limit].tolist())


class KNNMonitor:
    """Weighted 20-NN top-1 / top-5 of [CLS] features on the labelled train/test splits.

    A folder without a test split is split 80 / 20 (fixed seed) so no query is in the bank.

    Args:
        config: reads ``data`` (source, data_dir) and ``train`` (knn_* settings).
        img_size: evaluation crop size (the global crop size).
        device: where features are extracted.
    """

    def __init__(self, config: Config, img_size: int, device: torch.device) -> None:
        self.config, self.img_size, self.device = config, img_size, device
        self.every = config.train.knn_every_epochs
        self._splits: tuple[Dataset, Dataset, int] | None = None

    def due(self, epoch: int) -> bool:
        """True after every ``knn_every_epochs`` epochs and after the last one."""
        if self.every <= 0:
            return False
        return (epoch + 1) % self.every == 0 or epoch + 1 == self.config.optim.epochs

    def _load_splits(self) -> tuple[Dataset, Dataset, int]:
        if self._splits is None:
            data, train = self.config.data, self.config.train
            transform = eval_transform(self.img_size)
            bank = build_dataset(data.source, "train", transform, data.data_dir)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unsplit folder: handled just below
                queries = build_dataset(data.source, "test", transform, data.data_dir)
            if getattr(queries, "paths", None) is not None and queries.paths == getattr(bank, "paths", None):
                bank, queries = hold_out(bank, fraction=0.2, seed=train.seed)
            classes = max(len(getattr(bank, "classes", [])), 1)
            self._splits = (
                _first_random(bank, train.knn_train_samples, 0),
                _first_random(queries, train.knn_test_samples, 1),
                classes,
            )
        return self._splits

    def _features(self, backbone: torch.nn.Module, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        world = torch.distributed.get_world_size() if is_distributed() else 1
        rank = torch.distributed.get_rank() if is_distributed() else 0
        sampler = EpochSampler(len(dataset), world, rank, shuffle=False)  # type: ignore[arg-type]
        loader = DataLoader(dataset, batch_size=256, sampler=sampler,
                            num_workers=self.config.data.num_workers)
        return extract_features(backbone, loader, self.device)

    def evaluate(self, backbone: torch.nn.Module, prefix: str = "knn") -> dict[str, float]:
        """``{prefix_top1, prefix_top5}`` in percent (empty for unlabelled data)."""
        bank, queries, classes = self._load_splits()
        bank_features, bank_labels = self._features(backbone, bank)
        query_features, query_labels = self._features(backbone, queries)
        if (bank_labels < 0).any() or classes < 2:
            return {}
        result = weighted_knn(bank_features, bank_labels, query_features, query_labels, classes,
                              k=self.config.train.knn_k)
        return {f"{prefix}_top1": result.top1, f"{prefix}_top5": result.top5}
