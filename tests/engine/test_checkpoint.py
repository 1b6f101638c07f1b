"""Atomic checkpoint writes and safe loading."""

from __future__ import annotations

import pytest
import torch

from attmask.core.checkpoint import load_checkpoint, save_atomic
from attmask.engine.resume import check_compatible


def test_save_and_load_round_trip(tmp_path) -> None:
    state = {"weights": torch.arange(4.0), "progress": {"epoch": 2}, "config": {"a": [1, 2]}}
    path = save_atomic(state, tmp_path / "run" / "checkpoint.pth")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["progress"] == {"epoch": 2}
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pth"], "no temporary file left"


def test_failed_write_keeps_the_previous_checkpoint(tmp_path) -> None:
    path = save_atomic({"value": torch.tensor(1.0)}, tmp_path / "checkpoint.pth")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"value": Unpicklable()}, path)
    assert load_checkpoint(path)["value"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


def test_arbitrary_objects_are_not_unpickled(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"payload": object()}, path)
    with pytest.raises(ValueError, match="not loaded because unpickling them could run code") as error:
        load_checkpoint(path)
    assert "weights_only=False" not in str(error.value)  # torch's unsafe advice is not passed on
    (tmp_path / "corrupt.pth").write_bytes(b"garbage")
    with pytest.raises(
        ValueError, match=r"corrupt.pth is not a PyTorch checkpoint \(it starts with the bytes b'garb'\)"
    ):
        load_checkpoint(tmp_path / "corrupt.pth")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_architecture_mismatch_is_one_clear_error(tmp_path) -> None:
    saved = {"model": {"arch": "vit_small", "patch_size": 16}, "head": {}, "train": {"method": "ibot"}}
    wanted = {"model": {"arch": "vit_tiny", "patch_size": 16}, "head": {}, "train": {"method": "ibot"}}
    with pytest.raises(ValueError, match=r"another architecture \(model.arch: 'vit_small' vs 'vit_tiny'\)"):
        check_compatible(saved, wanted, tmp_path)
    check_compatible(saved, saved, tmp_path)
