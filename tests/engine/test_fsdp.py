"""FSDP2 on CPU (2 gloo processes): the losses of DDP, sharded checkpoints that resume exactly, on
another number of processes, from DDP's single file, and that evaluation reads whole."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.multiprocessing import ProcessExitedException

from attmask.core.checkpoint import load_checkpoint
from attmask.core.dcp import MARKER, SHARDED_NAME, read_sharded
from attmask.engine.logging import read_log
from attmask.models.checkpoints import load_backbone
from tests.engine.test_distributed import COMMON
from tests.engine.tiny import losses_by_step, train_on_gloo

TWO = (*COMMON, "data.batch_size=4")
FSDP = (*TWO, "train.parallel=fsdp", "train.keep_every_epochs=1")


def _crash(run_dir, overrides, world_size: int = 2) -> None:
    """Train until just before step 3 (the checkpoint of step 2, the end of epoch 0, stays)."""
    with pytest.raises(ProcessExitedException):
        train_on_gloo(run_dir, overrides, world_size, crash_step=3)


def _resumed_norm(run_dir, saved_in=None) -> tuple[float, float]:
    """(weight norm logged when the resumed checkpoint was saved, in ``saved_in`` (default: the same
    run folder), weight norm right after loading it)."""
    resumed = [r for r in read_log(run_dir) if "resumed_weight_norm" in r][-1]
    step = resumed["global_step"]
    saved = [r.get("checkpoint_weight_norm") for r in read_log(saved_in or run_dir) if r.get("step") == step]
    return [norm for norm in saved if norm is not None][0], resumed["resumed_weight_norm"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """DDP and FSDP runs of 4 steps; an FSDP run killed before step 3, copied, then resumed."""
    root = tmp_path_factory.mktemp("fsdp")
    train_on_gloo(root / "ddp", TWO)
    train_on_gloo(root / "fsdp", FSDP)
    _crash(root / "killed", FSDP)
    shutil.copytree(root / "killed", root / "killed_copy")
    train_on_gloo(root / "killed", FSDP)
    return root


def test_fsdp_gives_the_losses_and_weights_of_ddp(runs) -> None:
    ddp, fsdp = losses_by_step(read_log(runs / "ddp")), losses_by_step(read_log(runs / "fsdp"))
    assert sorted(ddp) == sorted(fsdp) == [1, 2, 3, 4]
    for step in ddp:
        assert fsdp[step] == pytest.approx(ddp[step], rel=1e-5, abs=1e-6)
    assert not (runs / "fsdp" / "checkpoint.pth").exists() and (runs / "fsdp" / SHARDED_NAME / MARKER).is_file()
    kept = read_sharded(runs / "fsdp" / "checkpoint_epoch0001.dcp")  # train.keep_every_epochs=1
    assert kept["progress"]["global_step"] == 2 and (runs / "fsdp" / "checkpoint_epoch0002.dcp" / MARKER).is_file()
    whole = read_sharded(runs / "fsdp" / SHARDED_NAME)
    single = load_checkpoint(runs / "ddp" / "checkpoint.pth")
    assert whole["world_size"] == 2 and whole["parallel"] == "fsdp" and whole["progress"]["global_step"] == 4
    assert sorted(whole["method"]) == sorted(single["method"])
    for key, value in single["method"].items():
        torch.testing.assert_close(whole["method"][key], value, rtol=1e-4, atol=1e-5)


def test_killed_fsdp_run_resumes_exactly(runs) -> None:
    resumed, uninterrupted = losses_by_step(read_log(runs / "killed")), losses_by_step(read_log(runs / "fsdp"))
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in uninterrupted:
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-7)
    saved, loaded = _resumed_norm(runs / "killed")
    assert loaded == pytest.approx(saved, rel=1e-6)


def test_sharded_checkpoint_resumes_on_three_processes(runs, tmp_path) -> None:
    run_dir = tmp_path / "three"
    shutil.copytree(runs / "killed_copy", run_dir)
    train_on_gloo(run_dir, FSDP, world_size=3)
    saved, loaded = _resumed_norm(run_dir)
    assert loaded == pytest.approx(saved, rel=1e-6)  # resharded from 2 to 3 processes, nothing lost
    rows = read_log(run_dir)
    assert any("world_size_changed" in r for r in rows)
    assert read_sharded(run_dir / SHARDED_NAME)["world_size"] == 3


def test_sharded_checkpoint_resumes_in_one_process_and_switches_to_ddp_format(runs, tmp_path) -> None:
    from attmask.engine.trainer import Trainer
    from tests.engine.tiny import tiny_config

    run_dir = tmp_path / "one"
    shutil.copytree(runs / "killed_copy", run_dir)
    Trainer(tiny_config(*TWO), run_dir).fit()  # parallel=ddp: a single file from now on
    saved, loaded = _resumed_norm(run_dir)
    assert loaded == pytest.approx(saved, rel=1e-6)
    assert (run_dir / "checkpoint.pth").is_file() and not (run_dir / SHARDED_NAME).exists()


def test_ddp_checkpoint_resumes_sharded_with_the_same_losses(runs, tmp_path) -> None:
    run_dir = tmp_path / "ddp_then_fsdp"
    _crash(run_dir, TWO)
    assert (run_dir / "checkpoint.pth").is_file()
    train_on_gloo(run_dir, FSDP)  # id-keyed AdamW state of the single file, loaded into shards
    resumed, uninterrupted = losses_by_step(read_log(run_dir)), losses_by_step(read_log(runs / "ddp"))
    for step in uninterrupted:
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-5, abs=1e-6)
    assert (run_dir / SHARDED_NAME / MARKER).is_file() and not (run_dir / "checkpoint.pth").exists()


def test_evaluation_and_timm_export_read_a_sharded_run_whole(runs, tmp_path) -> None:
    from safetensors.torch import load_file

    from attmask.cli.main import main

    loaded = load_backbone(runs / "fsdp")
    teacher = read_sharded(runs / "fsdp" / SHARDED_NAME)["method"]["teacher.backbone.pos_embed"]
    assert loaded.which == "teacher" and torch.equal(loaded.model.pos_embed, teacher)
    assert main(["export", "--checkpoint", str(runs / "fsdp"), "--out", str(tmp_path / "vit.safetensors")]) == 0
    assert torch.equal(load_file(str(tmp_path / "vit.safetensors"))["pos_embed"], teacher)


def test_convert_gathers_a_sharded_run_into_a_single_file_that_resumes(runs, tmp_path, capsys) -> None:
    from attmask.cli.main import main
    from attmask.engine.trainer import Trainer
    from tests.engine.tiny import tiny_config

    assert main(["convert", str(runs / "killed_copy"), "--out", str(tmp_path / "single")]) == 0
    assert "gathered from 2 processes' shards" in capsys.readouterr().out
    state = load_checkpoint(tmp_path / "single" / "checkpoint.pth")
    assert state["optimizer_layout"] == "names" and state["progress"]["global_step"] == 2
    assert main(["convert", str(runs / "killed_copy"), "--out", str(tmp_path / "x"), "--set", "optim.lr=1"]) == 2
    Trainer(tiny_config(*TWO), tmp_path / "single").fit()  # one process, name-keyed AdamW state
    saved, loaded = _resumed_norm(tmp_path / "single", saved_in=runs / "killed_copy")
    assert loaded == pytest.approx(saved, rel=1e-6)


def test_fsdp_with_activation_checkpointing_gives_the_losses_of_ddp(runs, tmp_path) -> None:
    train_on_gloo(tmp_path, (*FSDP, "train.activation_checkpointing=true"))
    ddp, checkpointed = losses_by_step(read_log(runs / "ddp")), losses_by_step(read_log(tmp_path))
    for step in ddp:
        assert checkpointed[step] == pytest.approx(ddp[step], rel=1e-5, abs=1e-6)


def test_bf16_gathers_bf16_and_reduces_fp32() -> None:
    from attmask.engine.parallel import mixed_precision_policy

    policy = mixed_precision_policy("bf16")
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert mixed_precision_policy("fp32").param_dtype is None  # the parameters' own dtype


def test_kept_epoch_checkpoints_of_a_single_file_run(tmp_path) -> None:
    from attmask.engine.trainer import Trainer
    from tests.engine.tiny import tiny_config

    Trainer(tiny_config(*COMMON, "train.keep_every_epochs=1"), tmp_path).fit()
    kept = [load_checkpoint(tmp_path / f"checkpoint_epoch000{epoch}.pth") for epoch in (1, 2)]
    assert [state["progress"]["global_step"] for state in kept] == [2, 4]
    last = load_checkpoint(tmp_path / "checkpoint.pth")
    assert torch.equal(kept[1]["method"]["teacher.backbone.pos_embed"], last["method"]["teacher.backbone.pos_embed"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_knn_monitor_on_the_sharded_teacher_scores_as_on_ddp(tmp_path) -> None:
    knn = ("train.knn_every_epochs=1", "train.knn_train_samples=200", "train.knn_test_samples=100")
    train_on_gloo(tmp_path / "fsdp", (*FSDP, *knn))
    train_on_gloo(tmp_path / "ddp", (*TWO, *knn))
    sharded, whole = ([r for r in read_log(tmp_path / name) if "knn_top1" in r] for name in ("fsdp", "ddp"))
    assert [r["epoch"] for r in sharded] == [0, 1]
    assert [r["knn_top1"] for r in sharded] == [r["knn_top1"] for r in whole]
