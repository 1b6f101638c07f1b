"""Backbone loading from every checkpoint layout, and the safetensors export round trip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import attmask
from attmask.models import VisionTransformer
from attmask.models.checkpoints import load_backbone, read_checkpoint, vit_kwargs_from_state_dict
from attmask.models.export import export_backbone

KWARGS = {
    "img_size": 16,
    "patch_size": 4,
    "in_chans": 3,
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 1,
    "mlp_ratio": 2.0,
    "qkv_bias": True,
}


def _vit(seed: int) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(**KWARGS).eval()
    with torch.no_grad():
        model.mask_token.normal_()
    return model


def _head(prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}mlp.0.weight": torch.randn(8, 64), f"{prefix}last_layer.weight": torch.randn(5, 8)}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _images() -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_project_checkpoint_teacher_and_student(tmp_path: Path) -> None:
    teacher, student = _vit(0), _vit(1)
    method = {
        **{f"teacher.backbone.{k}": v for k, v in teacher.state_dict().items()},
        **{f"student.backbone.{k}": v for k, v in student.state_dict().items()},
        **_head("teacher.head."),
        **_head("student.head."),
    }
    state = {"format": "attmask-checkpoint", "method": method, "config": {"model": {"arch": "vit_tiny"}}}
    torch.save(state, tmp_path / "checkpoint.pth")
    loaded = load_backbone(tmp_path, num_heads=1)  # a run folder works
    assert loaded.layout == "attmask" and loaded.which == "teacher" and loaded.config is not None
    assert _same_weights(loaded.model, teacher)
    assert _same_weights(load_backbone(tmp_path / "checkpoint.pth", "student", num_heads=1).model, student)


def test_project_checkpoint_heads_come_from_the_config(tmp_path: Path) -> None:
    model = VisionTransformer(**{**KWARGS, "embed_dim": 192, "num_heads": 3})
    state = {
        "format": "attmask-checkpoint",
        "config": {"model": {"arch": "vit_tiny"}},
        "method": {f"teacher.backbone.{k}": v for k, v in model.state_dict().items()},
    }
    torch.save(state, tmp_path / "c.pth")
    assert load_backbone(tmp_path / "c.pth").kwargs["num_heads"] == 3


@pytest.mark.parametrize("student_prefix", ["module.backbone.", "backbone."])
def test_dino_ibot_attmask_training_checkpoint(tmp_path: Path, student_prefix: str) -> None:
    teacher, student = _vit(0), _vit(1)

    # iBOT / AttMask name the mask token ``masked_embed`` with shape (1, D).
    def layout(model: VisionTransformer, prefix: str) -> dict[str, torch.Tensor]:
        state = {f"{prefix}{k}": v for k, v in model.state_dict().items() if k != "mask_token"}
        state[f"{prefix}masked_embed"] = model.mask_token.detach().reshape(1, -1)
        return {**state, **_head(prefix.replace("backbone.", "head."))}

    checkpoint = {
        "teacher": layout(teacher, "backbone."),
        "student": layout(student, student_prefix),
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_small", lr=5e-4),
        "optimizer": {"state": {}, "param_groups": []},
    }
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    loaded = load_backbone(tmp_path / "checkpoint.pth", num_heads=1)
    assert loaded.layout == "teacher/student"
    assert _same_weights(loaded.model, teacher)
    assert _same_weights(load_backbone(tmp_path / "checkpoint.pth", "student", num_heads=1).model, student)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module", "compiled"])
def test_plain_and_wrapped_state_dicts(tmp_path: Path, wrap: str) -> None:
    model = _vit(2)
    state = model.state_dict()
    state = {
        "plain": state,
        "state_dict": {"state_dict": state},
        "model": {"model": state, "epoch": 1},
        "module": {f"module.{k}": v for k, v in state.items()},
        "compiled": {f"_orig_mod.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(state, tmp_path / "w.pth")
    loaded = load_backbone(tmp_path / "w.pth", num_heads=1)
    assert loaded.which is None and _same_weights(loaded.model, model)


def test_timm_state_dict_with_classifier_and_default_heads(tmp_path: Path) -> None:
    reference = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=7, img_size=32, patch_size=8, depth=2
    ).eval()
    save_file(reference.state_dict(), str(tmp_path / "timm.safetensors"))
    loaded = load_backbone(tmp_path / "timm.safetensors")
    assert loaded.layout == "safetensors" and loaded.dropped == ["head.bias", "head.weight"]
    assert loaded.kwargs["num_heads"] == 3  # embed_dim // 64
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_features(images)[:, 0]
        torch.testing.assert_close(loaded.model(images).cls_token, expected, atol=1e-5, rtol=1e-5)


def test_export_round_trip_into_timm(tmp_path: Path) -> None:
    model = _vit(3)
    weights, sidecar = export_backbone(
        model, KWARGS, tmp_path / "out" / "backbone.safetensors", source={"checkpoint": "x"}
    )
    info = json.loads(sidecar.read_text())
    assert info["source"] == {"checkpoint": "x"} and info["attmask_version"] == attmask.__version__
    timm_model = timm.create_model(info["timm_model"], pretrained=False, **info["timm_kwargs"]).eval()
    timm_model.load_state_dict(load_file(str(weights)), strict=True)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(
            timm_model.forward_features(images)[:, 0], model(images).cls_token, atol=1e-5, rtol=1e-5
        )
    # the export loads back, heads from its JSON, without the mask token
    again = load_backbone(weights)
    assert again.kwargs == KWARGS
    assert not list(tmp_path.glob("out/.*.tmp"))


def test_export_refuses_other_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.safetensors"):
        export_backbone(_vit(0), KWARGS, tmp_path / "x.pth")


def test_architecture_mismatch_is_one_line(tmp_path: Path) -> None:
    state = _vit(0).state_dict()
    state["blocks.0.ls1.gamma"] = torch.ones(64)
    del state["blocks.1.norm2.weight"]
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(
        ValueError,
        match=r"missing keys \[blocks.1.norm2.weight\], unexpected keys "
        r"\[blocks.0.ls1.gamma\]",
    ) as error:
        load_backbone(tmp_path / "odd.pth", num_heads=1)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"embed_dim=64, expected 384"):
        load_backbone(tmp_path / "odd.pth", expect={"embed_dim": 384})


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint", "is not a PyTorch checkpoint"), (b"", "is empty"), (None, "checkpoint not found")],
)
def test_unreadable_or_missing(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_backbone(path)


def test_arbitrary_objects_are_not_unpickled(tmp_path: Path) -> None:
    torch.save({"teacher": {}, "evil": Path("/")}, tmp_path / "c.pth")  # not an allowed type
    with pytest.raises(ValueError, match="not loaded because unpickling them could run code"):
        read_checkpoint(tmp_path / "c.pth")


def test_not_a_vit_and_missing_branch(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.ones(2, 2)}, tmp_path / "mlp.pth")
    with pytest.raises(ValueError, match="no ViT weights found"):
        load_backbone(tmp_path / "mlp.pth")
    torch.save({"teacher": _vit(0).state_dict()}, tmp_path / "t.pth")
    with pytest.raises(ValueError, match="no 'student' weights"):
        load_backbone(tmp_path / "t.pth", "student")


def test_inferred_kwargs_and_heads_check() -> None:
    state = _vit(0).state_dict()
    assert vit_kwargs_from_state_dict(state, num_heads=1) == KWARGS
    with pytest.raises(ValueError, match="not divisible by num_heads 3"):
        vit_kwargs_from_state_dict(state, num_heads=3)


def test_shapes_that_fit_no_vit_and_a_wrong_branch_name_are_one_line(tmp_path: Path) -> None:
    state = _vit(0).state_dict()
    odd = {**state, "blocks.1.mlp.fc1.weight": torch.zeros(100, 64)}  # hidden width differs from block 0's
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd.pth does not fit the inferred ViT: size mismatch for blocks.1.mlp.fc1"):
        load_backbone(tmp_path / "odd.pth", num_heads=1)
    with pytest.raises(ValueError, match=r"pos_embed holds 16 tokens, not 1 \+ a square"):
        vit_kwargs_from_state_dict({**state, "pos_embed": torch.zeros(1, 16, 64)}, num_heads=1)
    torch.save(state, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match=r"which must be 'teacher' or 'student', got 'ema'"):
        load_backbone(tmp_path / "plain.pth", "ema")
