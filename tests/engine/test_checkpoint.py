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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"method": "dino"}}, r"holds a checkpoint of method 'ibot'; resume it with --config"),
        ({"recon": {"decoder_dim": 64, "decoder_depth": 2, "decoder_heads": 4}},
         r"holds a checkpoint with recon.decoder_dim=32, not 64; resume it with --config"),
        ({"lut": {"hidden_dim": 32, "out_dim": 8}}, r"holds a checkpoint with lut.out_dim=16, not 8"),
        ({"model": {"arch": "vit_tiny", "patch_size": 16, "drop_path_rate": 0.1}}, None),  # regularisation may change
    ],
)  # fmt: skip
def test_method_decoder_and_projector_changes_are_refused_and_drop_path_is_not(tmp_path, change, message) -> None:
    saved = {
        "model": {"arch": "vit_tiny", "patch_size": 16, "drop_path_rate": 0.0},
        "head": {},
        "recon": {"decoder_dim": 32, "decoder_depth": 2, "decoder_heads": 4},
        "lut": {"hidden_dim": 32, "out_dim": 16},
        "train": {"method": "ibot"},
    }
    wanted = {**saved, **change}
    if message is None:
        check_compatible(saved, wanted, tmp_path / "checkpoint.pth")
        return
    with pytest.raises(ValueError, match=message):
        check_compatible(saved, wanted, tmp_path / "checkpoint.pth")
