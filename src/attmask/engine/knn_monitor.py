"""Online weighted k-NN accuracy of a backbone during pretraining (DINO's monitor).

Each evaluation scores three features of one forward pass: the final-norm [CLS] token (the
headline, ``knn_*``), the mean of the patch tokens (``knn_gap_*``, AttMask Table A1) and both
concatenated (``knn_clsgap_*``). :meth:`KNNMonitor.pixel_baseline` scores the raw pixels of the
same bank and queries, the level a pretrained backbone has to beat.
"""

from __future__ import annotations

import sys
import warnings

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from attmask.config import Config
from attmask.data.augment import eval_transform
from attmask.data.datasets import build_dataset
from attmask.data.resumable import EpochSampler
from attmask.data.splits import hold_out, validation_split
from attmask.engine.distributed import is_distributed
from attmask.eval.features import extract_features
from attmask.eval.knn import weighted_knn

#: Feature name -> key infix of the logged accuracies (``knn{infix}_top1``).
FEATURE_KEYS = {"cls": "", "gap": "_gap", "cls+gap": "_clsgap"}


def _first_random(dataset: Dataset, limit: int, seed: int) -> Dataset:
    """A fixed random subset of at most ``limit`` images (the whole set when limit <= 0)."""
    if limit <= 0 or limit >= len(dataset):  # type: ignore[arg-type]
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return Subset(dataset, order[:limit].tolist())


class KNNMonitor:
    """Weighted k-NN top-1 / top-5 of [CLS], mean-patch and [CLS]+mean-patch features.

    Queries: the test split, or with ``data.val_images > 0`` the validation images held out of
    the training set (the bank then comes from the rest of the training set, so recipes are
    chosen without the test split). A folder without a test split is split 80 / 20 (fixed seed)
    so no query is in the bank.

    Args:
        config: reads ``data`` (source, data_dir, val_images) and ``train`` (knn_* settings).
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

    @property
    def split_name(self) -> str:
        """``validation`` (held out of the training set) or ``test``."""
        return "validation" if self.config.data.val_images > 0 else "test"

    def _load_splits(self) -> tuple[Dataset, Dataset, int]:
        if self._splits is None:
            data, train = self.config.data, self.config.train
            transform = eval_transform(self.img_size)
            bank = build_dataset(data.source, "train", transform, data.data_dir, max_pixels=data.max_image_pixels)
            if data.val_images > 0:
                bank, queries = validation_split(bank, data.val_images)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an unsplit folder: handled just below
                    queries = build_dataset(data.source, "test", transform, data.data_dir, max_pixels=data.max_image_pixels)
                if getattr(queries, "paths", None) is not None and queries.paths == getattr(bank, "paths", None):
                    bank, queries = hold_out(bank, fraction=0.2, seed=train.seed)
                queries = _first_random(queries, train.knn_test_samples, 1)
            classes = max(len(getattr(bank, "classes", [])), 1)
            self._splits = (_first_random(bank, train.knn_train_samples, 0), queries, classes)
        return self._splits

    def _features(self, backbone: torch.nn.Module, dataset: Dataset, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        world = torch.distributed.get_world_size() if is_distributed() else 1
        rank = torch.distributed.get_rank() if is_distributed() else 0
        sampler = EpochSampler(len(dataset), world, rank, shuffle=False)  # type: ignore[arg-type]
        loader = DataLoader(dataset, batch_size=256, sampler=sampler,
                            num_workers=self.config.data.num_workers)
        return extract_features(backbone, loader, self.device, kind=kind)

    def _pixels(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened normalised images ``(M, C*H*W)`` and labels (every rank reads all)."""
        loader = DataLoader(dataset, batch_size=256, num_workers=self.config.data.num_workers)
        images, labels = zip(*loader)
        return torch.cat(images).flatten(1).float(), torch.cat([torch.as_tensor(y) for y in labels]).long()

    def _score(self, bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
               query_labels: torch.Tensor, classes: int, prefix: str) -> dict[str, float]:
        result = weighted_knn(bank, bank_labels, queries, query_labels, classes, k=self.config.train.knn_k)
        return {f"{prefix}_top1": result.top1, f"{prefix}_top5": result.top5}

    def evaluate(self, backbone: torch.nn.Module, prefix: str = "knn") -> dict[str, float]:
        """``{prefix_top1, prefix_top5}`` of [CLS] and the same with ``_gap`` / ``_clsgap`` after
        the prefix, in percent (empty for unlabelled data)."""
        bank, queries, classes = self._load_splits()
        self._announce(f"{prefix}: {self.config.train.knn_k}-NN of {len(queries)} {self.split_name} queries "
                       f"against {len(bank)} images ...")
        bank_features, bank_labels = self._features(backbone, bank, "cls+gap")
        query_features, query_labels = self._features(backbone, queries, "cls+gap")
        if (bank_labels < 0).any() or classes < 2:
            return {}
        width = bank_features.shape[1] // 2
        parts = {"cls": slice(0, width), "gap": slice(width, None), "cls+gap": slice(None)}
        scores: dict[str, float] = {}
        for kind, columns in parts.items():
            scores.update(self._score(bank_features[:, columns], bank_labels, query_features[:, columns],
                                      query_labels, classes, f"{prefix}{FEATURE_KEYS[kind]}"))
        return scores

    def _announce(self, message: str) -> None:
        """One line on stderr while a k-NN runs (the progress bar is closed then), with train.progress."""
        if self.config.train.progress and (not is_distributed() or torch.distributed.get_rank() == 0):
            print(message, file=sys.stderr, flush=True)

    def pixel_baseline(self, prefix: str = "knn_pixels") -> dict[str, float]:
        """``{prefix_top1, prefix_top5}``: the same k-NN on the normalised pixels of the same bank
        and queries (cosine similarity of flattened images), empty for unlabelled data."""
        bank, queries, classes = self._load_splits()
        bank_pixels, bank_labels = self._pixels(bank)
        query_pixels, query_labels = self._pixels(queries)
        if (bank_labels < 0).any() or classes < 2:
            return {}
        return self._score(bank_pixels, bank_labels, query_pixels, query_labels, classes, prefix)
