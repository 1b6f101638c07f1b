"""End-to-end CPU runs: every method x strategy, exact resume, NaN guard, run folder contents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attmask.config import ConfigError
from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer, TrainingError
from attmask.masking import STRATEGIES
from tests.engine.tiny import losses_by_step, monitored_trainer, tiny_config


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("method", ["ibot", "dino"])
def test_two_step_smoke_run(tmp_path, method: str, strategy: str) -> None:
    config = tiny_config(
        f"train.method={method}", f"masking.strategy={strategy}", "optim.epochs=1", "masking.show_ratio=[0.01, 0.05]"
    )
    summary = Trainer(config, tmp_path).fit()
    records = read_log(tmp_path)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in steps)
    fractions = [r["mask_fraction"] for r in steps]
    assert all(f == 0 for f in fractions) if strategy == "none" else all(f > 0 for f in fractions)
    if method == "ibot":
        assert all(math.isfinite(r["loss_patch"]) and r["loss_cls"] > 0 for r in steps)
    for r in steps:  # collapse monitors and the temperature are logged every step
        assert 0 <= r["teacher_entropy"] <= math.log(64) + 1e-4 and r["teacher_kl_centre"] >= 0
        assert r["teacher_entropy"] - 1e-4 <= r["teacher_batch_entropy"] <= math.log(64) + 1e-4
        assert r["feature_std"] > 0 and r["teacher_temp"] == pytest.approx(0.04)
    assert summary["epoch"] == 0 and (tmp_path / "config.yaml").is_file()
    state = load_checkpoint(tmp_path / "checkpoint.pth")
    progress = state["progress"]
    assert {key: progress[key] for key in ("epoch", "step", "global_step")} == {"epoch": 1, "step": 0, "global_step": 2}
    assert progress["train_seconds"] > 0


def test_teacher_follows_student_by_ema(tmp_path) -> None:
    trainer = Trainer(tiny_config("optim.epochs=1", "train.max_steps_per_epoch=1"), tmp_path)
    before = trainer.method.teacher.backbone.pos_embed.detach().clone()
    trainer.fit()
    after = trainer.method.teacher.backbone.pos_embed
    student = trainer.method.student.backbone.pos_embed
    momentum = float(trainer.schedules["momentum"][0])
    torch.testing.assert_close(after, momentum * before + (1 - momentum) * student.detach())


def test_resume_continues_exactly(tmp_path, monkeypatch) -> None:
    overrides = (
        "optim.epochs=3",
        "train.max_steps_per_epoch=3",
        "train.save_every_steps=2",
        "masking.strategy=attmask_hint",
        "masking.probability=0.5",
        "model.drop_path_rate=0.1",
    )
    Trainer(tiny_config(*overrides), tmp_path / "straight").fit()
    expected = losses_by_step(read_log(tmp_path / "straight"))
    assert sorted(expected) == list(range(1, 10))

    original = Trainer._log_step

    def crash_at_step_5(self, logs, bar, rate):
        if self.progress.global_step == 5:
            raise KeyboardInterrupt("simulated crash")
        original(self, logs, bar, rate)

    monkeypatch.setattr(Trainer, "_log_step", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(*overrides), tmp_path / "resumed").fit()
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pth")["progress"]["global_step"] == 4
    monkeypatch.setattr(Trainer, "_log_step", original)
    Trainer(tiny_config(*overrides), tmp_path / "resumed").fit()
    resumed = losses_by_step(read_log(tmp_path / "resumed"))
    assert resumed == expected
    starts = [r["step"] for r in read_log(tmp_path / "resumed") if r.get("process_start")]
    assert starts == [0, 4], "each process logs where it started, with its versions and device"


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch) -> None:
    trainer = Trainer(
        tiny_config("optim.epochs=1", "train.max_steps_per_epoch=4", "train.save_every_steps=2"), tmp_path
    )
    original = trainer.method.training_step

    def poisoned(crops, epoch):
        out = original(crops, epoch)
        if trainer.progress.global_step >= 2:
            out.loss = out.loss * float("nan")
            out.logs["loss"] = out.loss.detach()
        return out

    monkeypatch.setattr(trainer.method, "training_step", poisoned)
    with pytest.raises(
        TrainingError,
        match=r"NaN/inf .* last checkpoint .* \(step 2\) has weight norm .*1.00x the first logged .*: sane",
    ):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoint.pth")
    assert state["progress"]["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_resuming_another_architecture_is_refused(tmp_path) -> None:
    Trainer(tiny_config("optim.epochs=1", "train.max_steps_per_epoch=1"), tmp_path).fit()
    with pytest.raises(ValueError, match="another architecture"):
        Trainer(tiny_config("optim.epochs=2", "model.depth=3"), tmp_path)


def test_gradient_accumulation_matches_a_larger_batch(tmp_path) -> None:
    # The centres move after every micro-batch (as the loss sees each one), so freeze them
    # (momentum 1) to compare the optimisation itself: same samples, masks, grads and steps.
    common = (
        "optim.epochs=1",
        "train.max_steps_per_epoch=2",
        "masking.strategy=attmask_high",
        "masking.ratio=0.3",
        "loss.center_momentum=1.0",
    )
    big = Trainer(tiny_config(*common, "data.batch_size=8"), tmp_path / "big")
    small = Trainer(tiny_config(*common, "data.batch_size=4", "optim.accumulation_steps=2"), tmp_path / "accumulated")
    big.fit()
    small.fit()
    expected = losses_by_step(read_log(tmp_path / "big"))
    got = losses_by_step(read_log(tmp_path / "accumulated"))
    assert got.keys() == expected.keys()
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-4)


def test_masking_waits_for_mim_start_epoch(tmp_path) -> None:
    config = tiny_config("loss.mim_start_epoch=1", "masking.strategy=random", "masking.ratio=0.5")
    Trainer(config, tmp_path).fit()
    fractions = {r["epoch"]: r["mask_fraction"] for r in read_log(tmp_path) if "mask_fraction" in r}
    assert fractions[0] == 0.0 and fractions[1] > 0.2


def test_bf16_autocast_run_on_cpu(tmp_path) -> None:
    Trainer(tiny_config("optim.epochs=1", "train.precision=bf16"), tmp_path).fit()
    losses = [r["loss"] for r in read_log(tmp_path) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("frozen_epochs", [0, 1])
def test_last_layer_is_frozen_during_the_first_epochs(tmp_path, frozen_epochs: int) -> None:
    # two steps: the warm-up's first learning rate is exactly 0
    trainer = Trainer(
        tiny_config("optim.epochs=1", "train.max_steps_per_epoch=2", f"optim.freeze_last_layer_epochs={frozen_epochs}"),
        tmp_path,
    )
    before = [p.detach().clone() for p in trainer.train_step.last_layer]
    trainer.fit()
    unchanged = all(torch.equal(a, b) for a, b in zip(before, trainer.train_step.last_layer))
    assert unchanged == bool(frozen_epochs)


def test_baselines_and_time_to_accuracy_axes_are_logged(tmp_path) -> None:
    from attmask.cli.pretrain import summary_lines

    config = tiny_config(
        "train.knn_every_epochs=1", "train.knn_baseline=true", "data.val_images=40", "train.knn_train_samples=100"
    )
    summary = monitored_trainer(config, tmp_path).fit()
    records = read_log(tmp_path)
    steps = [r for r in records if "loss" in r]
    seconds = [r["train_seconds"] for r in steps]
    assert all(b > a > 0 for a, b in zip(seconds, seconds[1:])), "training time grows step by step"
    assert [r["images_seen"] for r in steps] == [8, 16, 24, 32]
    epochs = [r for r in records if r.get("epoch_done")]
    assert [r["images_seen"] for r in epochs] == [16, 32] and all("knn_gap_top1" in r for r in epochs)
    assert summary["knn_split"] == "validation"
    for prefix in ("knn", "knn_random_init", "knn_pixels"):
        assert 0 <= summary[f"{prefix}_top1"] <= 100
    lines = summary_lines(summary, 20)
    assert lines[0].startswith("weighted 20-NN top-1 on the validation split")
    assert [line.split()[0] for line in lines[1:]] == ["pretrained", "raw", "random"]
    assert f"{summary['knn_pixels_top1']:6.2f}%" in lines[2]


def test_uniform_teacher_targets_raise_one_collapse_warning_per_epoch(tmp_path, capsys) -> None:
    # A teacher temperature of 100 makes every target uniform: the guard must say so, from the
    # second epoch on (the first is left to warm up), once per epoch.
    config = tiny_config(
        "optim.epochs=3",
        "loss.teacher_temp=100",
        "loss.warmup_teacher_temp=100",
        "loss.teacher_patch_temp=100",
        "loss.warmup_teacher_patch_temp=100",
    )
    Trainer(config, tmp_path).fit()
    warnings = [r for r in read_log(tmp_path) if "collapse_warning" in r]
    assert [r["epoch"] for r in warnings] == [1, 2]
    assert "uniform" in warnings[0]["collapse_warning"]
    assert capsys.readouterr().err.count("warning: teacher targets are close to uniform") == 2
    healthy = tmp_path / "healthy"
    Trainer(tiny_config("optim.epochs=3"), healthy).fit()
    assert not [r for r in read_log(healthy) if "collapse_warning" in r]


def test_schedule_epochs_trains_the_start_of_a_longer_schedule(tmp_path) -> None:
    common = ("train.max_steps_per_epoch=2", "optim.lr=1e-3", "optim.weight_decay_end=0.4")
    cut = Trainer(tiny_config(*common, "optim.epochs=2", "optim.schedule_epochs=6"), tmp_path / "cut")
    whole = Trainer(tiny_config(*common, "optim.epochs=6"), tmp_path / "whole")
    for key in ("lr", "weight_decay", "momentum"):
        assert len(cut.schedules[key]) == 12
        np.testing.assert_array_equal(cut.schedules[key], whole.schedules[key])
    cut.fit()
    lrs = [r["lr"] for r in read_log(tmp_path / "cut") if "lr" in r]
    assert len(lrs) == 4 and lrs[-1] > 1e-5, "training stops after 2 of the 6 scheduled epochs, lr not annealed"
    with pytest.raises(ConfigError, match="optim.schedule_epochs .* shorter than optim.epochs"):
        tiny_config("optim.epochs=3", "optim.schedule_epochs=2")


def test_activation_checkpointing_trains_like_the_plain_run(tmp_path) -> None:
    overrides = ("optim.epochs=1", "train.max_steps_per_epoch=2", "model.drop_path_rate=0.1")
    plain = Trainer(tiny_config(*overrides), tmp_path / "plain")
    checked = Trainer(tiny_config(*overrides, "train.activation_checkpointing=true"), tmp_path / "checked")
    assert checked.method.student.backbone.grad_checkpointing and not plain.method.student.backbone.grad_checkpointing
    plain.fit()
    checked.fit()
    expected, got = losses_by_step(read_log(tmp_path / "plain")), losses_by_step(read_log(tmp_path / "checked"))
    assert expected.keys() == got.keys() == {1, 2}
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=1e-5), (step, got[step], expected[step])
