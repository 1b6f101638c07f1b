"""Online weighted k-NN accuracy of a backbone during pretraining (DINO's monitor).

Each evaluation scores three features of one forward pass: the final-norm [CLS] token (the
headline, ``knn_*``), the mean of the patch tokens (``knn_gap_*``, AttMask Table A1) and both
concatenated (``knn_clsgap_*``). :meth:`KNNMonitor.pixel_baseline` scores the raw pixels of the
same bank and queries, the level a pretrained backbone has to beat. As a training callback
(:class:`attmask.engine.callbacks.Callback`) it scores the evaluated branch when due and, with
``train.knn_baseline``, the run's random initialisation and the pixels after the last epoch.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from attmask.config import Config
from attmask.core.callbacks import EpochEnd
from attmask.core.distributed import is_distributed
from attmask.core.environment import loader_workers
from attmask.core.schedules import epoch_due
from attmask.data.augment import eval_transform
from attmask.data.resumable import EpochSampler
from attmask.data.splits import UnlabelledError, labelled_splits
from attmask.eval.features import extract_features, flattened_images
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
        device: where features are extracted (None: where the scored backbone's weights are).
        initial_backbone: builds the backbone at the run's random initialisation, scored after
            the last epoch with ``train.knn_baseline`` (None: no random-init baseline).
    """

    def __init__(
        self,
        config: Config,
        img_size: int,
        device: torch.device | str | None = None,
        initial_backbone: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.config, self.img_size = config, img_size
        self.device = torch.device(device) if device is not None else None
        self.initial_backbone = initial_backbone
        self._splits: tuple[Dataset, Dataset, int] | None = None

    def due(self, epoch: int) -> bool:
        """True after every ``knn_every_epochs`` epochs and after the last one."""
        return epoch_due(self.config.train.knn_every_epochs, epoch, self.config.optim.epochs)

    @property
    def split_name(self) -> str:
        """``validation`` (held out of the training set) or ``test``."""
        return "validation" if self.config.data.val_images > 0 else "test"

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        """``knn_*`` of the evaluated branch when due, and ``knn_backbone`` (``teacher`` or
        ``encoder``): which backbone that was, for reports drawn without loading the checkpoint."""
        if not self.due(event.epoch):
            return {}
        return {**self.evaluate(event.method.eval_backbone, prefix="knn"), "knn_backbone": event.method.eval_name}

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        """With ``train.knn_baseline``: random-init and raw-pixel k-NN on the same bank and queries."""
        if not self.config.train.knn_baseline:
            return {}
        record: dict = {}
        if self.initial_backbone is not None:
            device = self.device or next(event.method.parameters()).device
            record.update(self.evaluate(self.initial_backbone().to(device), prefix="knn_random_init"))
        record.update(self.pixel_baseline(prefix="knn_pixels"))
        record["knn_split"] = self.split_name
        return record

    def _load_splits(self) -> tuple[Dataset, Dataset, int]:
        """Bank and queries (:func:`attmask.data.splits.labelled_splits`), each capped at its
        ``knn_*_samples`` by a fixed random subset; unlabelled data gives empty sets and 0 classes
        (and one warning)."""
        if self._splits is None:
            data, train = self.config.data, self.config.train
            try:
                splits = labelled_splits(
                    data.source,
                    eval_transform(self.img_size),
                    data.data_dir,
                    seed=train.seed,
                    max_pixels=data.max_image_pixels,
                    validation=data.val_images,
                )
            except UnlabelledError:
                warnings.warn(
                    f"{data.source} has no class labels (one subfolder per class), so the online k-NN "
                    "(train.knn_*) is skipped; set train.knn_every_epochs=0 and train.knn_baseline=false, "
                    "or pretrain on a labelled folder",
                    stacklevel=2,
                )
                self._splits = (Subset([], []), Subset([], []), 0)  # type: ignore[arg-type]
                return self._splits
            queries = splits.test if data.val_images > 0 else _first_random(splits.test, train.knn_test_samples, 1)
            self._splits = (_first_random(splits.train, train.knn_train_samples, 0), queries, splits.num_classes)
        return self._splits

    def _features(self, backbone: torch.nn.Module, dataset: Dataset, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        world = torch.distributed.get_world_size() if is_distributed() else 1
        rank = torch.distributed.get_rank() if is_distributed() else 0
        sampler = EpochSampler(len(dataset), world, rank, shuffle=False)  # type: ignore[arg-type]
        device = self.device or next(backbone.parameters()).device
        return extract_features(backbone, self._loader(dataset, sampler), device, kind=kind)

    def _pixels(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened normalised images ``(M, C*H*W)`` and labels (every rank reads all)."""
        return flattened_images(self._loader(dataset))

    def _loader(self, dataset: Dataset, sampler: EpochSampler | None = None) -> DataLoader:
        workers = loader_workers(self.config.data.num_workers)
        return DataLoader(dataset, batch_size=256, sampler=sampler, num_workers=workers)

    def _score(
        self,
        bank: torch.Tensor,
        bank_labels: torch.Tensor,
        queries: torch.Tensor,
        query_labels: torch.Tensor,
        classes: int,
        prefix: str,
    ) -> dict[str, float]:
        result = weighted_knn(bank, bank_labels, queries, query_labels, classes, k=self.config.train.knn_k)
        return {f"{prefix}_top1": result.top1, f"{prefix}_top5": result.top5}

    def evaluate(self, backbone: torch.nn.Module, prefix: str = "knn") -> dict[str, float]:
        """``{prefix_top1, prefix_top5}`` of [CLS] and the same with ``_gap`` / ``_clsgap`` after
        the prefix, in percent (empty for unlabelled data)."""
        bank, queries, classes = self._load_splits()
        if classes < 2:
            return {}
        self._announce(
            f"{prefix}: {self.config.train.knn_k}-NN of {len(queries)} {self.split_name} queries "
            f"against {len(bank)} images ..."
        )
        bank_features, bank_labels = self._features(backbone, bank, "cls+gap")
        query_features, query_labels = self._features(backbone, queries, "cls+gap")
        width = bank_features.shape[1] // 2
        parts = {"cls": slice(0, width), "gap": slice(width, None), "cls+gap": slice(None)}
        scores: dict[str, float] = {}
        for kind, columns in parts.items():
            scores.update(
                self._score(
                    bank_features[:, columns],
                    bank_labels,
                    query_features[:, columns],
                    query_labels,
                    classes,
                    f"{prefix}{FEATURE_KEYS[kind]}",
                )
            )
        return scores

    def _announce(self, message: str) -> None:
        """One line on stderr while a k-NN runs (the progress bar is closed then), with train.progress."""
        if self.config.train.progress and (not is_distributed() or torch.distributed.get_rank() == 0):
            print(message, file=sys.stderr, flush=True)

    def pixel_baseline(self, prefix: str = "knn_pixels") -> dict[str, float]:
        """``{prefix_top1, prefix_top5}``: the same k-NN on the normalised pixels of the same bank
        and queries (cosine similarity of flattened images), empty for unlabelled data."""
        bank, queries, classes = self._load_splits()
        if classes < 2:
            return {}
        bank_pixels, bank_labels = self._pixels(bank)
        query_pixels, query_labels = self._pixels(queries)
        return self._score(bank_pixels, bank_labels, query_pixels, query_labels, classes, prefix)
