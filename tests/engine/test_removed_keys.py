"""Run folders written before a config key was removed (``train.reference_design``) still resume and
rebuild their method while the key is false; set, they are one clear error."""

from __future__ import annotations

import pytest
import yaml

from attmask.config import ConfigError, load_config
from attmask.core.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_atomic
from attmask.engine.restore import load_method
from attmask.engine.resume import TrainingError
from attmask.engine.trainer import Trainer
from tests.engine.tiny import tiny_config


def _age(run_dir, value: bool) -> None:
    """Write ``train.reference_design: value`` into the run's checkpoint and config.yaml, as before its removal."""
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    state["config"]["train"]["reference_design"] = value
    save_atomic(state, run_dir / CHECKPOINT_NAME)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["train"]["reference_design"] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def test_an_old_run_resumes_while_the_key_is_false_and_is_refused_when_set(tmp_path, one_thread) -> None:
    run_dir = tmp_path / "run"
    config = tiny_config("optim.epochs=1", "train.max_steps_per_epoch=1", "train.loggers=[jsonl]")
    Trainer(config, run_dir).fit()
    _age(run_dir, False)
    resumed = Trainer(load_config(run_dir / "config.yaml"), run_dir)  # what `attmask pretrain --config` does
    assert resumed.progress.global_step == 1
    method, restored = load_method(run_dir)
    assert restored.train.seed == config.train.seed and method.eval_backbone.depth == 2
    _age(run_dir, True)
    with pytest.raises(TrainingError, match=r"cannot be resumed: config key train.reference_design was removed"):
        Trainer(config, run_dir)
    with pytest.raises(ConfigError, match="benchmarks/reference_design.py"):
        load_method(run_dir)
