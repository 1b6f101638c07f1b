"""The distributed path on CPU: 2 gloo processes give the losses of 1 process, same global batch."""

from __future__ import annotations

import pytest
import torch

from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from tests.engine.tiny import losses_by_step, tiny_config, train_on_gloo

# Attention masks with a fixed ratio and probability 1 depend only on the data, so the two
# decompositions of the global batch see identical masks (stochastic strategies draw per rank).
COMMON = (
    "optim.epochs=2",
    "train.max_steps_per_epoch=2",
    "masking.strategy=attmask_high",
    "masking.ratio=0.3",
    "model.drop_path_rate=0.0",
)


def test_two_gloo_processes_match_one_process(tmp_path) -> None:
    from attmask.engine.trainer import Trainer

    Trainer(tiny_config(*COMMON, "data.batch_size=8"), tmp_path / "single").fit()
    train_on_gloo(tmp_path / "ddp", (*COMMON, "data.batch_size=4"))
    single = losses_by_step(read_log(tmp_path / "single"))
    ddp = losses_by_step(read_log(tmp_path / "ddp"))
    assert sorted(single) == sorted(ddp) == [1, 2, 3, 4]
    for step in single:
        assert ddp[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6)
    one = load_checkpoint(tmp_path / "single" / "checkpoint.pth")["method"]
    two = load_checkpoint(tmp_path / "ddp" / "checkpoint.pth")["method"]
    for key in ("teacher.backbone.pos_embed", "student.backbone.blocks.0.attn.qkv.weight"):
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    centres = [k for k in one if k.startswith("loss.") and "center" in k]
    assert centres
    for key in centres:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
