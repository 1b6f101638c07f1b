"""``data.augment_on=device``: decode-only loader, batched augmentation in the trainer, data bench."""

from __future__ import annotations

import math

import pytest
import torch

from attmask.config import ConfigError
from attmask.data.batched import BatchedCropFlip, BatchedMultiCrop
from attmask.engine.data import batch_augmentation, pretraining_loader
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.runs.data_bench import measure_pretraining_loader
from tests.engine.tiny import TINY_MAE, crash_and_resume, losses_by_step, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICE = ("data.augment_on=device",)


def test_the_loader_only_decodes_to_uint8_squares() -> None:
    config = tiny_config(*DEVICE)
    loader = pretraining_loader(config, torch.device("cpu"))
    images, labels = next(iter(loader))
    assert images.dtype == torch.uint8 and tuple(images.shape) == (8, 3, 16, 16)  # tiny: global crop 16
    assert labels.shape == (8,)
    images, _ = next(iter(pretraining_loader(tiny_config(*DEVICE, "data.decode_size=20"), torch.device("cpu"))))
    assert tuple(images.shape) == (8, 3, 20, 20)


def test_the_batched_augmentation_follows_the_method() -> None:
    assert batch_augmentation(tiny_config().data) is None
    assert isinstance(batch_augmentation(tiny_config(*DEVICE).data, "ibot"), BatchedMultiCrop)
    lut = batch_augmentation(tiny_config(*DEVICE).data, "lut")
    assert isinstance(lut, BatchedCropFlip) and lut.num_views == 2


@pytest.mark.parametrize("overrides", [(), TINY_MAE], ids=["ibot", "mae"])
def test_two_steps_train_with_device_augmentation(overrides: tuple[str, ...], tmp_path) -> None:
    config = tiny_config(*DEVICE, *overrides, "optim.epochs=1")
    trainer = Trainer(config, tmp_path)
    summary = trainer.fit()
    losses = losses_by_step(read_log(tmp_path))
    assert sorted(losses) == [1, 2] and all(math.isfinite(loss) for loss in losses.values())
    assert math.isfinite(summary["epoch_loss"])


def test_the_trainer_augments_each_micro_batch_with_its_own_seed(tmp_path) -> None:
    trainer = Trainer(tiny_config(*DEVICE, "optim.accumulation_steps=2"), tmp_path)
    images = next(iter(trainer.loader))[0]
    first, second = trainer._to_device(images, 0), trainer._to_device(images, 1)
    assert len(first) == 4 and first[0].shape == (8, 3, 16, 16) and first[2].shape == (8, 3, 8, 8)
    assert not torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first, trainer._to_device(images, 0)))
    trainer.fit()  # accumulation runs end to end


def test_resume_with_device_augmentation_continues_exactly(tmp_path, monkeypatch) -> None:
    overrides = (*DEVICE, "optim.epochs=2", "train.max_steps_per_epoch=3", "train.save_every_steps=2")
    Trainer(tiny_config(*overrides), tmp_path / "straight").fit()
    expected = losses_by_step(read_log(tmp_path / "straight"))
    assert sorted(expected) == list(range(1, 7))
    assert crash_and_resume(overrides, tmp_path / "resumed", 5, monkeypatch) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.augment_on=gpu", "unknown data.augment_on 'gpu'; choose one of workers, device"),
        ("data.decode_size=0", "data.decode_size must be positive"),
    ],
)
def test_bad_settings_are_one_line_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        pretraining_loader(tiny_config(override), torch.device("cpu"))
    assert len(str(error.value).splitlines()) == 1


def test_the_data_bench_times_the_device_path() -> None:
    result = measure_pretraining_loader(tiny_config(*DEVICE), max_batches=3)
    assert (result.batches, result.images, result.crops_per_image) == (3, 24, 4)
    assert result.augment_on == "device" and result.images_per_second > 0
    assert measure_pretraining_loader(tiny_config(), max_batches=1).augment_on == "workers"
