"""``attmask visualize attention|masks`` end to end on real images, and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from attmask.cli.main import main
from attmask.models import VisionTransformer

skimage = pytest.importorskip("skimage", reason="scikit-image provides the real photos")
PHOTO = Path(skimage.__file__).parent / "data" / "chelsea.png"


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as figure:
        return figure.size


def test_masks_figure_on_a_real_photo_random_init(tmp_path, capsys) -> None:
    code = main(["visualize", "masks", "--images", str(PHOTO), "--out", str(tmp_path), "--arch", "vit_tiny",
                 "--img-size", "112", "--ratios", "0.1", "0.3", "0.5"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    width, height = _size(tmp_path / "chelsea_masks.png")
    assert width > 1000 and height > 500


def test_attention_figure_from_a_checkpoint_and_data_set(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=2, num_heads=4)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "c.pth")
    code = main(["visualize", "attention", "--checkpoint", str(tmp_path / "c.pth"), "--num-heads", "4",
                 "--data", "digits", "--num-images", "3", "--out", str(tmp_path / "figs")])
    out = capsys.readouterr().out
    assert code == 0 and out.count("wrote") == 3
    files = sorted((tmp_path / "figs").glob("*_attention.png"))
    assert [f.name for f in files] == ["digits_0_0_attention.png", "digits_15_1_attention.png",
                                       "digits_6_2_attention.png"]  # first test image of classes 0, 1, 2
    width, height = _size(files[0])
    assert width > 4 * height > 0  # image, mean, thresholded, 4 heads in one row


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--images", "missing.png"], "image not found: missing.png"),
        (["--images", "CORRUPT"], "cannot read image"),
        (["--images", str(PHOTO), "--ratios", "1.5"], "--ratios must lie in [0, 1]"),
        (["--images", str(PHOTO), "--img-size", "100"], "must be divisible by patch_size"),
        (["--images", str(PHOTO), "--checkpoint", "nothing.pth"], "checkpoint not found"),
        (["--data", "digits", "--num-images", "0"], "--num-images must be >= 1"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, arguments, message) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    arguments = [str(corrupt) if a == "CORRUPT" else a for a in arguments]
    code = main(["visualize", "masks", *arguments, "--out", str(tmp_path / "x"), "--arch", "vit_tiny"])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "x").exists()
