"""Loading and exporting for the ecosystem: torch.hub (local), a Hugging Face folder timm loads offline,
and ONNX checked against PyTorch with onnxruntime."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from attmask.cli.main import main
from attmask.models.checkpoints import load_backbone
from tests.conftest import REPO_ROOT
from tests.engine.tiny import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "run"
    assert main(["pretrain", "--out", str(folder), *[a for s in (*TINY, "optim.epochs=1") for a in ("--set", s)]]) == 0
    return folder


def test_torch_hub_local_entries(run) -> None:
    loaded = torch.hub.load(str(REPO_ROOT), "attmask_vit", source="local", checkpoint=str(run))
    reference = load_backbone(run).model
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(images).cls_token, reference(images).cls_token)
    tiny = torch.hub.load(str(REPO_ROOT), "vit_tiny", source="local", img_size=32, patch_size=8, depth=1)
    assert tiny.embed_dim == 192 and tiny.depth == 1 and not tiny.training
    with pytest.raises(ValueError, match="embed_dim=192, expected 384"):
        torch.hub.load(str(REPO_ROOT), "vit_small", source="local", checkpoint=str(run))


def test_hugging_face_folder_loads_offline_in_timm(run, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["pretrained_cfg"]["tag"] == "attmask"
    assert config["pretrained_cfg"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    model = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    reference = load_backbone(run).model
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(images)[:, 0], reference(images).cls_token, rtol=1e-5, atol=1e-5
        )


def test_onnx_export_matches_pytorch(run, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")  # the onnx extra; make venv installs it, so CI runs this
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "vit.onnx")]) == 0  # format from suffix
    out = capsys.readouterr().out
    difference = float(out.rsplit("max abs difference ", 1)[1].split(")")[0])
    assert difference < 1e-4
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "vit.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(5, 3, 16, 16)  # another batch size than the export's example: dynamic batch
    cls_token, patches = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        reference = load_backbone(run).model(images)
    assert np.abs(cls_token - reference.cls_token.numpy()).max() < 1e-4
    assert patches.shape == tuple(reference.patch_tokens.shape)


def test_hf_export_refuses_a_convolutional_stem(tmp_path) -> None:
    from attmask.models import build_vit
    from attmask.models.export_hf import export_hf

    model = build_vit("vit_tiny", img_size=28, patch_size=7, depth=1, stem_channels=8)
    kwargs = {
        "img_size": 28,
        "patch_size": 7,
        "in_chans": 3,
        "embed_dim": 192,
        "depth": 1,
        "num_heads": 3,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "stem_channels": 8,
    }
    with pytest.raises(ValueError, match="convolutional stem cannot be rebuilt by timm"):
        export_hf(model, kwargs, tmp_path / "hf")


@pytest.mark.parametrize(
    ("out", "hint"),
    [("vit.pth", "pass --format mmseg for mmsegmentation"), ("hf/vit", "pass --format hf for a Hugging Face folder")],
)
def test_an_out_suffix_naming_no_format_is_one_line_before_loading(tmp_path, capsys, out: str, hint: str) -> None:
    missing = tmp_path / "no_such_run"  # never read: the path is checked first
    assert main(["export", "--checkpoint", str(missing), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    expected = f"--out {tmp_path / out}: name a FILE.safetensors (timm) or FILE.onnx, or {hint}"
    assert err == f"attmask export: error: {expected}"
