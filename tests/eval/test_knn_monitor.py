"""Online k-NN monitor: labelled splits, hold-out for unsplit folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attmask.eval.knn_monitor import KNNMonitor
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


def _two_brightness_classes(folder, count: int = 20) -> None:
    for label, value in (("dark", 20), ("light", 235)):
        (folder / label).mkdir()
        for index in range(count):
            noise = np.random.default_rng(index).integers(0, 15, size=(16, 16, 3))
            Image.fromarray((value + noise).clip(0, 255).astype(np.uint8)).save(folder / label / f"{index}.png")


def test_validation_split_takes_queries_from_the_training_set_and_scores_three_features(tmp_path) -> None:
    _two_brightness_classes(tmp_path)
    config = tiny_config(f"data.source={tmp_path}", "data.val_images=6", "train.knn_k=5")
    monitor = KNNMonitor(config, 16, "cpu")
    bank, queries, classes = monitor._load_splits()
    assert monitor.split_name == "validation" and len(queries) == 6 and len(bank) == 34
    assert not {bank.paths[i] for i in range(len(bank))} & set(queries.paths)
    again, _, _ = KNNMonitor(
        tiny_config(f"data.source={tmp_path}", "data.val_images=6", "train.seed=5"), 16, "cpu"
    )._load_splits()
    assert again.paths == bank.paths, "the validation split does not depend on the run's seed"
    result = monitor.evaluate(build_vit("vit_tiny", img_size=16, patch_size=4, depth=2))
    assert set(result) == {f"knn{infix}_top{k}" for infix in ("", "_gap", "_clsgap") for k in (1, 5)}
    assert result["knn_top1"] == result["knn_gap_top1"] == 100.0
    pixels = monitor.pixel_baseline()
    assert pixels == {"knn_pixels_top1": 100.0, "knn_pixels_top5": 100.0}


def test_pixel_baseline_is_the_knn_of_flattened_images(tmp_path) -> None:
    # Classes told apart by where a bright square sits, not by brightness: the pixel k-NN
    # must compare images position by position (flattened), so it separates them perfectly.
    for label, corner in (("left", 0), ("right", 8)):
        (tmp_path / label).mkdir()
        for index in range(12):
            image = np.random.default_rng(index).integers(0, 40, size=(16, 16, 3))
            image[4:12, corner : corner + 8] = 250
            Image.fromarray(image.astype(np.uint8)).save(tmp_path / label / f"{index}.png")
    config = tiny_config(f"data.source={tmp_path}", "data.val_images=6", "train.knn_k=3")
    assert KNNMonitor(config, 16, "cpu").pixel_baseline()["knn_pixels_top1"] == 100.0


def test_unlabelled_data_gives_no_scores_without_reading_features(tmp_path) -> None:
    for index in range(12):
        Image.fromarray(np.full((16, 16, 3), index * 20, dtype=np.uint8)).save(tmp_path / f"{index}.png")
    monitor = KNNMonitor(tiny_config(f"data.source={tmp_path}", "train.knn_k=3"), 16)
    with pytest.warns(UserWarning, match="has no class labels .* so the online k-NN .* is skipped") as caught:
        assert monitor.evaluate(build_vit("vit_tiny", img_size=16, patch_size=4, depth=2)) == {}
        assert monitor.pixel_baseline() == {}
    assert len([w for w in caught if "no class labels" in str(w.message)]) == 1  # once per run, not per epoch


def test_as_a_callback_it_scores_when_due_and_adds_baselines_at_the_end(tmp_path) -> None:
    from attmask.core.callbacks import EpochEnd
    from attmask.methods import build_method

    _two_brightness_classes(tmp_path)
    config = tiny_config(
        f"data.source={tmp_path}",
        "data.val_images=6",
        "train.knn_k=5",
        "optim.epochs=4",
        "train.knn_every_epochs=2",
        "train.knn_baseline=true",
    )
    method = build_method(config, 16, 2)
    built = []

    def initial():
        built.append(True)
        return build_vit("vit_tiny", img_size=16, patch_size=4, depth=2)

    monitor = KNNMonitor(config, 16, initial_backbone=initial)
    event = lambda epoch: EpochEnd(epoch, 4, epoch * 2, method, tmp_path, True)  # noqa: E731
    assert [bool(monitor.on_epoch_end(event(e))) for e in range(4)] == [False, True, False, True]
    final = monitor.on_train_end(event(3))
    assert built == [True] and final["knn_split"] == "validation"
    assert {"knn_random_init_top1", "knn_pixels_top1", "knn_random_init_gap_top1"} <= set(final)
    no_baseline = KNNMonitor(tiny_config(f"data.source={tmp_path}", "data.val_images=6"), 16, initial_backbone=initial)
    assert no_baseline.on_train_end(event(3)) == {} and built == [True]
