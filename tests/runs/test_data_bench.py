"""The data bench times the trainer's own loader and counts what it delivers."""

from __future__ import annotations

import pytest
import torch

from attmask.runs.data_bench import (
    DataBenchResult,
    describe,
    measure_pretraining_loader,
    pretraining_loader,
    time_loader,
)
from tests.engine.tiny import tiny_config


def test_counts_batches_times_batch_size_and_every_crop(one_thread) -> None:
    result = measure_pretraining_loader(tiny_config(), max_batches=3)
    assert (result.batches, result.batch_size, result.num_workers) == (3, 8, 0)
    assert result.images == result.batches * result.batch_size == 24
    assert result.crops_per_image == 2 + 2  # the tiny preset: 2 global + 2 local crops
    assert result.seconds >= result.first_batch_seconds > 0
    assert result.images_per_second > 0 and result.steady_images_per_second > 0


def test_continues_into_later_epochs_when_one_is_too_short(one_thread) -> None:
    config = tiny_config("data.per_class=2")  # 10 classes x 2 = 20 images: 2 batches of 8 per epoch
    loader = pretraining_loader(config, torch.device("cpu"))
    assert len(loader) == 2
    result = time_loader(loader, 5, torch.device("cpu"))
    assert (result.batches, result.images) == (5, 40)
    assert loader.sampler.epoch == 2 and loader.dataset.epoch == 2


def test_the_loader_yields_the_trainers_batches(tmp_path, one_thread) -> None:
    from attmask.engine.trainer import Trainer

    config = tiny_config()
    trainer = Trainer(config, tmp_path / "run")
    trainer.sampler.set_epoch(0)
    trainer.dataset.set_epoch(0)
    loader = pretraining_loader(config, torch.device("cpu"))
    loader.sampler.set_epoch(0)
    loader.dataset.set_epoch(0)
    (expected_crops, expected_labels), (crops, labels) = next(iter(trainer.loader)), next(iter(loader))
    assert torch.equal(labels, expected_labels) and len(crops) == len(expected_crops)
    for crop, expected in zip(crops, expected_crops):
        assert torch.equal(crop, expected)


def test_restores_the_thread_count(one_thread) -> None:
    torch.set_num_threads(1)
    measure_pretraining_loader(tiny_config("train.num_threads=2"), max_batches=1)
    assert torch.get_num_threads() == 1


def test_one_batch_has_no_steady_rate_and_describe_is_one_line() -> None:
    result = DataBenchResult(
        images=8, batches=1, batch_size=8, num_workers=2, crops_per_image=4, seconds=0.5, first_batch_seconds=0.5
    )
    assert result.images_per_second == 16.0 and result.steady_images_per_second is None
    line = describe(result)
    assert len(line.splitlines()) == 1 and "16.0 images/s" in line and "2 workers" in line


@pytest.mark.parametrize(
    ("overrides", "batches", "message"),
    [(("data.batch_size=100000",), 1, "lower data.batch_size"), ((), 0, "at least 1 batch")],
)
def test_bad_settings_raise(overrides: tuple[str, ...], batches: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure_pretraining_loader(tiny_config(*overrides), max_batches=batches)
