"""Online k-NN monitor: labelled splits, hold-out for unsplit folders."""

from __future__ import annotations

import numpy as np
from PIL import Image

from attmask.engine.knn_monitor import KNNMonitor
from attmask.models import build_vit
from tests.engine.tiny import tiny_config


def test_unsplit_folder_is_held_out_and_classes_separate(tmp_path) -> None:
    # Two classes that differ in brightness: any backbone separates them by [CLS] features.
    for label, value in (("dark", 20), ("light", 235)):
        (tmp_path / label).mkdir()
        for index in range(20):
            noise = np.random.default_rng(index).integers(0, 15, size=(16, 16, 3))
            Image.fromarray((value + noise).clip(0, 255).astype(np.uint8)).save(tmp_path / label / f"{index}.png")
    config = tiny_config(f"data.source={tmp_path}", "train.knn_every_epochs=1", "train.knn_k=5")
    monitor = KNNMonitor(config, 16, "cpu")
    bank, queries, classes = monitor._load_splits()
    assert classes == 2 and len(bank) == 32 and len(queries) == 8
    bank_paths = {bank.paths[i] for i in range(len(bank))}
    assert not bank_paths & set(queries.paths), "no query image is in the bank"
    result = monitor.evaluate(build_vit("vit_tiny", img_size=16, patch_size=4, depth=2))
    assert result["knn_top1"] == 100.0
