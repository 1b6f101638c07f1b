"""Sharded checkpoint folders on disk: a killed save never wins, a finished one always does, and a
malicious ``.metadata`` runs no code. One process, no process group."""

from __future__ import annotations

import os
import pickle
import time

import pytest
import torch
from torch import nn

from attmask.core.dcp import MARKER, OLD_NAME, PARTIAL_NAME, SHARDED_NAME, latest_checkpoint, read_sharded, tidy_sharded
from attmask.engine.sharded import load_sharded, names_layout, save_sharded


def _folder(path, finished: bool, tag: str):
    path.mkdir(parents=True)
    (path / "tag").write_text(tag)
    if finished:
        (path / MARKER).write_text("finished\n")
    return path


def test_half_written_partial_is_removed_and_finished_one_kept(tmp_path) -> None:
    _folder(tmp_path / SHARDED_NAME, True, "old")
    _folder(tmp_path / PARTIAL_NAME, False, "new")
    notes = tidy_sharded(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SHARDED_NAME]
    assert (tmp_path / SHARDED_NAME / "tag").read_text() == "old" and "whose write was killed" in notes[0]


def test_finished_partial_replaces_the_older_checkpoint(tmp_path) -> None:
    _folder(tmp_path / OLD_NAME, True, "older")  # killed after moving checkpoint.dcp aside
    _folder(tmp_path / PARTIAL_NAME, True, "new")
    tidy_sharded(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SHARDED_NAME]
    assert (tmp_path / SHARDED_NAME / "tag").read_text() == "new"


def test_moved_aside_checkpoint_is_restored_when_nothing_newer_finished(tmp_path) -> None:
    _folder(tmp_path / OLD_NAME, True, "older")
    assert latest_checkpoint(tmp_path) is None
    notes = tidy_sharded(tmp_path)
    assert (tmp_path / SHARDED_NAME / "tag").read_text() == "older" and "restored" in notes[0]
    assert latest_checkpoint(tmp_path) == tmp_path / SHARDED_NAME


def test_latest_checkpoint_is_the_newer_format(tmp_path) -> None:
    assert latest_checkpoint(tmp_path) is None
    _folder(tmp_path / SHARDED_NAME, False, "unfinished")
    assert latest_checkpoint(tmp_path) is None  # an unfinished folder is never read
    (tmp_path / "checkpoint.pth").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint.pth"
    (tmp_path / SHARDED_NAME / MARKER).write_text("finished\n")
    later = time.time() + 5
    os.utime(tmp_path / SHARDED_NAME / MARKER, (later, later))
    assert latest_checkpoint(tmp_path) == tmp_path / SHARDED_NAME


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def _trained(seed: int) -> tuple[_Tiny, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = _Tiny()
    optimizer = torch.optim.AdamW(model.student.parameters(), lr=0.1)
    model.student[0].weight.sum().backward()  # only this weight gets a gradient: the rest has no AdamW state
    optimizer.step()
    optimizer.zero_grad()
    return model, optimizer


def test_save_then_load_in_one_process_restores_weights_and_adamw_state(tmp_path) -> None:
    model, optimizer = _trained(0)
    save_sharded(tmp_path, model, optimizer, {"format": "attmask-checkpoint", "progress": {"global_step": 7}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [SHARDED_NAME]
    fresh, fresh_optimizer = _Tiny(), None
    fresh_optimizer = torch.optim.AdamW(fresh.student.parameters(), lr=0.1)
    meta = load_sharded(tmp_path / SHARDED_NAME, fresh, fresh_optimizer, torch.device("cpu"))
    assert meta["progress"] == {"global_step": 7}
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert len(fresh_optimizer.state) == 1  # the layer without a gradient still has no state
    saved = optimizer.state[model.student[0].weight]["exp_avg"]
    assert torch.equal(fresh_optimizer.state[fresh.student[0].weight]["exp_avg"], saved)
    whole = read_sharded(tmp_path / SHARDED_NAME)
    assert whole["optimizer_layout"] == "names"
    assert torch.equal(whole["method"]["student.1.bias"], model.student[1].bias)
    layout = names_layout(model, optimizer, optimizer.state_dict())
    assert sorted(layout["state"]) == sorted(whole["optimizer"]["state"]) == ["student.0.weight"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_metadata_runs_no_code(tmp_path, monkeypatch) -> None:
    model, optimizer = _trained(0)
    save_sharded(tmp_path, model, optimizer, {"format": "attmask-checkpoint"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / SHARDED_NAME / ".metadata").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match=r"unreadable metadata \(posix.system is not part of a DCP"):
        read_sharded(tmp_path / SHARDED_NAME)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / SHARDED_NAME / ".metadata").unlink()
    with pytest.raises(ValueError, match="unreadable metadata"):
        read_sharded(tmp_path / SHARDED_NAME)
    (tmp_path / SHARDED_NAME / MARKER).unlink()
    with pytest.raises(ValueError, match="not a finished sharded checkpoint"):
        read_sharded(tmp_path / SHARDED_NAME)


def test_truncated_shard_is_one_line(tmp_path) -> None:
    model, optimizer = _trained(0)
    save_sharded(tmp_path, model, optimizer, {"format": "attmask-checkpoint"})
    shard = next((tmp_path / SHARDED_NAME).glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"cannot read sharded checkpoint {tmp_path / SHARDED_NAME}: ") as error:
        read_sharded(tmp_path / SHARDED_NAME)
    assert "\n" not in str(error.value)


def test_single_process_fsdp_run_writes_and_resumes_a_sharded_checkpoint(tmp_path, monkeypatch) -> None:
    from attmask.engine.logging import read_log
    from attmask.engine.trainer import Trainer
    from tests.engine.test_distributed import COMMON
    from tests.engine.tiny import crash_and_resume, losses_by_step, tiny_config

    Trainer(tiny_config(*COMMON), tmp_path / "plain").fit()
    resumed = crash_and_resume((*COMMON, "train.parallel=fsdp"), tmp_path / "sharded", 3, monkeypatch)
    assert (tmp_path / "sharded" / SHARDED_NAME / MARKER).is_file()
    assert not (tmp_path / "sharded" / "checkpoint.pth").exists()
    assert resumed == losses_by_step(read_log(tmp_path / "plain"))  # one process: nothing sharded, same numbers


def test_unfinished_sharded_folder_is_one_line_for_evaluation(tmp_path) -> None:
    from attmask.models.checkpoints import load_backbone

    (tmp_path / SHARDED_NAME).mkdir()
    with pytest.raises(ValueError, match="sharded checkpoint without its COMPLETE marker: its write was cut off"):
        load_backbone(tmp_path / SHARDED_NAME)
    with pytest.raises(FileNotFoundError, match="without checkpoint.pth or a finished checkpoint.dcp"):
        load_backbone(tmp_path)
