"""The optimizer step with ``train.compile``: the flag compiles both backbones and trains alike."""

from __future__ import annotations

import functools
import os
import shutil

import pytest
import torch

from attmask.engine import trainer as trainer_module
from attmask.engine.logging import read_log
from attmask.engine.step import compile_backbones
from attmask.engine.trainer import Trainer
from tests.engine.tiny import losses_by_step, tiny_config

SETTINGS = ("optim.epochs=1", "train.max_steps_per_epoch=2", "optim.warmup_epochs=0")


def _run(tmp_path, name: str, *overrides: str) -> tuple[Trainer, dict[int, float]]:
    trainer = Trainer(tiny_config(*SETTINGS, *overrides), tmp_path / name)
    trainer.fit()
    return trainer, losses_by_step(read_log(trainer.run_dir))


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_flag_compiles_both_backbones_and_keeps_the_losses(
    tmp_path, monkeypatch, one_thread, fresh_dynamo
) -> None:
    # aot_eager traces forward and backward with dynamic shapes like inductor but generates no
    # code (inductor takes minutes on a 2-core CPU; see the opt-in test below).
    monkeypatch.setattr(trainer_module, "compile_backbones", functools.partial(compile_backbones, backend="aot_eager"))
    eager, expected = _run(tmp_path, "eager")
    compiled, losses = _run(tmp_path, "compiled", "train.compile=true")
    for encoder in (compiled.method.student, compiled.method.teacher):
        assert encoder.backbone._compiled_call_impl is not None
    assert eager.method.student.backbone._compiled_call_impl is None
    assert compiled.method.state_dict().keys() == eager.method.state_dict().keys()
    assert sorted(losses) == [1, 2]
    for step, loss in expected.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5)


@pytest.mark.skipif(
    os.environ.get("ATTMASK_TEST_INDUCTOR") != "1",
    reason="inductor compiles the tiny ViT in about 100 s on a 2-core CPU; set ATTMASK_TEST_INDUCTOR=1 to run it",
)
def test_compile_flag_with_inductor(tmp_path, one_thread, fresh_dynamo) -> None:
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("inductor needs a C++ compiler on CPU and none was found")
    _, expected = _run(tmp_path, "eager")
    _, losses = _run(tmp_path, "compiled", "train.compile=true")
    for step, loss in expected.items():
        assert losses[step] == pytest.approx(loss, rel=1e-4)
