"""``attmask masks`` end to end on a real photo, and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from attmask.cli.main import main

skimage = pytest.importorskip("skimage", reason="scikit-image provides the real photos")
PHOTO = Path(skimage.__file__).parent / "data" / "chelsea.png"


def test_masks_figure_on_a_real_photo(tmp_path, capsys) -> None:
    out = tmp_path / "masks.png"
    code = main(["masks", "--image", str(PHOTO), "--out", str(out), "--arch", "vit_tiny",
                 "--img-size", "112", "--ratios", "0.1", "0.3", "0.5"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    with Image.open(out) as figure:
        width, height = figure.size
    assert width > 1000 and height > 500


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--image", "missing.png"], "image not found: missing.png"),
        (["--image", "CORRUPT"], "cannot read image"),
        (["--image", str(PHOTO), "--ratios", "1.5"], "--ratios must lie in [0, 1]"),
        (["--image", str(PHOTO), "--img-size", "100"], "must be divisible by patch_size"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, arguments, message) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    arguments = [str(corrupt) if a == "CORRUPT" else a for a in arguments]
    code = main(["masks", *arguments, "--out", str(tmp_path / "x.png"), "--arch", "vit_tiny"])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert message in error and len(error.splitlines()) == 1, error
